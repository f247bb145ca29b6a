"""Serving for the bench: gunicorn on loopback as production runs it, and the sample lake the
serving sections (operators, memory, cache, browser) share."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from bench.http_client import get_once
from data_access.stores import MetadataIndex
from devtools.operators import PageSpec
from devtools.servers import LOOPBACK, REPO_ROOT, free_port, gunicorn_command


@dataclass
class Served:
    """A gunicorn master on loopback, with its workers and access log."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def worker_pids(self) -> list[int]:
        return sorted(child.pid for child in psutil.Process(self.process.pid).children())

    def worker_rss_bytes(self) -> dict[int, int]:
        rss = {}
        for pid in self.worker_pids():
            with contextlib.suppress(psutil.NoSuchProcess):
                rss[pid] = psutil.Process(pid).memory_info().rss
        return rss

    def requests_per_worker(self) -> Counter[int]:
        """Access-log lines per worker pid: how evenly the connections spread."""
        counts: Counter[int] = Counter()
        with open(self.log_path, "rb") as log:
            for line in log:
                if b'"gunicorn.access"' in line:
                    with contextlib.suppress(ValueError, KeyError):
                        counts[json.loads(line)["pid"]] += 1
        return counts


def serving_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """The environment of a bench server: HOME and XDG folders under the scratch folder."""
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_RUNTIME_DIR": str(home / "run"),
        # Recycling workers mid-run would reset the memory figures and add restart latency.
        "GUNICORN_MAX_REQUESTS": "0",
        "LOG_LEVEL": "warning",
        **extra,
    }
    for name in ("REDIS_URL", "PROMETHEUS_MULTIPROC_DIR"):
        if name not in extra:
            env.pop(name, None)
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR"):
        Path(env[name]).mkdir(parents=True, exist_ok=True, mode=0o700)
    return env


@contextlib.contextmanager
def serve(
    name: str,
    app: str,
    folder: Path,
    env: dict[str, str],
    *,
    workers: int = 2,
    threads: int = 4,
    start_timeout_s: float = 60.0,
) -> Iterator[Served]:
    """``gunicorn -c gunicorn.conf.py APP`` as production runs it, on a free loopback port.

    Runs in its own process group and is stopped (SIGTERM, then SIGKILL) on the way out.
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = folder / f"{name}.log"
    command = gunicorn_command(app, port, workers=workers, threads=threads)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=serving_env(folder / "home", env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served = Served(name, port, process, log_path)
    try:
        _wait_ready(served, start_timeout_s)
        yield served
    finally:
        _stop(process)


def _wait_ready(served: Served, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            break
        with contextlib.suppress(OSError):
            status, _ = asyncio.run(get_once(served.port, "/healthz"))
            if status == 200:
                return
        time.sleep(0.2)
    tail = served.log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"{served.name} did not start; log tail:\n{tail}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


# ---- the sample lake all serving sections share ----------------------------------------------


@dataclass(frozen=True)
class ServingLake:
    lake_root: Path
    state_db: Path
    end_date: dt.date
    customer: str
    day: dt.date

    def env(self) -> dict[str, str]:
        return {"LAKE_ROOT": str(self.lake_root), "STATE_DB": str(self.state_db)}


def serving_lake(scratch: Path, *, full: bool) -> ServingLake:
    """Generate, process, compact and roll up a sample lake ending today; built once per run."""
    from data_access.factory import build_stores
    from data_access.settings import DataSettings
    from pipeline.events import compact_events, compact_metrics
    from pipeline.generate import customer_id, generate
    from pipeline.process import drain
    from pipeline.rollup import rollup_all

    folder = scratch / "serving-lake"
    end = dt.datetime.now(dt.UTC).date()
    settings = DataSettings(lake_root=folder / "lake", state_db=folder / "state.sqlite")
    done = folder / "ready"
    if not done.exists():
        stores = build_stores(settings)
        customers, days = (200, 30) if full else (40, 30)
        generate(
            stores.lake,
            queue=stores.queue,
            customers=customers,
            days=days,
            seed=17,
            end_date=end,
            hosts=1,
        )
        drain(stores)
        compact_events(stores)
        compact_metrics(stores)
        rollup_all(stores)
        done.write_text("ok")
    # A customer with an upload the day before yesterday: the drill-down shows all panels.
    return ServingLake(
        settings.lake_root, settings.state_db, end, customer_id(3), end - dt.timedelta(days=2)
    )


def dashboard_env(lake: ServingLake, period: float) -> dict[str, str]:
    period_ms = int(period * 1000)
    return {
        **lake.env(),
        "DATA_BACKEND": "local",
        "AUTH_MODE": "dev",
        # The simulated refresh period is one of the picker's choices; the floor sits below it.
        "REFRESH_CHOICES_MS": f"{period_ms},5000",
        "REFRESH_DEFAULT_MS": str(period_ms),
        "REFRESH_FLOOR_MS": str(period_ms * 4 // 5),
    }


def pages(lake: ServingLake) -> dict[str, PageSpec]:
    customer = f"?customer={lake.customer}&day={lake.day.isoformat()}"
    return {
        "overview": PageSpec("overview", "ours", "/"),
        "customer": PageSpec("screen-time customer view", "ours", "/screen-time", customer),
        "naive overview": PageSpec("naive overview", "naive", "/"),
        "naive customer": PageSpec(
            "naive screen-time customer view", "naive", "/screen-time", customer
        ),
    }


def touch_customer(index: MetadataIndex, customer_id: str) -> None:
    """A new data version for the customer's views, as a re-upload makes one: their latest
    index record again, with a new upload time."""
    records = index.customer_days(customer_id, "0001-01-01", "9999-12-31")
    if records:
        index.put(replace(records[-1], uploaded_at=time.time()))
