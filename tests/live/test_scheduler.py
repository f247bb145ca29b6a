"""The scheduler: jobs run, failures retry with backoff, the day closes once, SIGTERM stops it;
and the Lambda handlers call the same work."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from data_access import layout
from data_access.idempotency import idempotency_kind
from pipeline import lambda_handlers
from pipeline.alerts import AlertSettings
from pipeline.collectors import CollectorSettings
from pipeline.scheduler import (
    CLOSED_DAY,
    PeriodicJob,
    SchedulerSettings,
    close_day,
    day_to_close,
    run_scheduler,
)
from tests.live.factories import REPO_ROOT, pageview, utc_ts


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_failing_job_is_retried_until_it_succeeds():
    stop = threading.Event()
    calls = []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RuntimeError("store down")
        stop.set()
        return {"ok": True}

    job = PeriodicJob("flaky", 60.0, flaky, stop, retry_base=0.01)
    job.thread.start()
    job.thread.join(timeout=30)
    assert not job.thread.is_alive()
    assert len(calls) == 3
    assert (job.runs, job.failures) == (1, 0)


def write_raw_event(stores, event: dict) -> None:
    ts = dt.datetime.fromisoformat(event["ts"][:-1])
    key = f"raw/events/pageview/{ts:%Y/%m/%d/%H}/t-{time.time_ns()}.jsonl"
    stores.lake.write_bytes(key, (json.dumps({**event, "event_type": "pageview"}) + "\n").encode())


def test_run_scheduler_runs_every_job_and_stops_cleanly(local_stores):
    write_raw_event(local_stores, pageview())
    settings = SchedulerSettings(
        rollup_interval_seconds=0.2,
        alert_interval_seconds=0.2,
        collectors=CollectorSettings(interval_seconds=0.1, host="sched-test"),
        alerts=AlertSettings(),
    )
    stop = threading.Event()
    runner = threading.Thread(target=run_scheduler, args=(local_stores, settings, stop))
    runner.start()
    try:
        wait_until(lambda: local_stores.state.get(layout.VERSION_BUSINESS_ROLLUP) is not None)
        wait_until(lambda: local_stores.state.get("version:alerts") is not None)
        wait_until(lambda: any(local_stores.lake.list(layout.PROCESSED_METRICS)))
    finally:
        stop.set()
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert any(local_stores.lake.list(layout.PROCESSED_EVENTS))
    raw_metrics = list(local_stores.lake.list(layout.RAW_METRICS))
    assert raw_metrics and all("/sched-test-" in info.key for info in raw_metrics)


def test_the_day_closes_once_after_the_grace_period(local_stores):
    midnight = dt.datetime(2026, 11, 11, tzinfo=dt.UTC)
    early = (midnight + dt.timedelta(minutes=10)).timestamp()
    late = (midnight + dt.timedelta(minutes=45)).timestamp()
    assert day_to_close(local_stores, 30, early) is None
    assert day_to_close(local_stores, 30, late) == dt.date(2026, 11, 10)

    yesterday = dt.datetime(2026, 11, 10, 22, 0, tzinfo=dt.UTC)
    write_raw_event(local_stores, pageview(ts=utc_ts(yesterday)))
    old = idempotency_kind(dt.date(2026, 9, 1), "pageview", "old")
    new = idempotency_kind(dt.date(2026, 11, 10), "pageview", "new")
    local_stores.records.put(old, "pageview/old", {"at": 0})
    local_stores.records.put(new, "pageview/new", {"at": 0})
    result = close_day(local_stores, dt.date(2026, 11, 10), now=late)
    assert result["business_dates"] == ["2026-11-10"]
    assert result["dedupe_records_pruned"] == 1
    assert local_stores.records.scan(old) == []
    assert [key for key, _ in local_stores.records.scan(new)] == ["pageview/new"]
    stats = local_stores.lake.read_table([layout.business_rollup_key("2026-11-10", "stats")])
    assert stats.to_pylist()[0]["pageviews"] == 1
    assert local_stores.state.get(CLOSED_DAY) == "2026-11-10"
    assert day_to_close(local_stores, 30, late) is None


def test_scheduler_command_stops_on_sigterm(local_settings, tmp_path):
    env = {
        **os.environ,
        "LAKE_ROOT": str(local_settings.lake_root),
        "STATE_DB": str(local_settings.state_db),
        "ROLLUP_INTERVAL_SECONDS": "0.5",
        "ALERT_INTERVAL_SECONDS": "0.5",
        "COLLECT_INTERVAL_SECONDS": "0.2",
        "HOME": str(tmp_path),
        # A scheduler that does not stop is aborted: every thread's stack, to say where.
        "PYTHONFAULTHANDLER": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "scheduler"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        lake = local_settings.lake_root
        wait_until(lambda: (lake / "raw" / "metrics").exists() or process.poll() is not None)
        assert process.poll() is None, process.stdout.read().decode()
        process.send_signal(signal.SIGTERM)
        try:
            output = process.communicate(timeout=60)[0].decode()
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            stacks = process.communicate(timeout=30)[0].decode()
            pytest.fail(f"the scheduler did not stop within 60 s of SIGTERM:\n{stacks[-8000:]}")
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "scheduler stopped" in output


class LambdaContext:
    def get_remaining_time_in_millis(self) -> int:
        return 20_000


@pytest.fixture
def lambda_env(local_settings, monkeypatch):
    monkeypatch.setenv("LAKE_ROOT", str(local_settings.lake_root))
    monkeypatch.setenv("STATE_DB", str(local_settings.state_db))
    monkeypatch.setattr(lambda_handlers, "_warm", {})
    yield
    lambda_handlers._warm.clear()


def test_lambda_handlers_do_the_schedulers_work(local_stores, lambda_env):
    event = pageview()
    write_raw_event(local_stores, event)
    result = lambda_handlers.pipeline_handler({"source": "aws.events"}, LambdaContext())
    assert result["event_partitions_compacted"] == 1
    assert result["business_dates"] == [event["ts"][:10]]

    alerts = lambda_handlers.alerts_handler({"source": "aws.events"}, LambdaContext())
    assert "no_uploads:screen_time" in alerts["opened"]
    assert alerts["deliveries_pending"] == 0

    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
    closed = lambda_handlers.daily_handler({"day": day}, LambdaContext())
    assert closed["day"] == day


def test_lambda_s3_events_compact_the_hours_they_touch(local_stores, lambda_env):
    event = pageview()
    ts = dt.datetime.fromisoformat(event["ts"][:-1])
    key = f"raw/events/pageview/{ts:%Y/%m/%d/%H}/batch+one.jsonl"
    local_stores.lake.write_bytes(
        key, (json.dumps({**event, "event_type": "pageview"}) + "\n").encode()
    )
    s3_event = {"Records": [{"s3": {"object": {"key": key.replace("+", "%2B")}}}]}
    result = lambda_handlers.s3_handler(s3_event, LambdaContext())
    assert result["event_partitions"] == 1
    assert any(local_stores.lake.list(layout.PROCESSED_EVENTS))


def test_scheduler_settings_from_env():
    settings = SchedulerSettings.from_env(
        {
            "SCHEDULER_JOBS": "alerts,collect",
            "ROLLUP_INTERVAL_SECONDS": "600",
            "ALERT_CPU_PERCENT": "70",
            "NOTIFY_MAX_ATTEMPTS": "3",
        }
    )
    assert settings.jobs == ("alerts", "collect")
    assert settings.rollup_interval_seconds == 600
    assert settings.alerts.cpu_percent == 70
    with pytest.raises(ValueError):
        SchedulerSettings.from_env({"SCHEDULER_JOBS": "alerts,rollups"})
    assert settings.notify.max_attempts == 3
