"""``/metrics`` in Prometheus format, correct under several gunicorn workers; and the
collectors that turn it and the host into raw metric lines."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import socket
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests
from flask import Flask, g
from prometheus_client.parser import text_string_to_metric_families

from auth.roles import User
from dashboard.request_hooks import register_hooks
from dashboard.request_metrics import MetricsSettings, register_request_metrics
from data_access.factory import build_stores
from data_access.settings import DataSettings
from pipeline.collectors import (
    Collector,
    CollectorSettings,
    HostSampler,
    RequestSampler,
    histogram_quantile,
    write_points,
)
from pipeline.schema import validate_metric_line
from tests.live.factories import GunicornApp


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of an exposition, keyed by (name, sorted labels); parsing it is the test."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def request_count(parsed: dict, route: str, status: str) -> float:
    key = (
        "mc_http_requests_total",
        (("method", "GET"), ("route", route), ("status", status)),
    )
    return parsed.get(key, 0.0)


@pytest.fixture(scope="module")
def metrics_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("metrics")
    multiproc = folder / "prometheus"
    multiproc.mkdir()
    config = folder / "gunicorn_test.conf.py"
    # The lines gunicorn.conf.py needs for multiprocess metrics.
    config.write_text(
        textwrap.dedent(
            """
            from prometheus_client import multiprocess

            def child_exit(server, worker):
                multiprocess.mark_process_dead(worker.pid)
            """
        )
    )
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "LAKE_ROOT": str(folder / "lake"),
        "STATE_DB": str(folder / "state.sqlite"),
    }
    server = GunicornApp("tests.live.metrics_app:create()", env, config=config)
    server.start()
    yield (
        server,
        multiproc,
        DataSettings(lake_root=folder / "lake", state_db=folder / "state.sqlite"),
    )
    server.cleanup()


def spread_requests(url: str, path: str, *, at_least: int, until_pids: int = 0) -> tuple[int, set]:
    """Requests on fresh connections, 8 at a time, until ``at_least`` were sent and
    ``until_pids`` workers answered (a worker may still be starting: bounded at 60 s);
    returns (sent, worker pids)."""
    pids: set[int] = set()
    sent = 0
    deadline = time.monotonic() + 60

    def one(_: int) -> int | None:
        response = requests.get(f"{url}{path}", headers={"Connection": "close"}, timeout=10)
        return response.json()["pid"] if path == "/ok" else None

    with ThreadPoolExecutor(8) as pool:
        while sent < at_least or (len(pids) < until_pids and time.monotonic() < deadline):
            pids.update(pid for pid in pool.map(one, range(8)) if pid)
            sent += 8
    return sent, pids


def test_metrics_sum_every_worker_and_survive_a_dead_one(metrics_server):
    server, multiproc, data_settings = metrics_server
    stores = build_stores(data_settings)
    sampler = RequestSampler(str(multiproc), stores.records)
    baseline = sampler.sample(1000.0)
    assert [name for name, _ in baseline] == ["active_users"]  # no interval yet

    ok, pids = spread_requests(server.url, "/ok", at_least=40, until_pids=2)
    failed, _ = spread_requests(server.url, "/fail", at_least=8)
    assert len(pids) == 2, "both workers should have answered"

    for _ in range(4):  # whichever worker answers the scrape, the totals are the same
        parsed = samples(requests.get(f"{server.url}/metrics", timeout=10).text)
        assert request_count(parsed, "/ok", "200") == ok
        assert request_count(parsed, "/fail", "500") == failed
        assert parsed[("mc_http_errors_total", (("status", "500"),))] == failed
        assert parsed[("mc_active_sessions", ())] == 1  # one user, seen by both workers
        bucket = ("mc_http_request_duration_seconds_count", (("route", "/ok"),))
        assert parsed[bucket] == ok

    points = dict(sampler.sample(1010.0))
    assert points["requests"] == ok + failed  # probes (/metrics, /healthz) are not user traffic
    assert points["request_rate"] == pytest.approx((ok + failed) / 10)
    assert points["error_rate"] == pytest.approx(failed / (ok + failed))
    assert 0 < points["latency_p50_ms"] <= points["latency_p95_ms"] <= points["latency_p99_ms"]
    assert points["active_users"] == 1

    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while victim in server.worker_pids() or len(server.worker_pids()) < 2:
        assert time.monotonic() < deadline, "gunicorn did not replace the worker"
        time.sleep(0.1)
    parsed = samples(requests.get(f"{server.url}/metrics", timeout=10).text)
    assert request_count(parsed, "/ok", "200") == ok  # the dead worker's counts are kept
    assert parsed[("mc_http_requests_in_progress", ())] == 1  # this scrape, no one else


def test_metrics_endpoint_in_one_process_and_its_access_rules(local_stores):
    server = Flask("single")
    server.before_request(lambda: setattr(g, "user", User("u1", "a@b", "A", "viewer")))
    metrics = register_request_metrics(server, MetricsSettings(), records=local_stores.records)
    register_hooks(server, metrics.hooks())
    server.get("/ok")(lambda: "ok")
    client = server.test_client()
    for _ in range(3):
        client.get("/ok")
    client.get("/missing")
    parsed = samples(client.get("/metrics").get_data(as_text=True))
    assert request_count(parsed, "/ok", "200") == 3
    assert request_count(parsed, "<unmatched>", "404") == 1
    assert parsed[("mc_active_sessions", ())] == 1
    remote = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert remote.status_code == 403

    guarded = Flask("guarded")
    register_request_metrics(guarded, MetricsSettings(token="s3cret"))
    client = guarded.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    answer = client.get(
        "/metrics",
        headers={"Authorization": "Bearer s3cret"},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    assert answer.status_code == 200
    samples(answer.get_data(as_text=True))


@dataclasses.dataclass
class TierCounts:
    memory: int = 0
    cache: int = 0
    lake: int = 0


@dataclasses.dataclass
class FakeDataService:
    counters: TierCounts


def test_data_service_tiers_become_counters():
    service = FakeDataService(TierCounts())
    server = Flask("tiers")
    metrics = register_request_metrics(server, MetricsSettings(), data_service=service)
    register_hooks(server, metrics.hooks())

    @server.get("/read")
    def read():
        service.counters.memory += 2
        service.counters.lake += 1
        return "ok"

    client = server.test_client()
    client.get("/read")
    client.get("/read")
    parsed = samples(client.get("/metrics").get_data(as_text=True))
    assert parsed[("mc_data_reads_total", (("tier", "memory"),))] == 4
    assert parsed[("mc_data_reads_total", (("tier", "lake"),))] == 2


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, float("inf"): 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.75)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.95)
    assert histogram_quantile(0.5, {0.1: 0.0, float("inf"): 10.0}) == pytest.approx(0.1)
    assert histogram_quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None


def _io_totals() -> dict[str, float]:
    net, disk = psutil.net_io_counters(), psutil.disk_io_counters()
    return {
        "net_bytes_sent": net.bytes_sent,
        "net_packets_recv": net.packets_recv,
        "net_errors_in": net.errin,
        "disk_read_bytes": disk.read_bytes if disk is not None else 0,
    }


def _send_over_loopback(size: int) -> int:
    """Send ``size`` bytes through a loopback TCP connection; loopback counts as a NIC."""
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        socket.create_connection(listener.getsockname()) as sender,
    ):
        receiver, _ = listener.accept()
        with receiver:
            sender.sendall(b"x" * size)
            sender.shutdown(socket.SHUT_WR)
            received = 0
            while chunk := receiver.recv(65536):
                received += len(chunk)
    return received


def test_host_sample_covers_cpu_memory_disk_network_and_uptime():
    sampler = HostSampler("/")
    before = _io_totals()
    first = dict(sampler.sample())
    sent = _send_over_loopback(2**20)
    second = dict(sampler.sample())
    after = _io_totals()
    for name in ("cpu_percent", "memory_percent", "swap_percent", "disk_percent", "uptime_seconds"):
        assert name in first
    cores = psutil.cpu_count()
    assert all(f"cpu_percent_core_{n}" in first for n in range(cores))
    assert "net_bytes_sent" not in first  # counters need two samples
    # Increases between the two samples: within what the counters moved around both, and at
    # least the bytes this test sent over loopback in between.
    for name in ("net_bytes_sent", "net_packets_recv", "net_errors_in", "disk_read_bytes"):
        assert name in second and 0 <= second[name] <= after[name] - before[name]
    assert second["net_bytes_sent"] >= sent
    assert 0 <= second["memory_percent"] <= 100


def test_collector_writes_raw_lines_the_compactor_accepts(local_stores):
    collector = Collector(local_stores.lake, CollectorSettings(host="web-1"))
    key = collector.collect_once()
    assert key.startswith("raw/metrics/") and f"/web-1-{os.getpid()}-" in key
    lines = local_stores.lake.read_bytes(key).splitlines()
    assert len(lines) > 10
    for line in lines:
        assert validate_metric_line(line).problems == ()
    now = dt.datetime.now(dt.UTC)
    assert write_points(local_stores.lake, "h", [("x", float("nan"))], now) is None
