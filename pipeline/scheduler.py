"""The local scheduler: what EventBridge schedules and Lambda do on AWS, in one process.

Jobs, each on its own thread so a slow rollup never delays a metrics sample:

- ``pipeline`` every 5 min: process pending uploads, compact events and metrics of the last
  two days, roll up. Compaction rewrites whole hours from raw and rollups recompute whole
  dates, so a retried run never counts anything twice.
- ``alerts`` every minute: compact the current hour's metrics, evaluate the rules, queue
  notifications (a notifier thread delivers them).
- ``collect`` every 10 s: host and request metrics into the raw metrics zone.
- ``daily`` checked with the pipeline: once a day, after a grace period past midnight UTC,
  close yesterday: compact everything (late events included), recompute yesterday's
  rollups, prune old duplicate-detection and rate-limit records.

A failed run is retried with exponential backoff (capped at the job's interval). ``stop``
ends every job after its current run; the CLI sets it on SIGTERM/SIGINT.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Literal, Self

from pydantic import BeforeValidator, Field

from configuration.base import EnvSettings, comma_list, setting
from data_access.idempotency import prune_idempotency
from data_access.stores import Stores
from pipeline.alerts import AlertSettings, evaluate
from pipeline.collectors import Collector, CollectorSettings
from pipeline.notify import Notifier, NotifySettings

log = logging.getLogger(__name__)

JOBS = ("pipeline", "alerts", "collect", "daily")
CLOSED_DAY = "scheduler:closed_day"


Job = Literal["pipeline", "alerts", "collect", "daily"]


class SchedulerSettings(EnvSettings):
    """How often each job runs and which run here; the alert, notification and collector
    settings come from their own models (``from_env`` builds them from the same mapping)."""

    rollup_interval_seconds: float = setting(
        300.0,
        "ROLLUP_INTERVAL_SECONDS",
        description="process + compact + roll up every this many seconds",
        gt=0,
    )
    alert_interval_seconds: float = setting(
        60.0,
        "ALERT_INTERVAL_SECONDS",
        description="evaluate alert rules every this many seconds",
        gt=0,
    )
    retry_base_seconds: float = setting(
        5.0,
        "RETRY_BASE_SECONDS",
        description="first retry after a failed job; doubles each time, up to the job's interval",
        gt=0,
    )
    daily_close_grace_minutes: float = setting(
        30.0,
        "DAILY_CLOSE_GRACE_MINUTES",
        description="wait this long past midnight UTC for late events before closing a day",
        ge=0,
    )
    dedupe_retention_days: int = setting(
        31,
        "DEDUPE_RETENTION_DAYS",
        description="keep event-id records this long (at least the ingest age limit, "
        "`INGEST_MAX_EVENT_AGE_DAYS`)",
        ge=1,
    )
    jobs: Annotated[tuple[Job, ...], BeforeValidator(comma_list), Field(min_length=1)] = setting(
        JOBS,
        "SCHEDULER_JOBS",
        description="the jobs this scheduler runs, comma-separated: a subset of "
        "`pipeline,alerts,collect,daily`",
        shown_default="all",
    )
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    collectors: CollectorSettings = Field(default_factory=CollectorSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        env = os.environ if env is None else env
        return (
            super()
            .from_env(env)
            .model_copy(
                update={
                    "alerts": AlertSettings.from_env(env),
                    "notify": NotifySettings.from_env(env),
                    "collectors": CollectorSettings.from_env(env),
                }
            )
        )


# ---- the work, as plain functions (the Lambda handlers call the same ones) --------------


def _hour(moment: dt.datetime) -> dt.datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def run_pipeline(stores: Stores, *, now: float | None = None) -> dict:
    """Drain the upload queue, compact the last two days of events and metrics, roll up."""
    from pipeline.events import compact_events, compact_metrics
    from pipeline.process import drain
    from pipeline.rollup import rollup_all
    from pipeline.sql import export_app_dimension

    now = time.time() if now is None else now
    since = _hour(dt.datetime.fromtimestamp(now, dt.UTC) - dt.timedelta(days=1)).replace(hour=0)
    processed = drain(stores)
    events = compact_events(stores, since_hour=since, now=now)
    metrics = compact_metrics(stores, since_hour=since, now=now)
    rollup = rollup_all(stores)
    export_app_dimension(stores)
    return {
        "uploads_processed": processed.processed + processed.replaced,
        "uploads_quarantined": processed.quarantined,
        "event_partitions_compacted": events.compacted,
        "metric_partitions_compacted": metrics.compacted,
        "screen_time_dates": rollup.screen_time_dates,
        "business_dates": rollup.business_dates,
    }


def run_alerts(
    stores: Stores,
    settings: AlertSettings,
    *,
    notifier: Notifier | None = None,
    now: float | None = None,
) -> dict:
    """Bring this hour's metrics up to date, then evaluate every rule."""
    from pipeline.events import compact_metrics

    now = time.time() if now is None else now
    previous_hour = _hour(dt.datetime.fromtimestamp(now, dt.UTC)) - dt.timedelta(hours=1)
    compact_metrics(stores, since_hour=previous_hour, now=now)
    summary = evaluate(stores, settings, now=now, notifier=notifier)
    return {
        "opened": summary.opened,
        "escalated": summary.escalated,
        "resolved": summary.resolved,
        "failed_rules": summary.failed_rules,
        "open": summary.open_count,
    }


