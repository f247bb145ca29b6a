"""Alert notifications: a webhook with a Slack-compatible body, and SNS when configured.

Evaluation never waits for a receiver: ``Notifier.submit`` only enqueues. A worker thread
delivers, retrying failures with exponential backoff (4xx other than 408/429 is permanent),
and records every delivery and attempt in the records store (kind ``delivery``). In a Lambda,
``drain(timeout)`` delivers what is due within a bounded time instead of a thread.
"""

from __future__ import annotations

import heapq
import logging
import queue
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import requests

from configuration.base import setting
from data_access.alerts import Alert
from data_access.settings_base import AwsSettings
from data_access.stores import RecordStore, StoreUnavailable

log = logging.getLogger(__name__)

KIND = "delivery"
_COLOURS = {"error": "#d93025", "warning": "#f9ab00", "info": "#1a73e8", "resolved": "#188038"}


class NotifySettings(AwsSettings):
    webhook_url: str | None = setting(
        None,
        "ALERT_WEBHOOK_URL",
        description="POST a Slack-compatible JSON body here when an alert opens, escalates or "
        "resolves",
    )
    sns_topic_arn: str | None = setting(
        None, "ALERT_SNS_TOPIC_ARN", description="also publish to this SNS topic"
    )
    sns_endpoint: str | None = setting(
        None,
        "AWS_ENDPOINT_URL_SNS",
        description="SNS endpoint",
        shown_default="`AWS_ENDPOINT_URL`",
    )
    timeout_seconds: float = setting(
        5.0, "NOTIFY_TIMEOUT_SECONDS", description="timeout of each delivery attempt", gt=0
    )
    max_attempts: int = setting(
        6,
        "NOTIFY_MAX_ATTEMPTS",
        description="attempts before a delivery is recorded as failed",
        ge=1,
    )
    backoff_seconds: float = setting(
        2.0, "NOTIFY_BACKOFF_SECONDS", description="first retry delay; doubles each time", ge=0
    )
    backoff_max_seconds: float = setting(
        300.0, "NOTIFY_BACKOFF_MAX_SECONDS", description="longest retry delay", ge=0
    )
    dashboard_url: str | None = setting(
        None, "DASHBOARD_URL", description="link to the Alerts page in notifications"
    )
    # Not a setting: deliveries waiting in memory before new ones are dropped.
    queue_size: int = 1000

    service_endpoints: ClassVar[tuple[str, ...]] = ("sns_endpoint",)


@dataclass(frozen=True)
class AlertEvent:
    change: str  # opened, escalated, resolved
    alert: Alert


class PermanentFailure(Exception):
    """The receiver refused the message in a way a retry will not change."""


def headline(event: AlertEvent) -> str:
    alert = event.alert
    if event.change == "resolved":
        return f"RESOLVED {alert.rule} on {alert.subject}"
    return f"{alert.severity.upper()} {alert.rule} on {alert.subject}: {alert.message}"


def slack_body(event: AlertEvent, dashboard_url: str | None = None) -> dict[str, Any]:
    """A body Slack incoming webhooks accept (``text`` plus blocks); other receivers get
    the same JSON with the alert's fields under ``alert``."""
    alert = event.alert
    text = headline(event)
    fields = [
        {"type": "mrkdwn", "text": f"*Rule*\n{alert.rule}"},
        {"type": "mrkdwn", "text": f"*Subject*\n{alert.subject}"},
        {"type": "mrkdwn", "text": f"*Severity*\n{alert.severity}"},
        {"type": "mrkdwn", "text": f"*Value*\n{alert.value} (threshold {alert.threshold})"},
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}},
        {"type": "section", "fields": fields},
    ]
    if dashboard_url:
        link = f"{dashboard_url.rstrip('/')}/alerts"
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{link}|Open alerts>"}]}
        )
    colour = _COLOURS["resolved" if event.change == "resolved" else alert.severity]
    return {
        "text": text,
        "blocks": blocks,
        "attachments": [{"color": colour, "fallback": text}],
        "alert": {**alert.as_doc(), "change": event.change},
    }


@dataclass(order=True)
class _Due:
    due_at: float
    sequence: int
    delivery: dict = field(compare=False)


