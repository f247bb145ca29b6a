"""gunicorn settings for the dashboard behind an AWS Application Load Balancer.

The container runs ``gunicorn --config gunicorn.conf.py wsgi:server`` and so do the tests.
Environment variables tune it per deployment (all optional): ``configuration.gunicorn``
declares them, with their defaults, and the README's gunicorn table is rendered from there.
"""

import datetime as dt
import importlib
import json
import logging
import math
import os
from pathlib import Path

from gunicorn import glogging

from configuration.gunicorn import GunicornSettings

ALB_IDLE_TIMEOUT_SECONDS = 60
# Read once, when gunicorn loads this file: an invalid variable stops the start, named.
SETTINGS = GunicornSettings.from_env()


def _cpus_available():
    """CPUs this process may use: the cgroup quota (containers), else the CPU affinity."""
    quota_files = (
        ("/sys/fs/cgroup/cpu.max", None),  # cgroup v2: "<quota> <period>" or "max <period>"
        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),  # v1
    )
    for quota_path, period_path in quota_files:
        try:
            fields = Path(quota_path).read_text().split()
            quota = fields[0]
            period = Path(period_path).read_text().strip() if period_path else fields[1]
            if quota not in ("max", "-1"):
                return max(1, math.ceil(int(quota) / int(period)))
        except (OSError, ValueError, IndexError):
            continue
    return len(os.sched_getaffinity(0))


# --- Server socket ---------------------------------------------------------------------------
# Loopback unless told otherwise; the image sets BIND=0.0.0.0:8050 so the ALB can reach it.
bind = SETTINGS.bind
# Connections waiting for accept(); the ALB opens few, long-lived ones, so the default is ample.
backlog = 2048

