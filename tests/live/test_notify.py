"""Notifications: a loopback webhook gets a Slack-compatible body; failures are retried with
backoff and recorded; a slow receiver never holds up evaluation."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.alerts import RULES, AlertSettings, evaluate
from pipeline.collectors import write_points
from pipeline.events import compact_metrics
from pipeline.notify import Notifier, NotifySettings, list_deliveries

NOW = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC)
CPU_RULE = tuple(rule for rule in RULES if rule.name == "cpu")


class Receiver:
    """A webhook receiver on loopback that answers with scripted statuses."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.bodies: list[dict] = []
        self.release = threading.Event()
        self.release.set()
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.bodies.append(body)
                receiver.arrived.set()
                receiver.release.wait(20)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def fire_cpu_alert(stores, notifier) -> None:
    for minute in (1, 2, 3):
        write_points(
            stores.lake, "web-1", [("cpu_percent", 97.0)], NOW - dt.timedelta(minutes=minute)
        )
    compact_metrics(stores, now=NOW.timestamp())
    summary = evaluate(
        stores, AlertSettings(), now=NOW.timestamp(), notifier=notifier, rules=CPU_RULE
    )
    assert summary.opened == ["cpu:web-1"]


def settings_for(url: str, **extra) -> NotifySettings:
    return NotifySettings(
        webhook_url=url,
        backoff_seconds=0.05,
        backoff_max_seconds=0.2,
        timeout_seconds=5,
        dashboard_url="https://mc.example.com",
        **extra,
    )


def wait_for(predicate, timeout: float = 20.0) -> None:
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not predicate():
            if done.wait(0.02):
                raise AssertionError("condition not met in time")
    finally:
        deadline.cancel()


def test_webhook_receives_a_slack_compatible_body(local_stores):
    with Receiver() as receiver:
        notifier = Notifier(local_stores.records, settings_for(receiver.url))
        notifier.start()
        try:
            fire_cpu_alert(local_stores, notifier)
            wait_for(lambda: list_deliveries(local_stores.records)[0]["status"] == "delivered")
        finally:
            notifier.close()
    (body,) = receiver.bodies
    assert body["text"].startswith("WARNING cpu on web-1")
    assert body["blocks"][0]["type"] == "section"
    assert "https://mc.example.com/alerts" in json.dumps(body["blocks"])
    assert body["alert"]["rule"] == "cpu" and body["alert"]["change"] == "opened"
    delivery = list_deliveries(local_stores.records)[0]
    assert delivery["channel"] == "webhook"
    assert [a["ok"] for a in delivery["attempts"]] == [True]


def test_a_failing_receiver_is_retried_and_every_attempt_recorded(local_stores):
    with Receiver([500, 503, 200]) as receiver:
        notifier = Notifier(local_stores.records, settings_for(receiver.url))
        notifier.start()
        try:
            fire_cpu_alert(local_stores, notifier)
            wait_for(lambda: list_deliveries(local_stores.records)[0]["status"] == "delivered")
        finally:
            notifier.close()
    assert len(receiver.bodies) == 3
    attempts = list_deliveries(local_stores.records)[0]["attempts"]
    assert [(a["ok"], a["detail"]) for a in attempts] == [
        (False, "RuntimeError: HTTP 500"),
        (False, "RuntimeError: HTTP 503"),
        (True, "HTTP 200"),
    ]


def test_retries_stop_at_the_limit_and_4xx_is_not_retried(local_stores):
    with Receiver([500] * 10) as receiver:
        notifier = Notifier(local_stores.records, settings_for(receiver.url, max_attempts=3))
        notifier.start()
        try:
            fire_cpu_alert(local_stores, notifier)
            wait_for(lambda: list_deliveries(local_stores.records)[0]["status"] == "failed")
        finally:
            notifier.close()
    assert len(receiver.bodies) == 3
    assert len(list_deliveries(local_stores.records)[0]["attempts"]) == 3

    with Receiver([404]) as receiver:
        notifier = Notifier(local_stores.records, settings_for(receiver.url))
        notifier.start()
        try:
            later = NOW + dt.timedelta(hours=3)  # the host went quiet: the alert resolves
            summary = evaluate(
                local_stores,
                AlertSettings(),
                now=later.timestamp(),
                notifier=notifier,
                rules=CPU_RULE,
            )
            assert summary.resolved == ["cpu:web-1"]
            wait_for(lambda: list_deliveries(local_stores.records)[0]["status"] == "failed")
        finally:
            notifier.close()
    assert len(receiver.bodies) == 1
    assert receiver.bodies[0]["text"].startswith("RESOLVED cpu on web-1")


def test_evaluation_finishes_while_the_receiver_is_still_stuck(local_stores):
    with Receiver() as receiver:
        receiver.release.clear()  # the receiver holds every request until released
        notifier = Notifier(local_stores.records, settings_for(receiver.url))
        notifier.start()
        try:
            fire_cpu_alert(local_stores, notifier)  # returns although delivery cannot finish
            assert receiver.arrived.wait(20)
            assert list_deliveries(local_stores.records)[0]["status"] == "pending"
            receiver.release.set()
            wait_for(lambda: list_deliveries(local_stores.records)[0]["status"] == "delivered")
        finally:
            notifier.close()


def test_sns_gets_the_alert_when_configured(local_stores):
    published = []
    notifier = Notifier(
        local_stores.records,
        NotifySettings(sns_topic_arn="arn:aws:sns:us-east-1:123456789012:alerts"),
        sns_publish=lambda subject, message: published.append((subject, message)),
    )
    fire_cpu_alert(local_stores, notifier)
    notifier.drain(timeout=5)
    ((subject, message),) = published
    assert subject.startswith("WARNING cpu on web-1")
    assert "severity: warning" in message
    assert list_deliveries(local_stores.records)[0]["status"] == "delivered"


def test_pending_deliveries_are_resumed_by_the_next_process(local_stores):
    with Receiver() as receiver:
        first = Notifier(local_stores.records, settings_for(receiver.url))
        fire_cpu_alert(local_stores, first)  # queued, never delivered: the process "ended"
        assert list_deliveries(local_stores.records)[0]["status"] == "pending"
        second = Notifier(local_stores.records, settings_for(receiver.url))
        assert second.resume_pending(max_age_seconds=10**9) == 1
        second.drain(timeout=10)
    assert len(receiver.bodies) == 1
    assert list_deliveries(local_stores.records)[0]["status"] == "delivered"


@pytest.mark.parametrize("queue_size", [1])
def test_a_full_queue_records_the_dropped_delivery(local_stores, queue_size):
    notifier = Notifier(
        local_stores.records,
        NotifySettings(webhook_url="http://127.0.0.1:9/", queue_size=queue_size),
    )
    fire_cpu_alert(local_stores, notifier)
    later = NOW + dt.timedelta(hours=3)
    evaluate(
        local_stores, AlertSettings(), now=later.timestamp(), notifier=notifier, rules=CPU_RULE
    )
    statuses = sorted(d["status"] for d in list_deliveries(local_stores.records))
    assert statuses == ["dropped", "pending"]
