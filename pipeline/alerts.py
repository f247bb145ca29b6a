"""Alert rules, evaluated every minute over what the lake and the index hold.

Each rule returns a finding per subject it could judge: firing (with a severity) or clear.
``evaluate`` turns findings into alert documents (``data_access.alerts``): a firing finding
opens one alert per (rule, subject) or raises its severity, a clear finding resolves it, and an
open alert whose subject no longer reports at all is resolved too (a host that went away).
A rule that raises is logged and skipped: its alerts stay as they were.

Sources: metrics (``processed/metrics``, kept fresh by the scheduler compacting the current
hour before each evaluation), purchase events (``processed/events/purchase``), raw event
arrivals, the metadata index and the quarantine folders.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from configuration.base import EnvSettings, setting
from data_access import layout
from data_access.alerts import (
    OPEN_KIND,
    SEVERITIES,
    Alert,
    bump_version,
    open_alert,
    open_alerts,
    open_key,
    resolve_alert,
    save_open_alert,
)
from data_access.queries import MetricsQuery
from data_access.stores import RecordStore, Stores
from pipeline.notify import AlertEvent, Notifier

log = logging.getLogger(__name__)


def _threshold(default: float, name: str, description: str, **bounds: Any) -> Any:
    """A threshold read from ``ALERT_<NAME>``, e.g. ``ALERT_CPU_PERCENT=80``."""
    return setting(default, f"ALERT_{name.upper()}", description=description, **bounds)


_PERCENT = {"ge": 0, "le": 100}
_RATIO = {"ge": 0, "le": 1}


class AlertSettings(EnvSettings):
    """The thresholds of the alert rules, each read from ``ALERT_<FIELD NAME IN CAPITALS>``."""

    window_minutes: float = _threshold(
        5, "window_minutes", "metric rules average over this many minutes", gt=0
    )
    revenue_drop_ratio: float = _threshold(
        0.20,
        "revenue_drop_ratio",
        "error when today's revenue so far is down this share against yesterday's",
        **_RATIO,
    )
    revenue_min_baseline: float = _threshold(
        100.0,
        "revenue_min_baseline",
        "drops are not judged while yesterday's revenue is below this",
        ge=0,
    )
    revenue_lag_minutes: float = _threshold(
        10,
        "revenue_lag_minutes",
        "revenue is compared up to this many minutes ago (compaction lag)",
        ge=0,
    )
    error_rate_warning: float = _threshold(
        0.02, "error_rate_warning", "warning at this share of 5xx answers", **_RATIO
    )
    error_rate_error: float = _threshold(
        0.05, "error_rate_error", "error at this share of 5xx answers", **_RATIO
    )
    latency_p95_ms: float = _threshold(
        1000.0, "latency_p95_ms", "warning when p95 request latency passes this (ms)", gt=0
    )
    latency_p99_ms: float = _threshold(
        2500.0, "latency_p99_ms", "error when p99 request latency passes this (ms)", gt=0
    )
    cpu_percent: float = _threshold(
        90.0, "cpu_percent", "warning when a host's CPU use passes this (%)", **_PERCENT
    )
    memory_percent: float = _threshold(
        90.0, "memory_percent", "warning when a host's memory use passes this (%)", **_PERCENT
    )
    disk_percent_warning: float = _threshold(
        85.0, "disk_percent_warning", "warning when a host's disk use passes this (%)", **_PERCENT
    )
    disk_percent_error: float = _threshold(
        95.0, "disk_percent_error", "error when a host's disk use passes this (%)", **_PERCENT
    )
    no_uploads_minutes: float = _threshold(
        60,
        "no_uploads_minutes",
        "warning when no device upload arrived for this many minutes",
        gt=0,
    )
    no_events_minutes: float = _threshold(
        15, "no_events_minutes", "warning when no ingest event arrived for this many minutes", gt=0
    )
    quarantine_spike: int = _threshold(
        10,
        "quarantine_spike",
        "warning at this many newly quarantined inputs within the quarantine window",
        ge=1,
    )
    quarantine_window_minutes: float = _threshold(
        15, "quarantine_window_minutes", "the window quarantined inputs are counted over", gt=0
    )
    cache_hit_ratio_min: float = _threshold(
        0.5, "cache_hit_ratio_min", "info when the cache hit ratio is below this", **_RATIO
    )
    cache_hit_ratio_drop: float = _threshold(
        0.2,
        "cache_hit_ratio_drop",
        "info when the cache hit ratio is this far below the previous hour's",
        **_RATIO,
    )
    cache_min_reads: int = _threshold(
        20, "cache_min_reads", "the hit ratio is judged only over at least this many reads", ge=1
    )
    cache_window_minutes: float = _threshold(
        15, "cache_window_minutes", "the window the cache hit ratio is taken over", gt=0
    )


@dataclass(frozen=True)
class Finding:
    subject: str
    severity: str | None  # None: the condition is clear
    value: float | None
    threshold: float | None
    message: str


@dataclass
class EvaluationSummary:
    opened: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    failed_rules: list[str] = field(default_factory=list)
    open_count: int = 0


class RuleContext:
    """What rules read, loaded once per evaluation."""

    def __init__(self, stores: Stores, settings: AlertSettings, now: float) -> None:
        self.stores, self.settings, self.now = stores, settings, now
        self.now_dt = dt.datetime.fromtimestamp(now, dt.UTC)
        self._metrics: pd.DataFrame | None = None

    def metrics(self) -> pd.DataFrame:
        if self._metrics is None:
            minutes = max(self.settings.window_minutes, self.settings.cache_window_minutes + 60)
            since = self.now_dt - dt.timedelta(minutes=minutes)
            frame = MetricsQuery(since, self.now_dt).load(self.stores)
            self._metrics = frame[frame["ts"] <= pd.Timestamp(self.now_dt)]
        return self._metrics

    def recent(self, metric: str, minutes: float) -> pd.DataFrame:
        frame = self.metrics()
        since = pd.Timestamp(self.now_dt - dt.timedelta(minutes=minutes))
        return frame[(frame["metric"] == metric) & (frame["ts"] > since)]


@dataclass(frozen=True)
class Rule:
    name: str
    check: Callable[[RuleContext], list[Finding]]
    description: str


def _levels(value: float, warning: float | None, error: float | None) -> str | None:
    if error is not None and value >= error:
        return "error"
    if warning is not None and value >= warning:
        return "warning"
    return None


def _per_host_mean(
    ctx: RuleContext,
    metric: str,
    warning: float | None,
    error: float | None,
    label: str,
    unit: str = "",
) -> list[Finding]:
    recent = ctx.recent(metric, ctx.settings.window_minutes)
    findings = []
    for host, values in recent.groupby("host")["value"]:
        mean = float(values.mean())
        severity = _levels(mean, warning, error)
        threshold = error if severity == "error" or warning is None else warning
        minutes = f"{ctx.settings.window_minutes:g}"
        message = f"{label} {mean:.3g}{unit} over {minutes} min (threshold {threshold:g}{unit})"
        findings.append(Finding(str(host), severity, round(mean, 4), threshold, message))
    return findings


def check_error_rate(ctx: RuleContext) -> list[Finding]:
    s = ctx.settings
    return _per_host_mean(ctx, "error_rate", s.error_rate_warning, s.error_rate_error, "error rate")


def check_latency_p95(ctx: RuleContext) -> list[Finding]:
    return _per_host_mean(ctx, "latency_p95_ms", ctx.settings.latency_p95_ms, None, "p95", " ms")


def check_latency_p99(ctx: RuleContext) -> list[Finding]:
    return _per_host_mean(ctx, "latency_p99_ms", None, ctx.settings.latency_p99_ms, "p99", " ms")


def check_cpu(ctx: RuleContext) -> list[Finding]:
    return _per_host_mean(ctx, "cpu_percent", ctx.settings.cpu_percent, None, "CPU", "%")


def check_memory(ctx: RuleContext) -> list[Finding]:
    return _per_host_mean(ctx, "memory_percent", ctx.settings.memory_percent, None, "memory", "%")


def check_disk(ctx: RuleContext) -> list[Finding]:
    s = ctx.settings
    return _per_host_mean(
        ctx, "disk_percent", s.disk_percent_warning, s.disk_percent_error, "disk", "%"
    )


def _revenue_until(ctx: RuleContext, day: dt.date, cutoff: dt.datetime) -> float:
    keys = [layout.events_key("purchase", day.isoformat(), hour) for hour in range(cutoff.hour + 1)]
    table = ctx.stores.lake.read_table(keys, ["ts", "amount"])
    if table.num_rows == 0:
        return 0.0
    frame = table.to_pandas()
    return float(frame.loc[frame["ts"] < pd.Timestamp(cutoff), "amount"].sum())


def check_revenue_drop(ctx: RuleContext) -> list[Finding]:
    """Revenue since midnight UTC against yesterday's up to the same time of day."""
    s = ctx.settings
    cutoff = ctx.now_dt - dt.timedelta(minutes=s.revenue_lag_minutes)
    if cutoff.date() != ctx.now_dt.date():
        return []  # just after midnight nothing is comparable yet: leave alerts as they are
    today = _revenue_until(ctx, cutoff.date(), cutoff)
    yesterday_cutoff = cutoff - dt.timedelta(days=1)
    yesterday = _revenue_until(ctx, yesterday_cutoff.date(), yesterday_cutoff)
    if yesterday < s.revenue_min_baseline:
        return [Finding("all", None, None, -s.revenue_drop_ratio, "baseline too small")]
    change = today / yesterday - 1
    severity = "error" if change <= -s.revenue_drop_ratio else None
    message = (
        f"revenue {today:,.2f} since midnight vs {yesterday:,.2f} yesterday"
        f" by {cutoff:%H:%M} UTC ({change:+.0%})"
    )
    return [Finding("all", severity, round(change, 4), -s.revenue_drop_ratio, message)]