# --- Workers ---------------------------------------------------------------------------------
# gthread: page callbacks wait on S3/DynamoDB, so threads overlap that I/O while processes give
# CPU parallelism for figure building (the GIL allows one Python thread per process at a time).
worker_class = "gthread"
# One process per CPU; never fewer than two, so a worker recycling (max_requests) or stuck in a
# slow export leaves another to answer health checks.
workers = SETTINGS.workers or max(2, _cpus_available())
# Four threads per worker: the ceilings in the README's Performance section were measured
# so; more threads only add GIL contention to CPU-bound figure building.
threads = SETTINGS.threads
# Keep-alive connections a gthread worker holds open; idle ones cost no thread.
worker_connections = 1000
# Recycled by memory, not by count: a worker's memo and figure cache are what make polls
# cheap, and 2,000 requests at hundreds of polls a second emptied them every few seconds.
# A slow leak (pandas, pyarrow pools) still cannot grow past GUNICORN_MAX_WORKER_MB (see
# post_request); a count remains available, with jitter so workers never recycle together.
max_requests = SETTINGS.max_requests
max_requests_jitter = max(0, max_requests // 10)
MAX_WORKER_MB = SETTINGS.max_worker_mb
# RSS is read every this many requests per worker: a few microseconds, rarely.
MEMORY_CHECK_EVERY = 64
# The app is not preloaded: create_app() opens SQLite connections and boto3 clients, which
# must not be shared across fork(). The master imports the heavy libraries instead (see
# on_starting): forked workers share those pages. Measured here, master + two workers after a
# few page loads: 231 -> ~190 MB PSS, start to first /healthz 2.9 -> ~1.6 s. The project's
# own code still loads in each worker, so nothing stateful crosses the fork.
preload_app = False
WARM_IMPORTS = ("pandas", "pyarrow.parquet", "plotly.graph_objects", "dash", "flask", "botocore")
# The worker heartbeat file: on tmpfs, since a container's overlay filesystem can stall
# fsync-like updates long enough for the master to think a worker hung.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# --- Timeouts ----------------------------------------------------------------------------------
# A worker silent this long is killed and replaced. Requests take milliseconds; the longest,
# a large CSV export, stays well under this.
timeout = SETTINGS.timeout_seconds
# On SIGTERM, in-flight requests get this long to finish. ECS deregisters the task from the
# target group first and waits stopTimeout (30 s in deploy/cloudformation.yaml) before SIGKILL,
# so this must stay below it.
graceful_timeout = 25
# Longer than the ALB idle timeout: the ALB closes idle connections first, so it never sends a
# request on a connection gunicorn has just closed (which the client would see as a 502).
keepalive = ALB_IDLE_TIMEOUT_SECONDS + 15

# --- Proxy -------------------------------------------------------------------------------------
# Only these addresses may set X-Forwarded-Proto (https behind the ALB). ALB nodes change
# address, so ECS passes the VPC CIDR; ProxyFix in the app counts hops for X-Forwarded-For.
forwarded_allow_ips = SETTINGS.forwarded_allow_ips

# --- Logging -----------------------------------------------------------------------------------
# Both logs to stderr as JSON lines: the container's log driver ships them to CloudWatch.
# `make run` sends the access log (a line per poll and simulator post) to a file instead, so
# the terminal stays readable.
accesslog = SETTINGS.access_log
errorlog = "-"
loglevel = SETTINGS.log_level.lower()
proc_name = "mission-control"

# --- Control socket ----------------------------------------------------------------------------
# gunicorn 25+ opens a control socket under HOME by default; the image's root filesystem is
# read-only, so it is opt-in.
control_socket = SETTINGS.control_socket
control_socket_disable = not control_socket


class JsonLineFormatter(logging.Formatter):
    """gunicorn's own messages in the fields the app's JSON logs use (dashboard.observability).

    Kept here so the master process never imports the app: it stays small, and a broken app
    module fails the workers (visible in the log) rather than the master's configuration.
    """

    def format(self, record):
        entry = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class JsonLogger(glogging.Logger):
    """gunicorn's logger writing JSON lines: one object per access, one per error message."""

    def setup(self, cfg):
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonLineFormatter())

    def access(self, resp, req, environ, request_time):
        if not getattr(self, "access_log_enabled", True):
            return
        atoms = self.atoms(resp, req, environ, request_time)
        entry = {
            "ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "level": "INFO",
            "logger": "gunicorn.access",
            "method": atoms["m"],
            "path": atoms["U"],
            "query": atoms["q"] or None,
            "status": int(atoms["s"]) if str(atoms["s"]).isdigit() else atoms["s"],
            "bytes": atoms["B"],
            "duration_ms": round(atoms["D"] / 1000, 2),
            "remote_addr": atoms["h"],
            "forwarded_for": atoms.get("{x-forwarded-for}i"),
            "user_agent": atoms["a"],
            "referer": atoms["f"] if atoms["f"] != "-" else None,
            # The app echoes its request id in the response; the ALB's trace id comes in.
            "request_id": atoms.get("{x-request-id}o"),
            "trace_id": atoms.get("{x-amzn-trace-id}i"),
            "pid": os.getpid(),
        }
        try:
            self.access_log.info(json.dumps(entry, default=str))
        except Exception:
            self.exception("access log entry failed")


logger_class = JsonLogger


# --- Hooks -------------------------------------------------------------------------------------
def on_starting(server):
    """Import the libraries workers share; start from an empty metrics folder."""
    for module in WARM_IMPORTS:
        importlib.import_module(module)
    # Metric files of a previous run would be counted again.
    if SETTINGS.multiproc_dir:
        folder = Path(SETTINGS.multiproc_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
    server.log.info(
        "starting %d workers x %d threads, keepalive %d s, timeout %d s",
        server.cfg.workers,
        server.cfg.threads,
        server.cfg.keepalive,
        server.cfg.timeout,
    )


def post_request(worker, req, environ, resp):
    """Past GUNICORN_MAX_WORKER_MB, finish what is in flight and let the master replace us."""
    if not MAX_WORKER_MB:
        return
    worker.mc_requests = getattr(worker, "mc_requests", 0) + 1
    if worker.mc_requests % MEMORY_CHECK_EVERY:
        return
    import psutil

    rss_mb = psutil.Process().memory_info().rss / 2**20
    if rss_mb > MAX_WORKER_MB and worker.alive:
        worker.log.info(
            "worker %s recycles: RSS %.0f MB above GUNICORN_MAX_WORKER_MB=%d",
            worker.pid,
            rss_mb,
            MAX_WORKER_MB,
        )
        worker.alive = False


def child_exit(server, worker):
    """Drop a dead worker's live gauges from the shared prometheus_client files."""
    if SETTINGS.multiproc_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
