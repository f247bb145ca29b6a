"""gunicorn's settings, read by gunicorn.conf.py (a file gunicorn loads, not a module of ours,
so its model lives here, where the README's table is also rendered from)."""

from __future__ import annotations

from configuration.base import LogSettings, MetricsFolderSettings, setting


class GunicornSettings(LogSettings, MetricsFolderSettings):
    """The web server's processes, timeouts, proxy trust and logs. ``LOG_LEVEL`` and
    ``PROMETHEUS_MULTIPROC_DIR`` are the shared declarations (the app reads them too)."""

    bind: str = setting(
        "127.0.0.1:8050",
        "BIND",
        description="address:port to listen on",
        shown_default="`127.0.0.1:8050` (image: `0.0.0.0:8050`)",
        min_length=1,
    )
    workers: int | None = setting(
        None,
        "WEB_CONCURRENCY",
        description="worker processes",
        shown_default="CPUs available, at least 2",
        ge=1,
    )
    threads: int = setting(4, "GUNICORN_THREADS", description="threads per worker", ge=1)
    timeout_seconds: int = setting(
        30,
        "GUNICORN_TIMEOUT",
        description="seconds a worker may stay silent before it is killed and replaced",
        ge=1,
    )
    max_requests: int = setting(
        0,
        "GUNICORN_MAX_REQUESTS",
        description="requests before a worker is recycled (with jitter); recycling empties the "
        "worker's memo and figure cache (not Redis's)",
        shown_default="`0` (never)",
        ge=0,
    )
    max_worker_mb: int = setting(
        1024,
        "GUNICORN_MAX_WORKER_MB",
        description="a worker whose RSS passes this finishes its requests and is replaced "
        "(`0`: never)",
        ge=0,
    )
    forwarded_allow_ips: str = setting(
        "127.0.0.1,::1",
        "FORWARDED_ALLOW_IPS",
        description="proxies trusted for `X-Forwarded-*`",
        shown_default="`127.0.0.1,::1` (ECS: the VPC CIDR)",
    )
    access_log: str = setting(
        "-",
        "ACCESS_LOG",
        description="file the access log is written to; `-` is stderr",
        shown_default="`-` (`make run`: `var/log/access.log`)",
    )
    control_socket: str = setting(
        "",
        "GUNICORN_CONTROL_SOCKET",
        description="path of gunicorn's control socket; without it there is none (the image's "
        "root filesystem is read-only)",
        shown_default="none",
    )