class Notifier:
    def __init__(
        self,
        records: RecordStore,
        settings: NotifySettings,
        *,
        post: Callable[..., requests.Response] = requests.post,
        sns_publish: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.records = records
        self.settings = settings
        self._post = post
        self._sns_publish = sns_publish
        self._clock = clock
        self._inbox: queue.Queue[dict] = queue.Queue(maxsize=settings.queue_size)
        self._due: list[_Due] = []
        self._sequence = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sns: Any = None  # boto3 client, made on first SNS delivery

    @property
    def channels(self) -> list[str]:
        found = []
        if self.settings.webhook_url:
            found.append("webhook")
        if self.settings.sns_topic_arn:
            found.append("sns")
        return found

    # -- producer side -------------------------------------------------------------------

    def submit(self, event: AlertEvent) -> None:
        """Queue one delivery per channel; never blocks and never raises."""
        now = self._clock()
        for channel in self.channels:
            delivery = {
                "delivery_id": f"{now:017.6f}-{secrets.token_hex(4)}",
                "channel": channel,
                "alert_id": event.alert.alert_id,
                "change": event.change,
                "body": slack_body(event, self.settings.dashboard_url),
                "status": "pending",
                "attempts": [],
                "created_at": now,
                "updated_at": now,
            }
            try:
                self._inbox.put_nowait(delivery)
            except queue.Full:
                delivery["status"] = "dropped"
                delivery["attempts"].append({"at": now, "ok": False, "detail": "queue full"})
                log.error("notification queue full, delivery %s dropped", delivery["delivery_id"])
            self._record(delivery)

    def resume_pending(self, *, max_age_seconds: float = 3600.0) -> int:
        """Re-queue deliveries a previous process left pending (e.g. a Lambda that ended)."""
        now = self._clock()
        resumed = 0
        for _, delivery in self.records.scan(KIND, limit=500, newest_first=True):
            if now - delivery.get("created_at", 0) > max_age_seconds:
                break
            if delivery.get("status") == "pending":
                self._schedule(delivery, max(now, delivery.get("next_attempt_at", now)))
                resumed += 1
        return resumed

    # -- worker side ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def pending(self) -> int:
        return self._inbox.qsize() + len(self._due)

    def _take_inbox(self, wait: float) -> None:
        try:
            delivery = self._inbox.get(timeout=wait) if wait > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return
        self._schedule(delivery, self._clock())
        while True:
            try:
                self._schedule(self._inbox.get_nowait(), self._clock())
            except queue.Empty:
                return

    def _schedule(self, delivery: dict, due_at: float) -> None:
        self._sequence += 1
        heapq.heappush(self._due, _Due(due_at, self._sequence, delivery))

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = 0.5
            if self._due:
                wait = min(wait, max(0.0, self._due[0].due_at - self._clock()))
            self._take_inbox(wait)
            self._deliver_due(deadline=None)

    def drain(self, timeout: float) -> None:
        """Deliver everything queued, waiting for retries until ``timeout`` seconds pass."""
        deadline = self._clock() + timeout
        self._take_inbox(0)
        while (self._due or not self._inbox.empty()) and self._clock() < deadline:
            self._take_inbox(0)
            self._deliver_due(deadline)
            if self._due:
                time.sleep(max(0.0, min(self._due[0].due_at, deadline) - self._clock()))

    def _deliver_due(self, deadline: float | None) -> None:
        while self._due and self._due[0].due_at <= self._clock():
            if deadline is not None and self._clock() >= deadline:
                return
            self._attempt(heapq.heappop(self._due).delivery)

    def _attempt(self, delivery: dict) -> None:
        now = self._clock()
        try:
            detail = self._send(delivery)
            ok, permanent = True, False
        except PermanentFailure as exc:
            ok, permanent, detail = False, True, str(exc)
        except Exception as exc:  # any transport error is worth a retry
            ok, permanent, detail = False, False, f"{type(exc).__name__}: {exc}"[:300]
        delivery["attempts"].append({"at": now, "ok": ok, "detail": detail})
        delivery["updated_at"] = now
        attempts = len(delivery["attempts"])
        if ok:
            delivery["status"] = "delivered"
        elif permanent or attempts >= self.settings.max_attempts:
            delivery["status"] = "failed"
            log.error("delivery %s failed for good: %s", delivery["delivery_id"], detail)
        else:
            delay = min(
                self.settings.backoff_seconds * 2 ** (attempts - 1),
                self.settings.backoff_max_seconds,
            )
            delay *= random.uniform(0.8, 1.2)  # jitter: retries of many alerts spread out
            delivery["next_attempt_at"] = now + delay
            self._schedule(delivery, now + delay)
            log.warning(
                "delivery %s failed, retry in %.1f s: %s", delivery["delivery_id"], delay, detail
            )
        self._record(delivery)

    def _send(self, delivery: dict) -> str:
        if delivery["channel"] == "webhook":
            response = self._post(
                self.settings.webhook_url,
                json=delivery["body"],
                timeout=self.settings.timeout_seconds,
            )
            status = response.status_code
            if 200 <= status < 300:
                return f"HTTP {status}"
            if 400 <= status < 500 and status not in (408, 429):
                raise PermanentFailure(f"HTTP {status}")
            raise RuntimeError(f"HTTP {status}")
        publish = self._sns_publish or self._boto_sns_publish
        publish(delivery["body"]["text"][:100], _sns_message(delivery["body"]))
        return "published"

    def _boto_sns_publish(self, subject: str, message: str) -> None:
        import boto3  # only when SNS is configured
        from botocore.config import Config

        if self._sns is None:
            self._sns = boto3.client(
                "sns",
                region_name=self.settings.aws_region,
                endpoint_url=self.settings.sns_endpoint,
                config=Config(
                    connect_timeout=self.settings.timeout_seconds,
                    read_timeout=self.settings.timeout_seconds,
                    retries={"max_attempts": 1},
                ),
            )
        self._sns.publish(
            TopicArn=self.settings.sns_topic_arn,
            Subject="".join(c for c in subject if c.isprintable()),
            Message=message,
        )

    def _record(self, delivery: dict) -> None:
        try:
            self.records.put(KIND, delivery["delivery_id"], delivery)
        except StoreUnavailable as exc:
            log.warning("could not record delivery %s: %s", delivery["delivery_id"], exc)


def _sns_message(body: dict) -> str:
    alert = body["alert"]
    lines = [body["text"], ""]
    lines += [f"{name}: {alert.get(name)}" for name in ("rule", "subject", "severity", "value")]
    return "\n".join(lines)


def list_deliveries(records: RecordStore, *, limit: int = 100) -> list[dict]:
    return [doc for _, doc in records.scan(KIND, limit=limit, newest_first=True)]
