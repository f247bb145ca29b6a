"""Each alert rule fires and resolves on crafted data; one open alert per rule and subject."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from data_access import layout
from data_access.alerts import (
    VERSION_ALERTS,
    acknowledge_alert,
    list_alerts,
    open_alert,
    open_alerts,
)
from data_access.stores import UploadRecord
from pipeline.alerts import RULES, AlertSettings, Rule, evaluate
from pipeline.collectors import write_points
from pipeline.events import compact_events, compact_metrics
from tests.live.factories import purchase, utc_ts

NOW = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC)
RULE = {rule.name: rule for rule in RULES}
SETTINGS = AlertSettings()


def put_metric(stores, host: str, metric: str, value: float, minutes: list[float], now=NOW):
    for minute in minutes:
        write_points(stores.lake, host, [(metric, value)], now - dt.timedelta(minutes=minute))


def run(stores, name: str, now: dt.datetime = NOW, **kwargs):
    compact_metrics(stores, now=now.timestamp())
    compact_events(stores, now=now.timestamp())
    return evaluate(stores, SETTINGS, now=now.timestamp(), rules=(RULE[name],), **kwargs)


def open_by_rule(stores) -> dict[tuple[str, str], str]:
    return {key: alert.severity for key, alert in open_alerts(stores.records).items()}


@pytest.mark.parametrize(
    ("rule", "metric", "bad", "worse", "good", "severities"),
    [
        ("cpu", "cpu_percent", 95.0, None, 20.0, ("warning",)),
        ("memory", "memory_percent", 93.0, None, 40.0, ("warning",)),
        ("disk", "disk_percent", 88.0, 97.0, 50.0, ("warning", "error")),
        ("error_rate", "error_rate", 0.03, 0.2, 0.001, ("warning", "error")),
        ("latency_p95", "latency_p95_ms", 1500.0, None, 120.0, ("warning",)),
        ("latency_p99", "latency_p99_ms", 3000.0, None, 300.0, ("error",)),
    ],
)
def test_metric_rules_fire_escalate_and_resolve(
    local_stores, rule, metric, bad, worse, good, severities
):
    put_metric(local_stores, "web-1", metric, good, [1, 2, 3])
    assert run(local_stores, rule).opened == []

    later = NOW + dt.timedelta(minutes=10)
    put_metric(local_stores, "web-1", metric, bad, [0.5, 1, 2, 3, 4], now=later)
    put_metric(local_stores, "web-2", metric, good, [0.5, 1, 2], now=later)
    summary = run(local_stores, rule, later)
    assert summary.opened == [f"{rule}:web-1"]
    assert open_by_rule(local_stores) == {(rule, "web-1"): severities[0]}
    assert run(local_stores, rule, later + dt.timedelta(seconds=30)).opened == []  # still one

    if worse is not None:
        worse_at = later + dt.timedelta(minutes=10)
        put_metric(local_stores, "web-1", metric, worse, [0.5, 1, 2, 3, 4], now=worse_at)
        summary = run(local_stores, rule, worse_at)
        assert summary.escalated == [f"{rule}:web-1"]
        assert open_by_rule(local_stores) == {(rule, "web-1"): severities[1]}
        later = worse_at

    fixed = later + dt.timedelta(minutes=10)
    put_metric(local_stores, "web-1", metric, good, [0.5, 1, 2, 3, 4], now=fixed)
    put_metric(local_stores, "web-2", metric, good, [0.5, 1], now=fixed)
    summary = run(local_stores, rule, fixed)
    assert summary.resolved == [f"{rule}:web-1"]
    assert open_by_rule(local_stores) == {}
    history = list_alerts(local_stores.records)
    assert [(a.rule, a.subject, a.status, a.resolved_by) for a in history] == [
        (rule, "web-1", "resolved", "auto")
    ]


def write_purchases(stores, amounts: list[float], at: dt.datetime) -> None:
    lines = [
        json.dumps({**purchase(ts=utc_ts(at), amount=amount), "event_type": "purchase"})
        for amount in amounts
    ]
    key = f"raw/events/purchase/{at:%Y/%m/%d/%H}/test-{time.time_ns()}.jsonl"
    stores.lake.write_bytes(key, ("\n".join(lines) + "\n").encode())


def test_revenue_drop_against_the_same_time_yesterday(local_stores):
    yesterday = NOW - dt.timedelta(days=1)
    write_purchases(local_stores, [400.0, 600.0], yesterday.replace(hour=9))
    write_purchases(local_stores, [5000.0], yesterday.replace(hour=13))  # after the cutoff
    write_purchases(local_stores, [500.0], NOW.replace(hour=9))
    summary = run(local_stores, "revenue_drop")
    assert summary.opened == ["revenue_drop:all"]
    alert = next(iter(open_alerts(local_stores.records).values()))
    assert alert.severity == "error"
    assert alert.value == pytest.approx(-0.5)

    write_purchases(local_stores, [350.0], NOW.replace(hour=10))  # 850 of 1000: -15%
    summary = run(local_stores, "revenue_drop", NOW + dt.timedelta(minutes=1))
    assert summary.resolved == ["revenue_drop:all"]


def test_no_uploads_fires_until_an_upload_is_processed(local_stores):
    now = NOW.timestamp()
    assert run(local_stores, "no_uploads").opened == ["no_uploads:screen_time"]
    local_stores.index.put(UploadRecord("c1", "2026-11-10", "k", "r", 1, 1, 1, now - 120, "hash"))
    assert run(local_stores, "no_uploads").resolved == ["no_uploads:screen_time"]


def test_no_events_fires_until_events_arrive(local_stores):
    now = dt.datetime.now(dt.UTC)  # this rule looks at arrival (file) times
    assert run(local_stores, "no_events", now).opened == ["no_events:events"]
    write_purchases(local_stores, [10.0], now)
    assert run(local_stores, "no_events", now).resolved == ["no_events:events"]


def test_quarantine_spike_fires_and_clears_when_the_window_passes(local_stores):
    now = dt.datetime.now(dt.UTC)
    for n in range(9):
        local_stores.lake.write_bytes(f"{layout.QUARANTINE_SCREEN_TIME}{n}.reason.json", b"{}")
    assert run(local_stores, "quarantine_spike", now).opened == []
    local_stores.lake.write_bytes(f"{layout.QUARANTINE_SCREEN_TIME}9.reason.json", b"{}")
    local_stores.lake.write_bytes(f"{layout.QUARANTINE_SCREEN_TIME}9.json", b"{}")  # not a reason
    summary = run(local_stores, "quarantine_spike", now)
    assert summary.opened == ["quarantine_spike:quarantine"]
    assert next(iter(open_alerts(local_stores.records).values())).value == 10
    summary = run(local_stores, "quarantine_spike", now + dt.timedelta(minutes=16))
    assert summary.resolved == ["quarantine_spike:quarantine"]


def test_cache_hit_ratio_falling_against_the_previous_hour(local_stores):
    earlier = [20 + m for m in range(0, 60, 5)]
    put_metric(local_stores, "web-1", "cache_reads", 100, earlier)
    put_metric(local_stores, "web-1", "cache_hits", 90, earlier)
    put_metric(local_stores, "web-1", "cache_reads", 100, [1, 5, 10])
    put_metric(local_stores, "web-1", "cache_hits", 60, [1, 5, 10])  # 60%: above the floor
    summary = run(local_stores, "cache_hit_ratio")
    assert summary.opened == ["cache_hit_ratio:web-1"]  # but 30 points below the hour before
    assert next(iter(open_alerts(local_stores.records).values())).severity == "info"

    later = NOW + dt.timedelta(minutes=30)
    put_metric(local_stores, "web-1", "cache_reads", 100, [1, 5, 10, 20, 30, 40], now=later)
    put_metric(local_stores, "web-1", "cache_hits", 88, [1, 5, 10, 20, 30, 40], now=later)
    assert run(local_stores, "cache_hit_ratio", later).resolved == ["cache_hit_ratio:web-1"]

    low = later + dt.timedelta(minutes=30)
    put_metric(local_stores, "web-1", "cache_reads", 100, [1, 5, 10, 20, 30, 40], now=low)
    put_metric(local_stores, "web-1", "cache_hits", 30, [1, 5, 10, 20, 30, 40], now=low)
    assert run(local_stores, "cache_hit_ratio", low).opened == ["cache_hit_ratio:web-1"]


def test_a_fresh_start_is_not_judged_until_it_has_been_seen_for_a_whole_window(local_stores):
    # Started 8 minutes ago (inside the 15-minute window), caches still cold.
    put_metric(local_stores, "web-2", "cache_reads", 100, [1, 3, 5, 8])
    put_metric(local_stores, "web-2", "cache_hits", 10, [1, 3, 5, 8])
    assert run(local_stores, "cache_hit_ratio").opened == []
    # The same ratio from a host seen for longer than the window is an alert.
    put_metric(local_stores, "web-3", "cache_reads", 100, [1, 3, 5, 8, 20])
    put_metric(local_stores, "web-3", "cache_hits", 10, [1, 3, 5, 8, 20])
    assert run(local_stores, "cache_hit_ratio").opened == ["cache_hit_ratio:web-3"]


def test_a_host_that_stops_reporting_has_its_alert_resolved(local_stores):
    put_metric(local_stores, "web-9", "cpu_percent", 99.0, [1, 2])
    assert run(local_stores, "cpu").opened == ["cpu:web-9"]
    assert run(local_stores, "cpu", NOW + dt.timedelta(hours=2)).resolved == ["cpu:web-9"]


def test_a_failing_rule_leaves_its_alerts_alone(local_stores):
    put_metric(local_stores, "web-1", "cpu_percent", 99.0, [1, 2])
    assert run(local_stores, "cpu").opened == ["cpu:web-1"]

    def broken(_ctx):
        raise RuntimeError("lake hiccup")

    summary = evaluate(
        local_stores, SETTINGS, now=NOW.timestamp(), rules=(Rule("cpu", broken, "broken"),)
    )
    assert summary.failed_rules == ["cpu"]
    assert summary.resolved == []
    assert list(open_alerts(local_stores.records)) == [("cpu", "web-1")]


def test_acknowledgement_survives_escalation_and_versions_move(local_stores):
    put_metric(local_stores, "web-1", "disk_percent", 88.0, [1, 2])
    run(local_stores, "disk")
    version = local_stores.state.get(VERSION_ALERTS)
    alert = next(iter(open_alerts(local_stores.records).values()))
    acknowledge_alert(
        local_stores.records, local_stores.state, alert.alert_id, by="ops", now=NOW.timestamp()
    )
    later = NOW + dt.timedelta(minutes=10)
    put_metric(local_stores, "web-1", "disk_percent", 99.0, [1, 2], now=later)
    run(local_stores, "disk", later)
    escalated = next(iter(open_alerts(local_stores.records).values()))
    assert escalated.alert_id == alert.alert_id
    assert escalated.severity == "error"
    assert escalated.acknowledged_by == "ops"
    assert local_stores.state.get(VERSION_ALERTS) != version


def test_only_one_alert_opens_per_rule_and_subject(local_stores):
    common = dict(rule="cpu", subject="web-1", message="m", value=1.0, threshold=1.0)
    first = open_alert(local_stores.records, severity="warning", now=1.0, **common)
    second = open_alert(local_stores.records, severity="error", now=2.0, **common)
    assert first is not None and second is None
    assert len(list_alerts(local_stores.records)) == 1


def test_thresholds_come_from_the_environment():
    settings = AlertSettings.from_env({"ALERT_CPU_PERCENT": "75", "ALERT_QUARANTINE_SPIKE": "3"})
    assert settings.cpu_percent == 75.0
    assert settings.quarantine_spike == 3 and isinstance(settings.quarantine_spike, int)
    assert settings.memory_percent == AlertSettings().memory_percent


def test_cli_lists_evaluates_acknowledges_and_resolves(local_settings, monkeypatch, capsys):
    from pipeline.cli import main

    monkeypatch.setenv("LAKE_ROOT", str(local_settings.lake_root))
    monkeypatch.setenv("STATE_DB", str(local_settings.state_db))
    assert main(["alerts", "evaluate"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert "no_uploads:screen_time" in evaluated["opened"]  # an empty lake has no uploads
    assert main(["alerts", "list", "--open"]) == 0
    (listed,) = [a for a in json.loads(capsys.readouterr().out) if a["rule"] == "no_uploads"]
    assert main(["alerts", "ack", listed["alert_id"], "--by", "ops"]) == 0
    assert json.loads(capsys.readouterr().out)["acknowledged_by"] == "ops"
    assert main(["alerts", "resolve", listed["alert_id"], "--by", "ops"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "resolved"
    assert main(["alerts", "ack", "no-such-alert"]) == 1