def check_no_uploads(ctx: RuleContext) -> list[Finding]:
    minutes = ctx.settings.no_uploads_minutes
    recent = ctx.stores.index.uploaded_since(ctx.now - minutes * 60, limit=1)
    if recent:
        return [Finding("screen_time", None, None, minutes, "uploads arriving")]
    message = f"no screen-time upload processed in the last {minutes:g} min"
    return [Finding("screen_time", "warning", None, minutes, message)]


def _hour_prefixes(root: str, start: dt.datetime, end: dt.datetime) -> list[str]:
    hour = start.replace(minute=0, second=0, microsecond=0)
    prefixes = []
    while hour <= end:
        prefixes.append(f"{root}{hour:%Y/%m/%d/%H}/")
        hour += dt.timedelta(hours=1)
    return prefixes


def check_no_events(ctx: RuleContext) -> list[Finding]:
    """When the newest raw event object arrived (file time), over every event type."""
    minutes = ctx.settings.no_events_minutes
    since = ctx.now - minutes * 60
    start = ctx.now_dt - dt.timedelta(minutes=minutes)
    for event_type in ("purchase", "pageview", "custom"):
        root = f"{layout.RAW_EVENTS}{event_type}/"
        for prefix in _hour_prefixes(root, start, ctx.now_dt):
            if any(info.modified > since for info in ctx.stores.lake.list(prefix)):
                return [Finding("events", None, None, minutes, "events arriving")]
    message = f"no event received in the last {minutes:g} min"
    return [Finding("events", "warning", None, minutes, message)]


