"""Request metrics for every route, exported on ``/metrics`` in Prometheus text format.

Under gunicorn each worker is its own process, so the counters use prometheus_client's
multiprocess mode: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder before gunicorn starts
(every worker writes its own files there) and mark dead workers in gunicorn.conf.py::

    from prometheus_client import multiprocess

    def child_exit(server, worker):
        multiprocess.mark_process_dead(worker.pid)

``/metrics`` then merges every worker's files, whichever worker answers. Without the variable
(one process, e.g. tests) it serves this process's own registry.

Active sessions come from the shared records store (``data_access.active_sessions``), not
from a per-worker gauge, so a user whose requests reach two workers counts once.

Access: with ``METRICS_TOKEN`` set, ``/metrics`` needs ``Authorization: Bearer <token>``;
without it, only loopback clients are answered.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
import time
from dataclasses import fields

from flask import Flask, Response, abort, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from auth.guard import current_user
from configuration.base import MetricsFolderSettings, setting
from dashboard.request_hooks import RequestHooks
from data_access.active_sessions import SessionTracker, count_active
from data_access.stores import RecordStore, StoreUnavailable

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED_ROUTE = "<unmatched>"


class MetricsSettings(MetricsFolderSettings):
    """Where the workers' metric files are (``PROMETHEUS_MULTIPROC_DIR``, shared with gunicorn
    and the collector) and who may read ``/metrics``."""

    token: str | None = setting(
        None,
        "METRICS_TOKEN",
        description="bearer token for `/metrics`; without it `/metrics` answers loopback only",
        repr=False,
    )


class _ActiveSessions:
    """A collector computed at scrape time from the shared records store."""

    def __init__(self, records: RecordStore | None) -> None:
        self._records = records

    def collect(self):
        family = GaugeMetricFamily(
            "mc_active_sessions", "Signed-in users seen in the last 5 minutes"
        )
        if self._records is not None:
            try:
                family.add_metric([], count_active(self._records, time.time()))
            except StoreUnavailable as exc:
                log.warning("active sessions unavailable: %s", exc)
        yield family


class RequestMetrics:
    """The request counters, and the hooks that fill them (``hooks()``; create_app places
    them in its declared order)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        data_service: object | None = None,
        sessions: SessionTracker | None = None,
    ) -> None:
        self._sessions = sessions
        self.requests = Counter(
            "mc_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=registry,
        )
        self.errors = Counter(
            "mc_http_errors", "HTTP answers with status >= 400", ["status"], registry=registry
        )
        self.latency = Histogram(
            "mc_http_request_duration_seconds",
            "Time from request start to response",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge(
            "mc_http_requests_in_progress",
            "Requests being answered",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.data_reads = Counter(
            "mc_data_reads", "Data-service answers by tier", ["tier"], registry=registry
        )
        self._data_service = data_service
        self._tier_seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def start_timer(self) -> None:
        g.metrics_started = time.perf_counter()
        self.in_progress.inc()

    def record(self, response: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is None:
            return response
        self.in_progress.dec()
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
        status = str(response.status_code)
        self.requests.labels(request.method, route, status).inc()
        self.latency.labels(route).observe(time.perf_counter() - started)
        if response.status_code >= 400:
            self.errors.labels(status).inc()
        self.sync_data_reads()
        user = current_user()
        if self._sessions is not None and user is not None:
            try:
                self._sessions.seen(user.subject)
            except StoreUnavailable as exc:
                log.warning("could not record session: %s", exc)
        return response

    def count_unanswered(self, _exc: BaseException | None) -> None:
        # A request that raised never reached after_request: count it as a 500.
        started = g.pop("metrics_started", None)
        if started is not None:
            self.in_progress.dec()
            route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
            self.requests.labels(request.method, route, "500").inc()
            self.latency.labels(route).observe(time.perf_counter() - started)
            self.errors.labels("500").inc()

    def hooks(self) -> RequestHooks:
        return RequestHooks(
            before=(self.start_timer,), after=(self.record,), teardown=(self.count_unanswered,)
        )

    def sync_data_reads(self) -> None:
        """Move the data service's plain counters into Prometheus counters (delta since last)."""
        counters = getattr(self._data_service, "counters", None)
        if counters is None:
            return
        with self._lock:
            for item in fields(counters):
                value = getattr(counters, item.name)
                delta = value - self._tier_seen.get(item.name, 0)
                if delta > 0:
                    self.data_reads.labels(item.name).inc(delta)
                self._tier_seen[item.name] = value


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def register_request_metrics(
    server: Flask,
    settings: MetricsSettings,
    *,
    data_service: object | None = None,
    records: RecordStore | None = None,
) -> RequestMetrics:
    """Serve ``/metrics`` on ``server``; the returned metrics' ``hooks()`` count the requests
    once registered (``dashboard.request_hooks.register_hooks``)."""
    registry = CollectorRegistry(auto_describe=True)
    sessions = SessionTracker(records) if records is not None else None
    metrics = RequestMetrics(registry, data_service, sessions)

    def exposition() -> bytes:
        if settings.multiproc_dir:
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged, path=settings.multiproc_dir)
            merged.register(_ActiveSessions(records))
            return generate_latest(merged)
        return generate_latest(registry) + generate_latest(_SessionsOnly(records))

    @server.get("/metrics")
    def metrics_endpoint() -> Response:
        if settings.token:
            header = request.headers.get("Authorization", "")
            presented = header[7:] if header[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(presented.encode(), settings.token.encode()):
                abort(401)
        elif not _is_loopback(request.remote_addr):
            abort(403)
        return Response(exposition(), mimetype=CONTENT_TYPE_LATEST)

    return metrics


class _SessionsOnly(CollectorRegistry):
    def __init__(self, records: RecordStore | None) -> None:
        super().__init__(auto_describe=True)
        self.register(_ActiveSessions(records))
