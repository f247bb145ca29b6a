"""`make run`'s server: its access log goes to a file, and a banner says it is ready.

gunicorn runs with the production configuration and ``ACCESS_LOG`` as scripts/run-local.sh
sets it; the banner is ``python -m scripts.dev_banner`` started beside it, as the script does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from devtools.servers import LOOPBACK, REPO_ROOT, free_port
from scripts import dev_banner
from tests.prod.processes import gunicorn_instance

REQUEST_ID_HEADER = "X-Request-Id"


def _wait_for_text(path: Path, text: str, timeout_seconds: float = 10.0) -> str:
    deadline = time.monotonic() + timeout_seconds
    content = ""
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never reached {path}; it holds:\n{content[-2000:]}")


def test_the_dev_server_logs_access_to_its_file_and_prints_a_banner_once_ready(
    tmp_path: Path,
) -> None:
    access_log = tmp_path / "log" / "access.log"
    access_log.parent.mkdir()
    env = {
        "DATA_BACKEND": "local",
        "LAKE_ROOT": str(tmp_path / "lake"),
        "STATE_DB": str(tmp_path / "state.sqlite"),
        "AUTH_MODE": "dev",
        "DEV_ROLE": "operator",
        "SECRET_KEY": "x" * 64,
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "2",
        "ACCESS_LOG": str(access_log),
    }
    server = gunicorn_instance("dev-run", tmp_path / "gunicorn", env)
    server.launch()
    try:
        # Started with the server, as run-local.sh does: it prints once the server answers.
        banner = subprocess.run(
            [sys.executable, "-m", "scripts.dev_banner", "--url", server.url, "--timeout", "60"],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert banner.returncode == 0, banner.stderr
        assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200

        answer = requests.get(
            f"{server.url}/healthz", headers={REQUEST_ID_HEADER: "req-dev-run-1"}, timeout=5
        )
        assert answer.status_code == 200
        _wait_for_text(access_log, "req-dev-run-1")
    finally:
        server.stop()

    text = banner.stdout
    assert f"Mission Control is ready: {server.url}" in text
    assert "dev@localhost as operator (development sign-in" in text
    assert "DEV_ROLE=viewer make run" in text
    assert f"Access log:   {access_log}" in text
    assert "Ctrl-C" in text
    assert len(text.strip().splitlines()) <= 8  # a banner, not a page
    # The terminal's log (the server's stdout and stderr) holds no access lines.
    terminal = server.log_tail(1_000_000)
    assert "Listening at" in terminal  # the server's own messages still go there
    assert "gunicorn.access" not in terminal and "req-dev-run-1" not in terminal


def test_the_banner_says_so_when_the_dashboard_never_answers(capsys) -> None:
    url = f"http://{LOOPBACK}:{free_port()}"
    assert dev_banner.main(["--url", url, "--timeout", "0.5"]) == 1
    assert f"did not answer at {url}" in capsys.readouterr().err


def test_the_banner_names_the_access_log_relative_to_the_repository() -> None:
    env = {"ACCESS_LOG": str(REPO_ROOT / "var" / "log" / "access.log"), "AUTH_MODE": "dev"}
    text = dev_banner.banner("http://127.0.0.1:8050", env, root=REPO_ROOT)
    assert "Access log:   var/log/access.log" in text
    assert "dev@localhost as admin" in text and "DEV_ROLE=viewer make run" in text
    assert "Access log" not in dev_banner.banner("http://127.0.0.1:8050", {"AUTH_MODE": "dev"})
