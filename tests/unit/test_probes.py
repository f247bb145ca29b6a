"""Health probes, the host reader, and the health view's pure builders."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
from collections import namedtuple
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import psutil
import pytest

from dashboard import health_figures as figures
from dashboard.pages import health
from dashboard.probes import (
    CheckOutcome,
    ErrorCounts,
    HostReader,
    HostSnapshot,
    Probe,
    ProbeRunner,
    _busy_percent,
    app_check,
    build_probes,
    cache_check,
    http_check,
    lake_check,
    run_probe,
)
from data_access import layout
from data_access.stores import Stores, StoreUnavailable


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ok(detail: str = "fine"):
    return lambda: CheckOutcome(detail)


# ---- run_probe ----------------------------------------------------------------------------


def test_a_check_that_returns_is_up_with_its_latency():
    clock = FakeClock()

    def check():
        clock.now += 0.25
        return CheckOutcome("answered")

    result = run_probe(Probe("thing", "endpoint", check), timeout_seconds=2.0, clock=clock)
    assert (result.status, result.detail) == ("up", "answered")
    assert result.latency_ms == pytest.approx(250.0)


def test_a_check_that_raises_is_down_and_says_why():
    def check():
        raise StoreUnavailable("sqlite locked")

    result = run_probe(Probe("cache", "cache", check), timeout_seconds=2.0, clock=FakeClock())
    assert result.status == "down"
    assert "StoreUnavailable" in result.detail and "sqlite locked" in result.detail


def test_a_slow_answer_is_degraded():
    clock = FakeClock()

    def check():
        clock.now += 1.5  # more than half of the 2 s timeout
        return CheckOutcome("answered")

    result = run_probe(Probe("slow", "endpoint", check), timeout_seconds=2.0, clock=clock)
    assert result.status == "degraded"
    assert "slow" in result.detail


def test_a_check_can_report_itself_degraded():
    check = lambda: CheckOutcome("half there", degraded=True)  # noqa: E731
    result = run_probe(Probe("x", "app", check), timeout_seconds=2.0, clock=FakeClock())
    assert (result.status, result.detail) == ("degraded", "half there")


# ---- ProbeRunner --------------------------------------------------------------------------


def test_probes_run_concurrently():
    # Each check waits for the other to start: only concurrent runs get past the barrier.
    barrier = threading.Barrier(2, timeout=5)

    def meet():
        barrier.wait()
        return CheckOutcome("met")

    runner = ProbeRunner(
        [Probe("a", "endpoint", meet), Probe("b", "endpoint", meet)], timeout_seconds=5
    )
    try:
        assert [r.status for r in runner.results()] == ["up", "up"]
    finally:
        runner.close()


def test_a_probe_past_the_timeout_is_down_and_does_not_hold_the_others():
    release = threading.Event()

    def hang():
        release.wait(10)
        return CheckOutcome("late")

    runner = ProbeRunner(
        [Probe("hangs", "endpoint", hang), Probe("quick", "lake", ok("listed"))],
        timeout_seconds=0.2,
    )
    try:
        results = {r.name: r for r in runner.results()}
    finally:
        release.set()
        runner.close()
    assert results["hangs"].status == "down"
    assert "no answer within 0.2 s" in results["hangs"].detail
    assert results["quick"].status == "up"


def test_results_are_memoised_for_the_memo_period():
    calls = []

    def counted():
        calls.append(1)
        return CheckOutcome("ok")

    clock = FakeClock()
    runner = ProbeRunner(
        [Probe("p", "endpoint", counted)], timeout_seconds=1, memo_seconds=5, clock=clock
    )
    try:
        first = runner.latest_round()
        clock.now += 4.9
        second = runner.latest_round()
        clock.now += 0.2
        third = runner.latest_round()
    finally:
        runner.close()
    assert first[0] == second[0] == 1
    assert third[0] == 2
    assert len(calls) == 2


def test_concurrent_callers_share_one_round():
    started = threading.Event()
    release = threading.Event()
    calls = []

    def slow():
        calls.append(1)
        started.set()
        release.wait(5)
        return CheckOutcome("ok")

    runner = ProbeRunner([Probe("p", "endpoint", slow)], timeout_seconds=5, memo_seconds=60)
    answers: list[int] = []
    threads = [
        threading.Thread(target=lambda: answers.append(runner.latest_round()[0])) for _ in range(6)
    ]
    try:
        for thread in threads:
            thread.start()
        assert started.wait(5)
        release.set()
        for thread in threads:
            thread.join(10)
    finally:
        release.set()
        runner.close()
    assert answers == [1] * 6
    assert len(calls) == 1


# ---- the checks against real stores and a real HTTP server --------------------------------


def test_cache_probe_writes_and_reads_back(local_stores: Stores):
    result = run_probe(
        Probe("cache", "cache", cache_check(local_stores.cache, "test")), 2.0, FakeClock()
    )
    assert result.status == "up"


@dataclass
class ForgetfulCache:
    def put(self, key: str, value: bytes, ttl_seconds: int) -> None:
        pass

    def get(self, key: str) -> bytes | None:
        return None


def test_cache_probe_is_down_when_the_value_does_not_come_back():
    result = run_probe(
        Probe("cache", "cache", cache_check(ForgetfulCache(), "test")), 2.0, FakeClock()
    )
    assert result.status == "down"
    assert "read back" in result.detail


def test_lake_probe_lists_todays_rollup_partition(local_stores: Stores):
    today = dt.date(2026, 3, 4)
    local_stores.lake.write_bytes(layout.screen_time_summary_key(today.isoformat()), b"x")
    local_stores.lake.write_bytes(layout.screen_time_summary_key("2026-03-05"), b"x")
    check = lake_check(local_stores.lake, lambda: today)
    outcome = check()
    assert "date=2026-03-04/" in outcome.detail
    assert outcome.detail.endswith(": 1 objects")


class _Handler(http.server.BaseHTTPRequestHandler):
    release = threading.Event()

    def do_GET(self):
        if self.path == "/slow":
            self.release.wait(5)
        code = {"/ok": 200, "/missing": 404, "/broken": 503}.get(self.path, 200)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_base() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.release.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        _Handler.release.set()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("path", "status"), [("/ok", "up"), ("/missing", "up"), ("/broken", "down")]
)
def test_http_probe_counts_status_below_500_as_up(http_base: str, path: str, status: str):
    result = run_probe(Probe("x", "endpoint", http_check(http_base + path, 2.0)), 2.0, FakeClock())
    assert result.status == status
    assert result.detail.startswith("HTTP")


def test_http_probe_times_out(http_base: str):
    check = http_check(http_base + "/slow", 0.2)
    result = run_probe(Probe("slow", "endpoint", check), 0.2, FakeClock())
    assert (result.status, result.detail) == ("down", "timed out")


def test_http_probe_of_a_closed_port_is_down():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    server.server_close()  # nothing listens there now
    result = run_probe(
        Probe("gone", "endpoint", http_check(f"http://127.0.0.1:{port}/", 1.0)), 1.0, FakeClock()
    )
    assert result.status == "down"
    assert "refused" in result.detail


def test_app_probe_is_degraded_after_new_store_errors():
    counts = ErrorCounts()
    check = app_check(lambda: ErrorCounts(counts.cache_errors, counts.lake_errors), 0.0, time_0)
    assert not check().degraded
    counts.lake_errors += 2
    outcome = check()
    assert outcome.degraded
    assert "2 lake errors" in outcome.detail
    assert not check().degraded  # only errors since the previous probe count


def time_0() -> float:
    return 0.0


def test_build_probes_lists_app_stores_identity_and_endpoints(local_stores: Stores):
    probes = build_probes(
        local_stores,
        error_counts=ErrorCounts,
        endpoints=[("CDN", "http://127.0.0.1:9/"), ("Payments", "http://127.0.0.1:9/pay")],
        identity_url="http://127.0.0.1:9/.well-known/openid-configuration",
        timeout_seconds=1.0,
        started_at=0.0,
    )
    assert [(p.name, p.kind) for p in probes] == [
        ("Dashboard app", "app"),
        ("Cache table", "cache"),
        ("Lake", "lake"),
        ("Identity provider", "identity"),
        ("CDN", "endpoint"),
        ("Payments", "endpoint"),
    ]


# ---- this machine -------------------------------------------------------------------------


def test_host_reader_reads_this_machine_and_memoises():
    clock = FakeClock()
    reader = HostReader(memo_seconds=2, clock=clock)
    first = reader.snapshot()
    assert len(first.cpu_per_core) == psutil.cpu_count()
    assert 0 <= first.cpu_percent <= 100
    assert 0 < first.memory_used_bytes <= first.memory_total_bytes
    assert first.disk_total_bytes > 0
    assert first.net_sent_per_second is None  # no earlier snapshot to compare with
    clock.now += 1
    assert reader.snapshot() is first
    clock.now += 2
    second = reader.snapshot()
    assert second is not first
    assert second.net_sent_per_second is not None and second.net_sent_per_second >= 0


# ---- builders -----------------------------------------------------------------------------


def _metrics() -> pd.DataFrame:
    ts = pd.to_datetime(["2026-03-04T10:00:00Z", "2026-03-04T10:05:00Z"], utc=True)
    rows = []
    for host, scale in (("web-1", 1.0), ("web-2", 2.0)):
        for stamp, step in zip(ts, (1.0, 1.5), strict=True):
            rows += [
                {"ts": stamp, "host": host, "metric": "request_rate", "value": 10 * scale * step},
                {"ts": stamp, "host": host, "metric": "latency_p95_ms", "value": 100 * scale},
                {"ts": stamp, "host": host, "metric": "cpu_percent", "value": 20 * scale * step},
            ]
    return pd.DataFrame(rows)


def test_fleet_series_sums_rates_and_averages_latency():
    frame = _metrics()
    rate = figures.fleet_series(frame, "request_rate")
    expected = frame[frame["metric"] == "request_rate"].groupby("ts")["value"].sum().tolist()
    assert rate["value"].tolist() == expected
    latency = figures.fleet_series(frame, "latency_p95_ms")
    expected = frame[frame["metric"] == "latency_p95_ms"].groupby("ts")["value"].mean().tolist()
    assert latency["value"].tolist() == expected


def test_app_tiles_show_the_newest_fleet_values():
    frame = _metrics()
    newest = frame[frame["ts"] == frame["ts"].max()]
    tiles = {tile["metric"]: tile["value"] for tile in figures.app_tiles(frame)}
    rps = newest[newest["metric"] == "request_rate"]["value"].sum()
    assert tiles["health-rps"] == f"{rps:,.1f}"
    assert tiles["health-errors"] == figures.NOT_AVAILABLE  # no error_rate points


def test_host_history_has_one_trace_per_host_and_a_cell_per_chart():
    frame = _metrics()
    figure = figures.host_history(frame)
    cpu = [t for t in figure["data"] if t["yaxis"] == "y"]
    assert sorted(t["name"] for t in cpu) == ["web-1", "web-2"]
    web2 = next(t for t in cpu if t["name"] == "web-2")
    expected = frame[(frame["host"] == "web-2") & (frame["metric"] == "cpu_percent")]["value"]
    assert web2["y"] == expected.tolist()
    assert len(figure["layout"]["annotations"]) == 4
    assert figure["layout"]["grid"]["rows"] == 2


def test_history_legends_name_each_host_once_and_mark_sample_hosts():
    frame = _metrics()
    figure = figures.host_history(frame, sample_hosts={"web-2"})
    assert figure["layout"]["showlegend"] is True
    shown = [trace["name"] for trace in figure["data"] if trace["showlegend"]]
    # A host has a line in three cells but one legend entry, which toggles all three.
    assert sorted(shown) == ["web-1", "web-2 (sample)"]
    cpu = [trace for trace in figure["data"] if trace["yaxis"] == "y"]
    assert all("%" in trace["hovertemplate"] for trace in cpu)


def test_latency_lines_are_named_and_hover_in_milliseconds():
    rows = [
        {"ts": pd.Timestamp("2026-01-01T00:00Z"), "host": "web-1", "metric": metric, "value": v}
        for metric, v in zip(figures.LATENCY_METRICS, (10.0, 50.0, 90.0), strict=True)
    ]
    figure = figures.app_history(pd.DataFrame(rows))
    latency = [trace for trace in figure["data"] if trace["yaxis"] == "y2"]
    assert [trace["name"] for trace in latency] == ["Latency p50", "Latency p95", "Latency p99"]
    assert all(trace["showlegend"] for trace in latency)
    assert all(" ms<extra>" in trace["hovertemplate"] for trace in latency)


def test_history_of_an_empty_frame_says_no_data():
    empty = pd.DataFrame({"ts": [], "host": [], "metric": [], "value": []})
    figure = figures.app_history(empty)
    assert figure["data"] == []
    assert figure["layout"]["meta"]["empty"]


def test_pipeline_numbers_treat_nan_as_unknown():
    stats = pd.DataFrame(
        {
            "metric": [
                "uploads_processed",
                "uploads_quarantined",
                "parquet_bytes",
                "raw_bytes",
                "latest_upload_at",
            ],
            "value": [5.0, 2.0, 1000.0, 25000.0, float("nan")],
        }
    )
    numbers = figures.pipeline_numbers(stats)
    assert (numbers.uploads_processed, numbers.uploads_quarantined) == (5, 2)
    assert numbers.latest_upload_at is None
    assert numbers.lag_seconds(10.0) is None
    assert numbers.compression_ratio == 25.0
    live = {t["metric"]: t["value"] for t in figures.pipeline_live_tiles(numbers, 0.75, 10.0)}
    assert live == {"health-pipeline-lag": "n/a", "health-cache-hit-ratio": "75%"}


def test_worst_status_ignores_unconfigured():
    assert figures.worst_status(["up", "unconfigured", "degraded"]) == "degraded"
    assert figures.worst_status(["up", "down", "degraded"]) == "down"
    assert figures.worst_status(["unconfigured"]) == "unconfigured"


def test_metrics_window_is_stable_within_a_metric_interval():
    start = dt.datetime(2026, 3, 4, 10, 5, tzinfo=dt.UTC).timestamp()
    assert health.metrics_query(start) == health.metrics_query(start + 299)
    later = health.metrics_query(start + 300)
    assert later.since - health.metrics_query(start).since == dt.timedelta(minutes=5)
    # The window ends at the end of the current 5-minute step, and reaches back a day.
    assert later.until == dt.datetime(2026, 3, 4, 10, 15, tzinfo=dt.UTC)
    assert later.since == dt.datetime(2026, 3, 3, 10, 15, tzinfo=dt.UTC)


@dataclass(frozen=True)
class _Auth:
    mode: str
    oidc_issuer: str = ""


@dataclass(frozen=True)
class _Services:
    auth: _Auth


def test_identity_tile_in_dev_mode_says_not_configured():
    url, tile = health.identity_target(_Services(_Auth("dev")))
    assert url is None
    assert (tile.status, tile.detail) == ("unconfigured", "not configured (dev sign-in)")


def test_identity_probe_targets_the_oidc_discovery_document():
    url, tile = health.identity_target(_Services(_Auth("oidc", "https://idp.example/realm/")))
    assert url == "https://idp.example/realm/.well-known/openid-configuration"
    assert tile is None


def test_busy_percent_is_the_non_idle_share_between_readings():
    times = namedtuple("times", "user system idle iowait")
    before, after = times(100, 50, 800, 50), times(160, 70, 900, 70)
    # 200 ticks passed, 120 of them idle or waiting on I/O.
    assert _busy_percent(before, after) == 40.0
    assert _busy_percent(before, before) == 0.0


def test_host_tiles_show_this_machines_snapshot():
    snapshot = HostSnapshot(
        cpu_percent=37.5,
        cpu_per_core=(25.0, 50.0),
        memory_percent=61.0,
        memory_used_bytes=2_500_000_000,
        memory_total_bytes=4_000_000_000,
        swap_percent=0.0,
        swap_used_bytes=0,
        swap_total_bytes=0,
        disk_percent=12.0,
        disk_used_bytes=12_000_000_000,
        disk_total_bytes=100_000_000_000,
        net_bytes_sent=1_500_000,
        net_bytes_recv=3_000,
        net_sent_per_second=2_000.0,
        net_recv_per_second=None,
    )
    tiles = {tile["metric"]: tile for tile in figures.host_tiles(snapshot)}
    assert tiles["health-live-cpu"]["value"] == "38 %"
    assert tiles["health-live-cpu"]["previous"] == "2 cores"
    assert tiles["health-live-memory"]["previous"] == "2.5 GB of 4.0 GB"
    assert tiles["health-live-net-sent"]["value"] == "1.5 MB"
    assert tiles["health-live-net-sent"]["previous"] == "2.0 KB/s now"
    assert tiles["health-live-net-recv"]["previous"] == "since boot"


def test_metrics_window_covers_the_hours_asked_for():
    now = dt.datetime(2026, 3, 4, 10, 7, tzinfo=dt.UTC).timestamp()
    query = health.metrics_query(now, 1)
    assert query.until == dt.datetime(2026, 3, 4, 10, 10, tzinfo=dt.UTC)
    assert query.since == dt.datetime(2026, 3, 4, 9, 10, tzinfo=dt.UTC)
    assert health.metrics_query(now, 6).since == dt.datetime(2026, 3, 4, 4, 10, tzinfo=dt.UTC)
    assert health.state_hours({"window": "6h"}) == 6
    assert health.state_hours({}) == health.HISTORY_HOURS
    empty = figures.host_history(pd.DataFrame(columns=["ts", "host", "metric", "value"]), hours=1)
    assert "last hour" in json.dumps(empty)
