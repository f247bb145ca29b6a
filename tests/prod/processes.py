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
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# The loopback process and nginx launcher live in devtools, shared with the benchmarks.
from devtools.loopback import LoopbackProcess, answers_http
from devtools.loopback import nginx_proxy as nginx_proxy
from devtools.servers import LOOPBACK, REPO_ROOT, free_port

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
        ready=answers_http(f"http://{LOOPBACK}:{port}/healthz"),
    )
