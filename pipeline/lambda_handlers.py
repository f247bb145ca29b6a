"""AWS Lambda entry points: the scheduler's jobs for EventBridge schedules, and S3 events.

| handler | trigger |
|---|---|
| ``pipeline.lambda_handlers.pipeline_handler`` | EventBridge ``rate(5 minutes)`` |
| ``pipeline.lambda_handlers.alerts_handler`` | EventBridge ``rate(1 minute)`` |
| ``pipeline.lambda_handlers.daily_handler`` | EventBridge ``cron(30 0 * * ? *)`` |
| ``pipeline.lambda_handlers.sqs_handler`` | the upload queue (S3 ``raw/screen_time/``) |
| ``pipeline.lambda_handlers.s3_handler`` | S3 ``ObjectCreated`` on events and metrics |

They call the same functions as ``pipeline.scheduler``. Give the schedule functions a reserved
concurrency of 1: compaction rewrites whole hours, and two runs of the same hour at once
could write an older listing last. Stores are built on the first invocation of a container
and reused while it stays warm; nothing happens at import time.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any
from urllib.parse import unquote_plus

from data_access.factory import build_stores
from data_access.settings import DataSettings
from data_access.stores import (
    QueueMessage,
    Stores,
    parse_upload_notification,
)
from pipeline.scheduler import (
    SchedulerSettings,
    close_day,
    day_to_close,
    run_alerts,
    run_pipeline,
)

log = logging.getLogger(__name__)

_warm: dict[str, Any] = {}
# Leave this much of the invocation's time for the function to return.
TIME_MARGIN_SECONDS = 5.0


def _stores() -> Stores:
    if "stores" not in _warm:
        _warm["stores"] = build_stores(DataSettings.from_env())
    return _warm["stores"]


def _settings() -> SchedulerSettings:
    if "settings" not in _warm:
        _warm["settings"] = SchedulerSettings.from_env()
    return _warm["settings"]


def _remaining_seconds(context: Any, default: float = 30.0) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining() / 1000 if remaining else default


def pipeline_handler(event: dict, context: Any = None) -> dict:
    return run_pipeline(_stores())


def alerts_handler(event: dict, context: Any = None) -> dict:
    """Evaluate, then deliver notifications within the time this invocation has left."""
    from pipeline.notify import Notifier

    settings = _settings()
    stores = _stores()
    notifier = Notifier(stores.records, settings.notify)
    notifier.resume_pending()
    result = run_alerts(stores, settings.alerts, notifier=notifier)
    # Retries this invocation cannot wait for stay pending; the next invocation resumes them.
    notifier.drain(timeout=max(0.0, _remaining_seconds(context) - TIME_MARGIN_SECONDS))
    result["deliveries_pending"] = notifier.pending()
    return result


def daily_handler(event: dict, context: Any = None) -> dict:
    settings = _settings()
    stores = _stores()
    day = day_to_close(stores, settings.daily_close_grace_minutes, time.time())
    if event.get("day"):  # a manual re-run for a given day
        day = dt.date.fromisoformat(event["day"])
    if day is None:
        return {"closed": None}
    return close_day(stores, day, dedupe_retention_days=settings.dedupe_retention_days)


def sqs_handler(event: dict, context: Any = None) -> dict:
    """Screen-time uploads from the SQS queue (``ReportBatchItemFailures``).

    A message that fails is reported, its reason recorded, and SQS delivers it again; after
    the queue's maxReceiveCount it moves to the dead-letter queue. Test events and messages
    whose uploads are processed (or quarantined) succeed.
    """
    from pipeline.process import process_batch, publish

    stores = _stores()
    failures: dict[QueueMessage, str] = {}
    messages = []
    for record in event.get("Records", []):
        keys, problem = parse_upload_notification(record.get("body", ""))
        attempts = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
        message = QueueMessage(
            record.get("messageId", ""), record.get("receiptHandle", ""), keys, attempts
        )
        if problem is not None:
            failures[message] = problem
        else:
            messages.append(message)
    # One batch: one part per (date, bucket) for every upload the messages name.
    outcomes, failed = process_batch(stores, [(m, m.keys) for m in messages], set())
    failures.update(failed)
    for message, reason in failures.items():
        log.warning("message %s failed: %s", message.id, reason)
        # Records the reason and shortens the wait before the next try; SQS's redrive
        # moves the message to the dead-letter queue after maxReceiveCount.
        stores.queue.release(message, reason)
    committed = [o for m in messages if m not in failures for o in outcomes.get(m, [])]
    # Versions and counters once per batch, as the local worker does.
    publish(stores, committed)
    return {"batchItemFailures": [{"itemIdentifier": m.id} for m in failures]}


def s3_handler(event: dict, context: Any = None) -> dict:
    """Event and metric batches are compacted for the hours they landed in."""
    from pipeline.events import compact_events, compact_metrics

    stores = _stores()
    keys = [
        unquote_plus(record["s3"]["object"]["key"])
        for record in event.get("Records", [])
        if "s3" in record
    ]
    result: dict[str, Any] = {"keys": len(keys)}
    hours = [_hour_of(key) for key in keys if key.startswith(("raw/events/", "raw/metrics/"))]
    hours = [hour for hour in hours if hour is not None]
    if hours:
        since = min(hours)
        if any(key.startswith("raw/events/") for key in keys):
            result["event_partitions"] = compact_events(stores, since_hour=since).compacted
        if any(key.startswith("raw/metrics/") for key in keys):
            result["metric_partitions"] = compact_metrics(stores, since_hour=since).compacted
    return result


def _hour_of(key: str) -> dt.datetime | None:
    """The UTC hour in ``.../{yyyy}/{mm}/{dd}/{hh}/{batch}.jsonl``."""
    parts = key.split("/")
    try:
        year, month, day, hour = (int(p) for p in parts[-5:-1])
        return dt.datetime(year, month, day, hour, tzinfo=dt.UTC)
    except ValueError:
        return None
