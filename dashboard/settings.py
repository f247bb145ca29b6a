"""Settings for the dashboard, built once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


def _int_list(text: str, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"{name} must be comma-separated milliseconds: {text!r}") from exc
    if not values or any(value <= 0 for value in values):
        raise ValueError(f"{name} needs at least one positive value: {text!r}")
    return values


def default_floor_ms(choices: tuple[int, ...]) -> int:
    """Four fifths of the fastest choice: regular ticks pass despite timer jitter."""
    return min(choices) * 4 // 5


@dataclass(frozen=True)
class DashboardSettings:
    title: str = "Mission Control"
    # Poll interval choices offered in the refresh picker ("off" is always offered too).
    refresh_choices_ms: tuple[int, ...] = (5000, 10000, 30000, 60000)
    refresh_default_ms: int = 5000
    # The server answers at most one poll per panel and browser tab within the floor. It sits
    # below the fastest choice so that timer jitter never drops a regular tick.
    refresh_floor_ms: int = 4000
    export_row_limit: int = 100_000
    # Built figures kept per process, keyed by query, data version and builder.
    figure_cache_items: int = 256
    # Rows a drill-down grid shows at most; the export of the same view is bounded separately.
    grid_row_limit: int = 20_000
    # External endpoints probed on the system-health view: "name=url,name=url".
    health_endpoints: tuple[tuple[str, str], ...] = ()
    probe_timeout_seconds: float = 2.0
    # Hosts whose metrics the sample generator wrote: Health labels them "(sample)".
    sample_hosts: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.refresh_default_ms not in (0, *self.refresh_choices_ms):
            raise ValueError(
                f"REFRESH_DEFAULT_MS={self.refresh_default_ms} is not one of the choices "
                f"{self.refresh_choices_ms} (or 0 for off)"
            )
        if self.refresh_floor_ms < 0 or self.refresh_floor_ms > min(self.refresh_choices_ms):
            raise ValueError(
                f"REFRESH_FLOOR_MS={self.refresh_floor_ms} must lie between 0 and the fastest "
                f"refresh choice ({min(self.refresh_choices_ms)} ms), or that choice never works"
            )
        if self.export_row_limit < 1 or self.grid_row_limit < 1 or self.figure_cache_items < 1:
            raise ValueError("EXPORT_ROW_LIMIT, GRID_ROW_LIMIT, FIGURE_CACHE_ITEMS must be >= 1")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DashboardSettings:
        env = os.environ if env is None else env
        endpoints = []
        for item in filter(None, env.get("HEALTH_ENDPOINTS", "").split(",")):
            name, _, url = item.partition("=")
            if not url:
                raise ValueError(f"HEALTH_ENDPOINTS entry needs name=url: {item!r}")
            endpoints.append((name.strip(), url.strip()))
        choices = cls.refresh_choices_ms
        if env.get("REFRESH_CHOICES_MS"):
            choices = _int_list(env["REFRESH_CHOICES_MS"], "REFRESH_CHOICES_MS")
        return cls(
            title=env.get("DASHBOARD_TITLE", cls.title),
            refresh_choices_ms=choices,
            refresh_default_ms=int(env.get("REFRESH_DEFAULT_MS", choices[0])),
            refresh_floor_ms=int(env.get("REFRESH_FLOOR_MS", default_floor_ms(choices))),
            export_row_limit=int(env.get("EXPORT_ROW_LIMIT", cls.export_row_limit)),
            figure_cache_items=int(env.get("FIGURE_CACHE_ITEMS", cls.figure_cache_items)),
            grid_row_limit=int(env.get("GRID_ROW_LIMIT", cls.grid_row_limit)),
            health_endpoints=tuple(endpoints),
            probe_timeout_seconds=float(
                env.get("PROBE_TIMEOUT_SECONDS", cls.probe_timeout_seconds)
            ),
            sample_hosts=frozenset(
                filter(None, (host.strip() for host in env.get("SAMPLE_HOSTS", "").split(",")))
            ),
        )
