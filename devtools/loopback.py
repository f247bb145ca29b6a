"""Server processes on loopback that the tests and the benchmarks share: a process in its own
group that dies with its parent, and nginx as the reverse proxy in front of gunicorn (as the
ALB is in production).

Every process runs in its own process group, dies with the process that started it
(``PR_SET_PDEATHSIG``), listens on loopback only and is stopped by ``stop()``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import requests

from devtools.servers import LOOPBACK, die_with_parent, free_port


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


def answers_http(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    return check


NGINX_CONFIG = """\
worker_processes 1;
worker_rlimit_nofile {open_files};
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log {access_log};
    keepalive_timeout {client_keepalive_s}s;
    keepalive_requests 1000000;
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
    # Round robin over the instances.
    upstream dashboard {{
{servers}
{upstream_keepalive}
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://dashboard;
{upstream_http11}
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


# Pooled upstream connections, as an ALB keeps to its targets: HTTP/1.1 with keep-alive, idle
# ones closed by nginx after 60 s, below gunicorn's keep-alive (gunicorn.conf.py), so nginx
# never sends on a connection gunicorn has just closed.
UPSTREAM_KEEPALIVE = """\
        keepalive {pool};
        keepalive_requests 1000000;
        keepalive_timeout 60s;"""
UPSTREAM_HTTP11 = """\
            proxy_http_version 1.1;
            proxy_set_header Connection "";"""


def nginx_proxy(
    workdir: Path,
    upstream_ports: list[int],
    port: int | None = None,
    *,
    upstream_pool: int = 0,
    connections: int = 256,
    access_log: bool = True,
) -> LoopbackProcess:
    """nginx on loopback, round robin over ``upstream_ports``.

    ``upstream_pool`` 0: a new upstream connection per request (nginx's default, HTTP/1.0
    with ``Connection: close``), so consecutive requests alternate instances; above 0, up
    to that many idle keep-alive connections per worker are kept to the upstreams, as a
    load balancer pools its connections to targets. ``connections`` bounds client plus
    upstream connections."""
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
        NGINX_CONFIG.format(
            root=workdir,
            servers=servers,
            listen=f"{LOOPBACK}:{port}",
            connections=connections,
            open_files=connections * 2 + 64,
            access_log=f"{workdir}/access.log" if access_log else "off",
            client_keepalive_s=75,
            upstream_keepalive=UPSTREAM_KEEPALIVE.format(pool=upstream_pool)
            if upstream_pool
            else "",
            upstream_http11=UPSTREAM_HTTP11 if upstream_pool else "",
        )
    )
    return LoopbackProcess(
        "nginx",
        # -e: the error log from the first moment, before the config names one.
        [nginx, "-e", str(workdir / "error.log"), "-p", str(workdir), "-c", str(config)],
        port=port,
        cwd=workdir,
        env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin"), "HOME": str(workdir)},
        log_path=workdir / "stdout.log",
        ready=answers_http(f"http://{LOOPBACK}:{port}/healthz"),
        start_timeout_seconds=20.0,
    )
