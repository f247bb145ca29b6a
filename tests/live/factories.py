"""Events and servers the live-data tests share."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path

import psutil
import requests

from devtools.servers import ServerProcess, free_port, gunicorn_command

REPO_ROOT = Path(__file__).resolve().parents[2]


def utc_ts(moment: dt.datetime | None = None) -> str:
    moment = moment or dt.datetime.now(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def pageview(**fields: object) -> dict:
    return {
        "event_id": uuid.uuid4().hex,
        "ts": utc_ts(),
        "user_id": "u0000001",
        "session_id": "s-1",
        "page": "/products/p001",
        "referrer": None,
        **fields,
    }


def purchase(**fields: object) -> dict:
    return {
        "event_id": uuid.uuid4().hex,
        "ts": utc_ts(),
        "user_id": "u0000002",
        "session_id": "s-2",
        "order_id": f"o-{uuid.uuid4().hex[:12]}",
        "product_id": "p001",
        "product_name": "Trail Shoe",
        "category": "Sports & Outdoors",
        "quantity": 2,
        "unit_price": 49.5,
        "amount": 99.0,
        "currency": "USD",
        **fields,
    }


def custom(**fields: object) -> dict:
    return {
        "event_id": uuid.uuid4().hex,
        "ts": utc_ts(),
        "user_id": "u0000003",
        "session_id": "s-3",
        "name": "search",
        "properties": {"query": "coffee", "results": 12},
        **fields,
    }


class GunicornApp(ServerProcess):
    """gunicorn serving ``app`` (a ``module:callable()`` factory) on a free loopback port."""

    name = "gunicorn-live"
    start_timeout_seconds = 45.0

    def __init__(
        self,
        app: str,
        env: dict[str, str],
        *,
        workers: int = 2,
        threads: int = 4,
        config: Path | None = None,
    ) -> None:
        super().__init__()
        self.app, self.env = app, env
        self.workers, self.threads, self.config = workers, threads, config
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ports(self) -> list[int]:
        return [self.port]

    def command(self) -> list[str]:
        return gunicorn_command(
            self.app,
            self.port,
            config=self.config,
            workers=self.workers,
            threads=self.threads,
            worker_class="gthread",
            graceful_timeout_seconds=5,
        )

    def child_env(self) -> dict[str, str]:
        home = self.workdir / "home"
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        return {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home), **self.env}

    def answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def worker_pids(self) -> list[int]:
        return sorted(child.pid for child in psutil.Process(self.pid).children())