def check_quarantine_spike(ctx: RuleContext) -> list[Finding]:
    s = ctx.settings
    since = ctx.now - s.quarantine_window_minutes * 60
    start = ctx.now_dt - dt.timedelta(minutes=s.quarantine_window_minutes)
    prefixes = [layout.QUARANTINE_SCREEN_TIME]
    for event_type in ("purchase", "pageview", "custom"):
        prefixes += _hour_prefixes(f"quarantine/events/{event_type}/", start, ctx.now_dt)
    count = sum(
        1
        for prefix in prefixes
        for info in ctx.stores.lake.list(prefix)
        if info.key.endswith(".reason.json") and info.modified > since
    )
    severity = "warning" if count >= s.quarantine_spike else None
    message = f"{count} inputs quarantined in the last {s.quarantine_window_minutes:g} min"
    return [Finding("quarantine", severity, float(count), float(s.quarantine_spike), message)]


def check_cache_hit_ratio(ctx: RuleContext) -> list[Finding]:
    """Hit ratio over the recent window, against a floor and against the hour before it."""
    s = ctx.settings
    window = s.cache_window_minutes
    frame = ctx.metrics()
    now = pd.Timestamp(ctx.now_dt)
    recent_start = now - pd.Timedelta(minutes=window)
    earlier_start = recent_start - pd.Timedelta(minutes=60)
    findings = []
    for host, rows in frame[frame["metric"].isin(["cache_hits", "cache_reads"])].groupby("host"):

        def ratio(start: pd.Timestamp, end: pd.Timestamp, rows: pd.DataFrame = rows):
            part = rows[(rows["ts"] > start) & (rows["ts"] <= end)]
            reads = float(part.loc[part["metric"] == "cache_reads", "value"].sum())
            hits = float(part.loc[part["metric"] == "cache_hits", "value"].sum())
            return (hits / reads if reads else None), reads

        recent, recent_reads = ratio(recent_start, now)
        earlier, earlier_reads = ratio(earlier_start, recent_start)
        if recent is None or recent_reads < s.cache_min_reads:
            continue  # too few reads to judge: no finding, an open alert resolves
        if rows["ts"].min() > recent_start:
            # Seen for less than one window: a fresh start's caches are cold by design, and
            # its first minutes alone would raise a false alarm on every start.
            continue
        low = recent < s.cache_hit_ratio_min
        fell = (
            earlier is not None
            and earlier_reads >= s.cache_min_reads
            and earlier - recent >= s.cache_hit_ratio_drop
        )
        message = f"cache hit ratio {recent:.0%} over {window:g} min"
        if earlier is not None:
            message += f" (previous hour {earlier:.0%})"
        severity = "info" if low or fell else None
        findings.append(
            Finding(str(host), severity, round(recent, 4), s.cache_hit_ratio_min, message)
        )
    return findings