def close_day(
    stores: Stores, day: dt.date, *, dedupe_retention_days: int = 31, now: float | None = None
) -> dict:
    """Final pass over ``day``: every late event compacted, the day's rollups recomputed."""
    from pipeline.events import compact_events, compact_metrics
    from pipeline.rollup import rollup_business, rollup_screen_time

    now = time.time() if now is None else now
    events = compact_events(stores, now=now)  # whole history: late events may be days old
    metrics = compact_metrics(stores, since_hour=dt.datetime.combine(day, dt.time(), dt.UTC))
    rollup_screen_time(stores)
    business = rollup_business(stores, dates=[day.isoformat()])
    pruned = prune_idempotency(
        stores.records, stores.state, day - dt.timedelta(days=dedupe_retention_days)
    )
    stores.state.put(CLOSED_DAY, day.isoformat())
    return {
        "day": day.isoformat(),
        "event_partitions_compacted": events.compacted,
        "metric_partitions_compacted": metrics.compacted,
        "business_dates": business.business_dates,
        "dedupe_records_pruned": pruned,
    }


def day_to_close(stores: Stores, grace_minutes: float, now: float) -> dt.date | None:
    """Yesterday, once the grace period after midnight has passed and if not closed yet."""
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    if moment - moment.replace(hour=0, minute=0, second=0, microsecond=0) < dt.timedelta(
        minutes=grace_minutes
    ):
        return None
    yesterday = moment.date() - dt.timedelta(days=1)
    closed = stores.state.get(CLOSED_DAY)
    return None if closed is not None and closed >= yesterday.isoformat() else yesterday


# ---- the loop -----------------------------------------------------------------------------


class PeriodicJob:
    """Runs ``work`` every ``interval`` seconds until ``stop``; retries failures with backoff."""

    def __init__(
        self,
        name: str,
        interval: float,
        work: Callable[[], object],
        stop: threading.Event,
        *,
        retry_base: float = 5.0,
        log_level: int = logging.INFO,
    ) -> None:
        self.name, self.interval, self.work, self.stop = name, interval, work, stop
        self.retry_base = retry_base
        self.log_level = log_level
        self.runs = 0
        self.failures = 0  # consecutive
        self.thread = threading.Thread(target=self._loop, name=f"job-{name}", daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                result = self.work()
            except Exception:
                self.failures += 1
                delay = min(self.retry_base * 2 ** (self.failures - 1), self.interval)
                delay *= random.uniform(0.9, 1.1)
                log.exception(
                    "job %s failed (%d in a row), retry in %.0f s", self.name, self.failures, delay
                )
                self.stop.wait(delay)
                continue
            self.runs += 1
            self.failures = 0
            if result:
                log.log(self.log_level, "job %s: %s", self.name, result)
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - started)))


def run_scheduler(stores: Stores, settings: SchedulerSettings, stop: threading.Event) -> None:
    """Run the jobs until ``stop`` is set; returns after each job finished its current run."""
    notifier = Notifier(stores.records, settings.notify)
    notifier.resume_pending()
    notifier.start()
    # Compaction of the same hour from two threads could interleave: one lock for all of it.
    lake_lock = threading.Lock()

    def pipeline_job() -> dict:
        with lake_lock:
            return run_pipeline(stores)

    def alerts_job() -> dict:
        with lake_lock:
            return run_alerts(stores, settings.alerts, notifier=notifier)

    def daily_job() -> dict | None:
        day = day_to_close(stores, settings.daily_close_grace_minutes, time.time())
        if day is None:
            return None
        with lake_lock:
            return close_day(stores, day, dedupe_retention_days=settings.dedupe_retention_days)

    jobs = []
    if "pipeline" in settings.jobs:
        jobs.append(PeriodicJob("pipeline", settings.rollup_interval_seconds, pipeline_job, stop))
    if "alerts" in settings.jobs:
        jobs.append(PeriodicJob("alerts", settings.alert_interval_seconds, alerts_job, stop))
    if "daily" in settings.jobs:
        jobs.append(PeriodicJob("daily", settings.rollup_interval_seconds, daily_job, stop))
    if "collect" in settings.jobs:
        collector = Collector(stores.lake, settings.collectors, records=stores.records)
        interval = settings.collectors.interval_seconds
        # Every 10 s: its routine result (the key written) is not worth an INFO line.
        jobs.append(
            PeriodicJob("collect", interval, collector.collect_once, stop, log_level=logging.DEBUG)
        )
    for job in jobs:
        job.retry_base = settings.retry_base_seconds
        job.thread.start()
    log.info("scheduler running: %s", ", ".join(job.name for job in jobs))
    stop.wait()
    for job in jobs:
        job.thread.join(timeout=60)
        if job.thread.is_alive():
            log.warning("job %s still running at shutdown", job.name)
    notifier.close(timeout=5)
    log.info("scheduler stopped")
