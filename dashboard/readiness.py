"""``/readyz``: can this instance serve data right now? Cache table, state, lake, identity provider.

``/healthz`` stays shallow (the target group and the container health check use it, so a
store outage never makes the load balancer kill every task); ``/readyz`` is for deploys and
operators. Each check runs in its own thread under one deadline, so a hung store shows up as
"timed out" instead of hanging the probe. The answer names each part and says which fail;
error details go to the log only (the route needs no sign-in, so it must not leak endpoints).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from typing import Any

import requests
from flask import Flask, Response, jsonify

from auth.settings import AuthSettings
from data_access.stores import Stores

log = logging.getLogger(__name__)

# Keys no query ever writes: reading them costs one small read and proves the store answers.
PROBE_CACHE_KEY = "readyz:probe"
PROBE_STATE_NAME = "readyz:probe"
PROBE_LAKE_KEY = "readyz/probe"

Check = Callable[[], None]


@dataclass(frozen=True)
class ReadinessSettings:
    # Discovery document of the OpenID provider; None when the app talks to no provider itself.
    identity_provider_url: str | None = None
    # The discovery document must name this issuer (what the ID tokens are checked against).
    expected_issuer: str | None = None
    # One deadline for all checks together: shorter than any load balancer or probe timeout.
    timeout_seconds: float = 2.0

    @classmethod
    def from_auth(cls, auth: AuthSettings, timeout_seconds: float = 2.0) -> ReadinessSettings:
        """Check the provider only in ``oidc`` mode: with ``alb`` the load balancer talks to it."""
        if auth.mode == "oidc" and auth.oidc_issuer:
            issuer = auth.oidc_issuer
            return cls(
                identity_provider_url=issuer.rstrip("/") + "/.well-known/openid-configuration",
                expected_issuer=issuer,
                timeout_seconds=timeout_seconds,
            )
        return cls(timeout_seconds=timeout_seconds)


class CheckFailed(RuntimeError):
    """A check reached its part, and the answer was wrong."""


def identity_provider_check(
    url: str, expected_issuer: str | None, timeout_seconds: float, http: Any = requests
) -> Check:
    def check() -> None:
        response = http.get(url, timeout=(timeout_seconds, timeout_seconds))
        if response.status_code != 200:
            raise CheckFailed(f"discovery answered HTTP {response.status_code}")
        issuer = response.json().get("issuer")
        if expected_issuer is not None and issuer != expected_issuer:
            raise CheckFailed(f"discovery names issuer {issuer!r}, expected {expected_issuer!r}")

    return check


def readiness_checks(stores: Stores, settings: ReadinessSettings) -> dict[str, Check]:
    """The checks, by the name the answer uses for each part."""
    checks: dict[str, Check] = {
        "cache_table": lambda: stores.cache.get(PROBE_CACHE_KEY),
        # Data versions live in the state store: without it every poll reads the lake.
        "state_store": lambda: stores.state.get(PROBE_STATE_NAME),
        "lake": lambda: stores.lake.exists(PROBE_LAKE_KEY),
    }
    if settings.identity_provider_url:
        checks["identity_provider"] = identity_provider_check(
            settings.identity_provider_url, settings.expected_issuer, settings.timeout_seconds
        )
    return checks


def _timed(check: Check) -> float:
    started = time.perf_counter()
    check()
    return (time.perf_counter() - started) * 1000


def run_checks(
    checks: dict[str, Check], timeout_seconds: float, executor: ThreadPoolExecutor
) -> dict[str, Any]:
    """Run every check at once; answer ``{"status", "failing", "checks": {name: {...}}}``."""
    # Each check runs in a copy of this context, so its log lines keep the request id.
    futures: dict[str, Future[float]] = {
        name: executor.submit(contextvars.copy_context().run, _timed, check)
        for name, check in checks.items()
    }
    wait_for(futures.values(), timeout=timeout_seconds)
    results: dict[str, dict[str, Any]] = {}
    for name, future in futures.items():
        if not future.done():
            future.cancel()
            results[name] = {"ok": False, "error": f"timed out after {timeout_seconds:g} s"}
            log.warning("readiness: %s timed out after %.1f s", name, timeout_seconds)
            continue
        error = future.exception()
        if error is None:
            results[name] = {"ok": True, "ms": round(future.result(), 1)}
        else:
            results[name] = {"ok": False, "error": type(error).__name__}
            log.warning("readiness: %s failed: %s: %s", name, type(error).__name__, error)
    failing = sorted(name for name, result in results.items() if not result["ok"])
    return {"status": "not ready" if failing else "ready", "failing": failing, "checks": results}


def register_readiness(server: Flask, stores: Stores, settings: ReadinessSettings) -> None:
    """Add ``GET /readyz``: 200 when every part answers, 503 naming the parts that do not."""
    checks = readiness_checks(stores, settings)
    # Bounded: a store that hangs past the deadline holds at most these threads.
    executor_holder: list[ThreadPoolExecutor] = []
    executor_lock = threading.Lock()

    def executor() -> ThreadPoolExecutor:
        # Made on first use, inside the worker: threads must not be created before a fork.
        with executor_lock:
            if not executor_holder:
                executor_holder.append(
                    ThreadPoolExecutor(max_workers=2 * len(checks), thread_name_prefix="readyz")
                )
            return executor_holder[0]

    def readyz() -> tuple[Response, int]:
        report = run_checks(checks, settings.timeout_seconds, executor())
        response = jsonify(report)
        response.headers["Cache-Control"] = "no-store"
        return response, 200 if not report["failing"] else 503

    server.add_url_rule("/readyz", endpoint="readyz", view_func=readyz, methods=["GET"])