RULES: tuple[Rule, ...] = (
    Rule("revenue_drop", check_revenue_drop, "revenue down vs the same time yesterday"),
    Rule("error_rate", check_error_rate, "share of requests answered 5xx"),
    Rule("latency_p95", check_latency_p95, "95th percentile request latency"),
    Rule("latency_p99", check_latency_p99, "99th percentile request latency"),
    Rule("cpu", check_cpu, "host CPU use"),
    Rule("memory", check_memory, "host memory use"),
    Rule("disk", check_disk, "host disk use"),
    Rule("no_uploads", check_no_uploads, "no screen-time uploads for a while"),
    Rule("no_events", check_no_events, "no business events for a while"),
    Rule("quarantine_spike", check_quarantine_spike, "many inputs quarantined"),
    Rule("cache_hit_ratio", check_cache_hit_ratio, "read cache hit ratio low or falling"),
)


def evaluate(
    stores: Stores,
    settings: AlertSettings,
    *,
    now: float | None = None,
    notifier: Notifier | None = None,
    rules: tuple[Rule, ...] = RULES,
) -> EvaluationSummary:
    now = time.time() if now is None else now
    ctx = RuleContext(stores, settings, now)
    records = stores.records
    summary = EvaluationSummary()
    existing = open_alerts(records)
    events: list[AlertEvent] = []
    changed = False

    for rule in rules:
        try:
            findings = rule.check(ctx)
        except Exception:
            log.exception("alert rule %s failed; its alerts stay as they are", rule.name)
            summary.failed_rules.append(rule.name)
            continue
        judged = set()
        for finding in findings:
            judged.add(finding.subject)
            current = existing.get((rule.name, finding.subject))
            label = f"{rule.name}:{finding.subject}"
            if finding.severity is not None:
                saved, event = _fire(records, rule.name, finding, current, now)
                changed |= saved
                if event is not None:
                    events.append(event)
                    target = summary.opened if event.change == "opened" else summary.escalated
                    target.append(label)
            elif current is not None:
                changed = True
                summary.resolved.append(label)
                events.extend(_resolve(stores, current, now))
        for (rule_name, subject), current in existing.items():
            if rule_name == rule.name and subject not in judged:
                # Nothing reports on this subject any more (e.g. a host went away).
                changed = True
                summary.resolved.append(f"{rule_name}:{subject}")
                events.extend(_resolve(stores, current, now))

    if changed:
        bump_version(stores.state, now)
    if notifier is not None:
        for event in events:
            notifier.submit(event)
    summary.open_count = len(open_alerts(records))
    return summary


def _fire(
    records: RecordStore, rule: str, finding: Finding, current: Alert | None, now: float
) -> tuple[bool, AlertEvent | None]:
    """Open or update the alert; returns (anything written, event to notify)."""
    if current is None:
        alert = open_alert(
            records,
            rule=rule,
            subject=finding.subject,
            severity=finding.severity,
            message=finding.message,
            value=finding.value,
            threshold=finding.threshold,
            now=now,
        )
        return alert is not None, (AlertEvent("opened", alert) if alert else None)
    repair = current.opened_at == 0  # the index points at a document never written
    if not repair and current.severity == finding.severity:
        return False, None
    updated = replace(
        current,
        severity=finding.severity,
        message=finding.message,
        value=finding.value,
        threshold=finding.threshold,
        opened_at=now if repair else current.opened_at,
        updated_at=now,
    )
    if not save_open_alert(records, updated):
        return False, None
    if repair:
        return True, AlertEvent("opened", updated)
    worse = SEVERITIES.index(finding.severity) < SEVERITIES.index(current.severity)
    return True, (AlertEvent("escalated", updated) if worse else None)


def _resolve(stores: Stores, alert: Alert, now: float) -> list[AlertEvent]:
    if alert.opened_at == 0:  # an index entry without a document: drop it, nobody was told
        stores.records.delete(OPEN_KIND, open_key(alert.rule, alert.subject))
        return []
    resolved = resolve_alert(stores.records, stores.state, alert.alert_id, by="auto", now=now)
    return [AlertEvent("resolved", resolved)]
