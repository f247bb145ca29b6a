"""The poll path every panel shares: version check, floor, fetch, build once per version.

A panel callback hands ``PanelRunner.answer`` its query, the version it shows and a pure
builder. An unchanged version answers ``no_update`` without touching the data; a changed one
fetches (cache first) and builds, and the built output is kept per (builder, query, version)
in the app's figure cache (per worker, or Redis shared by every worker: ``dashboard.cache``),
so many operators polling the same view share one build. Any failure becomes a degraded
message on the panel, never an exception out of the callback.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import pandas as pd
from dash import no_update

from dashboard.cache import AppCaches, worker_caches
from data_access.queries import Query
from data_access.service import DataService, MemoCache, NoData, Provenance
from data_access.single_flight import Claim, Release, SingleFlight

log = logging.getLogger(__name__)

TIER_LABELS = {"memory": "memory", "cache": "cache", "lake": "lake", "stale": "stale"}


def age_text(seconds: float) -> str:
    if seconds < 5:
        return "just now"
    if seconds < 90:
        return f"{int(seconds)} s ago"
    if seconds < 90 * 60:
        return f"{int(seconds // 60)} min ago"
    if seconds < 36 * 3600:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def provenance_label(provenance: Provenance, now: float) -> str:
    """Tier and age, e.g. ``cache · 12 s ago``."""
    return f"{TIER_LABELS.get(provenance.tier, provenance.tier)} · {age_text(provenance.age(now))}"


class FigureCache:
    """Built outputs in a cachelib-style cache (flask-caching's), with hit and miss counts.

    A cache error is a miss and a failed write still returns the built value: a panel is
    answered whatever its cache does.
    """

    def __init__(
        self,
        store: MemoCache,
        timeout_seconds: int,
        *,
        claim: Claim | None = None,
        release: Release | None = None,
    ) -> None:
        self._store = store
        self._timeout = timeout_seconds
        self._lock = threading.Lock()
        # One build per key across threads, and across workers when they share the store.
        self._flights: SingleFlight[Any] = SingleFlight(claim, release)
        self.hits = 0
        self.misses = 0

    def _get(self, key: str) -> Any:
        try:
            return self._store.get(key)
        except Exception as exc:  # e.g. an entry a different release wrote
            log.warning("figure cache read failed: %s", exc)
            return None

    def get_or_build(self, key: str, build: Callable[[], Any]) -> Any:
        value = self._get(key)
        shared = value is not None
        if value is None:
            value, shared = self._flights.run(
                key, lambda: self._get(key), lambda: self._build(key, build)
            )
        with self._lock:
            if shared:
                self.hits += 1
            else:
                self.misses += 1
        return value

    def _build(self, key: str, build: Callable[[], Any]) -> Any:
        value = build()
        try:
            self._store.set(key, value, timeout=self._timeout)
        except Exception as exc:
            log.warning("figure cache write failed, figure still served: %s", exc)
        return value


def figure_key(panel: str, build_key: Hashable, query: Query, version: str) -> str:
    """The same string in every worker: the data cache key plus the panel and its builder."""
    builder = hashlib.sha256(repr(build_key).encode()).hexdigest()[:16]
    return f"{panel}:{builder}:{DataService.cache_key(query, version)}"


class PollFloor:
    """At most one answered poll per (browser tab, panel) within ``floor_seconds``.

    With ``claim`` (``AppCaches.claim``: Redis) the floor holds across every worker; while
    it answers None (no Redis, or Redis failing) each worker enforces it for the polls it sees.
    """

    def __init__(
        self,
        floor_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 50_000,
        claim: Callable[[str, float], bool | None] | None = None,
    ) -> None:
        self._floor = floor_seconds
        self._clock = clock
        self._last: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()
        self._claim = claim

    def allow(self, client_id: str, panel: str) -> bool:
        """True, and remembered, unless this tab's last answered poll of the panel is too recent."""
        if self._claim is not None and self._floor > 0:
            shared = self._claim(f"floor:{client_id}:{panel}", self._floor)
            if shared is not None:
                return shared
        now = self._clock()
        key = (client_id, panel)
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._floor:
                return False
            self._last[key] = now
            self._last.move_to_end(key)
            while len(self._last) > self._max:
                self._last.popitem(last=False)
            return True


@dataclass(frozen=True)
class PanelAnswer:
    """What a panel callback returns: content, the version shown, badge and status text."""

    content: Any
    version: Any
    badge: Any
    status: Any

    def outputs(self) -> tuple[Any, Any, Any, Any]:
        return self.content, self.version, self.badge, self.status

    @property
    def unchanged(self) -> bool:
        return all(
            value is no_update for value in (self.content, self.version, self.badge, self.status)
        )


NOTHING_NEW = PanelAnswer(no_update, no_update, no_update, no_update)

# Set while the panel poll asks a panel's callback only whether its data version changed.
_version_check_only: ContextVar[bool] = ContextVar("mc_version_check_only", default=False)


@contextmanager
def version_check_only() -> Iterator[None]:
    """Within it, ``PanelRunner.answer`` neither fetches nor builds nor applies the floor: it
    answers ``NOTHING_NEW`` for an unchanged panel and a version-only answer for a changed
    one. The panel poll runs each panel's own callback so, to learn its query."""
    token = _version_check_only.set(True)
    try:
        yield
    finally:
        _version_check_only.reset(token)


def badge_props(provenance: Provenance | None, now: float, problem: str | None = None) -> dict:
    """Plain data for the provenance badge; ``components.panel.badge`` renders it."""
    if provenance is None:
        return {"tier": "error", "label": "unavailable", "age": None, "title": problem or ""}
    issue = problem or provenance.problem
    return {
        "tier": "stale" if issue else provenance.tier,
        "label": TIER_LABELS.get(provenance.tier, provenance.tier),
        "age": round(provenance.age(now), 1),
        "title": (
            f"Read from the lake {age_text(provenance.age(now))}; data version "
            f"{provenance.version}" + (f"; {issue}" if issue else "")
        ),
    }


class PanelRunner:
    """Answers panel polls for every page; one per app, shared by all callbacks."""

    def __init__(
        self,
        data: DataService,
        *,
        floor_seconds: float,
        figure_cache_items: int,
        render_badge: Callable[[dict], Any],
        render_status: Callable[[str | None], Any],
        clock: Callable[[], float] = time.time,
        floor_clock: Callable[[], float] = time.monotonic,
        caches: AppCaches | None = None,
    ) -> None:
        self.data = data
        if caches is None:
            caches = worker_caches(
                memo_seconds=data.settings.memo_seconds, figure_items=figure_cache_items
            )
        self.figures = FigureCache(
            caches.figures, caches.figure_seconds, claim=caches.claim, release=caches.release
        )
        self.floor = PollFloor(
            floor_seconds, clock=floor_clock, claim=caches.claim if caches.shared else None
        )
        self._render_badge = render_badge
        self._render_status = render_status
        self._clock = clock

    def answer(
        self,
        panel: str,
        query: Query | None,
        shown_version: str | None,
        client_id: str | None,
        build: Callable[[pd.DataFrame], Any],
        *,
        build_key: Hashable = (),
    ) -> PanelAnswer:
        """Answer one poll of ``panel``.

        ``query`` None means the view lacks a selection (e.g. no customer chosen): nothing to
        show. ``build_key`` adds builder arguments (e.g. a highlighted day) to the figure cache
        key.
        """
        if _version_check_only.get():
            return self._version_check(query, shown_version)
        if query is None:
            return PanelAnswer(no_update, None, None, None)
        # A panel that shows nothing yet (first render, new selection) is always answered.
        if shown_version is not None and not self.floor.allow(client_id or "-", panel):
            return NOTHING_NEW
        if shown_version is None and client_id:
            self.floor.allow(client_id, panel)
        try:
            version = self.data.version(query)
            if shown_version is not None and version == shown_version and version != "unknown":
                return NOTHING_NEW
            result = self.data.fetch(query)
            provenance = result.provenance
            if provenance.version == "unknown":
                content = build(result.data)  # no version to key a reusable figure on
            else:
                key = figure_key(panel, build_key, query, provenance.version)
                content = self.figures.get_or_build(key, lambda: build(result.data))
        except NoData as exc:
            log.warning("panel %s has no data: %s", panel, exc)
            return self.degraded(f"No data: {exc}. Showing the last view; retrying.")
        except Exception:
            # A broken panel must not take the page down: log it, keep what is on screen.
            log.exception("panel %s failed", panel)
            return self.degraded("This panel could not be updated. Showing the last view.")
        now = self._clock()
        status = None
        if provenance.problem:
            status = (
                f"Degraded: {provenance.problem}. "
                f"Showing data read {age_text(provenance.age(now))}."
            )
        # A stale answer never matches a real version, so the next poll tries the lake again.
        shown = f"stale:{provenance.version}" if provenance.tier == "stale" else provenance.version
        return PanelAnswer(
            content,
            shown,
            self._render_badge(badge_props(provenance, now)),
            self._render_status(status),
        )

    def _version_check(self, query: Query | None, shown_version: str | None) -> PanelAnswer:
        if query is None:
            # Nothing to show: changed only if the panel still shows an earlier selection.
            return (
                NOTHING_NEW if shown_version is None else PanelAnswer(no_update, None, None, None)
            )
        if shown_version is None:
            return PanelAnswer(no_update, "new", no_update, no_update)
        try:
            version = self.data.version(query)
        except Exception as exc:
            # The panel's own callback reports the failure on screen.
            log.warning("panel version check failed: %s", exc)
            return PanelAnswer(no_update, "failed", no_update, no_update)
        if version == shown_version and version != "unknown":
            return NOTHING_NEW
        return PanelAnswer(no_update, version, no_update, no_update)

    def degraded(self, message: str) -> PanelAnswer:
        return PanelAnswer(
            no_update,
            no_update,
            self._render_badge(badge_props(None, self._clock(), message)),
            self._render_status(message),
        )
