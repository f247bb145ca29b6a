"""What the production tests share: the Dockerfile as data, and loopback processes.

``image_command()`` is the final stage's ``CMD``; the tests start gunicorn with exactly that
argv (``gunicorn`` run by this interpreter) from the repository root, as the image does
from ``WORKDIR /app``. Every process runs in its own process group, dies with the test
process (``PR_SET_PDEATHSIG``), listens on loopback only and is stopped at teardown.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

from devtools.servers import LOOPBACK, REPO_ROOT, die_with_parent, free_port

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
LOCK_FILE = REPO_ROOT / "requirements.lock"
TEMPLATE = REPO_ROOT / "deploy" / "cloudformation.yaml"


# ------------------------------------------------------------------------------ Dockerfile


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    arguments: str  # the rest, continuation lines joined
    line: int


@dataclass
class Stage:
    base: str  # image after ARG substitution
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [item for item in self.instructions if item.keyword == keyword]


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions in order: comments dropped, backslash continuations joined."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        joined = " ".join(part for part in pending if part)
        pending = []
        keyword, _, arguments = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
    return instructions


def dockerfile_stages(text: str) -> list[Stage]:
    """Stages in order; ``ARG`` defaults declared before the first ``FROM`` are substituted."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for item in dockerfile_instructions(text):
        if item.keyword == "ARG" and not stages:
            name, _, default = item.arguments.partition("=")
            global_args[name.strip()] = default.strip()
        elif item.keyword == "FROM":
            words = [w for w in item.arguments.split() if not w.startswith("--platform")]
            base = re.sub(
                r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0]
            )
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif stages:
            stages[-1].instructions.append(item)
    return stages


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD, or a shell split."""
    text = arguments.strip()
    if text.startswith("["):
        return json.loads(text)
    return shlex.split(text)


def image_command() -> list[str]:
    """The final stage's CMD, as the container runs it."""
    final = dockerfile_stages(DOCKERFILE.read_text())[-1]
    commands = final.all("CMD")
    if not commands:
        raise AssertionError("the final stage has no CMD")
    return exec_form(commands[-1].arguments)


def image_env() -> dict[str, str]:
    """``ENV`` of the final stage (``KEY=value`` form)."""
    env: dict[str, str] = {}
    for item in dockerfile_stages(DOCKERFILE.read_text())[-1].all("ENV"):
        for token in shlex.split(item.arguments):
            name, _, value = token.partition("=")
            env[name] = value
    return env


# ------------------------------------------------------------------------------ processes


class LoopbackProcess:
    """One server process in its own group, started from ``cwd``, logging to a file."""

    def __init__(
        self,
        name: str,
        command: list[str],
        *,
        port: int,
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        ready: Callable[[], bool],
        start_timeout_seconds: float = 60.0,
    ) -> None:
        self.name = name
        self.command = command
        self.port = port
        self.url = f"http://{LOOPBACK}:{port}"
        self.cwd = cwd
        self.env = dict(env)
        self.log_path = log_path
        self.ready = ready
        self.start_timeout_seconds = start_timeout_seconds
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting: several servers can boot at once."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(os.getpid()),
            )

    def wait_ready(self) -> None:
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + self.start_timeout_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.ready():
                return
            time.sleep(0.2)
        code = self.process.poll()
        self.stop()
        state = f"exited with {code}" if code is not None else "did not answer"
        raise AssertionError(f"{self.name} {state}; log {self.log_path}:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        # SIGTERM first: gunicorn and nginx shut down gracefully on it.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def log_tail(self, max_chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()


def _answers(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    return check


def isolated_home(root: Path) -> dict[str, str]:
    """HOME and XDG folders under ``root``: nothing a test starts writes to the real home."""
    home = root / "home"
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_RUNTIME_DIR": str(home / "run"),
    }
    for folder in env.values():
        Path(folder).mkdir(parents=True, exist_ok=True, mode=0o700)
    return env


def gunicorn_instance(
    name: str, workdir: Path, env: Mapping[str, str], *, port: int | None = None
) -> LoopbackProcess:
    """The image's command on a free loopback port, from the repository root."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    command = image_command()
    assert command[0] == "gunicorn", command
    full_env = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "GUNICORN_CMD_ARGS")},
        **isolated_home(workdir),
        "BIND": f"{LOOPBACK}:{port}",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"),
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    return LoopbackProcess(
        name,
        [sys.executable, "-m", *command],
        port=port,
        cwd=REPO_ROOT,
        env=full_env,
        log_path=workdir / "gunicorn.log",
        ready=_answers(f"http://{LOOPBACK}:{port}/healthz"),
    )


NGINX_CONFIG = """\
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    # Bodies and answers stay in memory: the workers may run as another user than the test.
    client_body_buffer_size 1m;
    client_max_body_size 4m;
    proxy_buffering off;
    proxy_request_buffering off;
    # Round robin, and a new upstream connection per request (nginx speaks HTTP/1.0 with
    # Connection: close upstream by default), so consecutive requests alternate instances.
    upstream dashboard {{
{servers}
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://dashboard;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 30s;
            # Which instance answered: the test checks that both do.
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


def nginx_proxy(
    workdir: Path, upstream_ports: list[int], port: int | None = None
) -> LoopbackProcess:
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/bin/nginx") if Path(p).is_file()), None
    )
    if nginx is None:
        raise AssertionError(
            "nginx is missing: run `scripts/install-test-deps.sh` (as root; Debian package "
            "nginx-light or nginx) for the two-instance test"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    servers = "\n".join(f"        server {LOOPBACK}:{p} max_fails=0;" for p in upstream_ports)
    config = workdir / "nginx.conf"
    config.write_text(
        NGINX_CONFIG.format(root=workdir, servers=servers, listen=f"{LOOPBACK}:{port}")
    )
    return LoopbackProcess(
        "nginx",
        # -e: the error log from the first moment, before the config names one.
        [nginx, "-e", str(workdir / "error.log"), "-p", str(workdir), "-c", str(config)],
        port=port,
        cwd=workdir,
        env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin"), "HOME": str(workdir)},
        log_path=workdir / "stdout.log",
        ready=_answers(f"http://{LOOPBACK}:{port}/healthz"),
        start_timeout_seconds=20.0,
    )
