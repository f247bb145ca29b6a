"""Settings for the dashboard, built once from the environment."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator, model_validator

from configuration.base import EnvSettings, comma_list, setting

DEFAULT_REFRESH_CHOICES_MS = (5000, 10000, 30000, 60000)


def default_floor_ms(choices: tuple[int, ...]) -> int:
    """Four fifths of the fastest choice: regular ticks pass despite timer jitter."""
    return min(choices) * 4 // 5


def _endpoints(value: object) -> object:
    """``"cdn=https://a, pay=https://b"`` -> ``(("cdn", "https://a"), ("pay", "https://b"))``."""
    if not isinstance(value, str):
        return value
    pairs = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, _, url = item.partition("=")
        if not url:
            raise ValueError(f"entry {item!r} needs name=url")
        pairs.append((name.strip(), url.strip()))
    return tuple(pairs)


class DashboardSettings(EnvSettings):
    title: str = setting(
        "Mission Control", "DASHBOARD_TITLE", description="name in the header and the tab"
    )
    # Poll interval choices offered in the refresh picker ("off" is always offered too).
    refresh_choices_ms: Annotated[
        tuple[Annotated[int, Field(gt=0)], ...], BeforeValidator(comma_list), Field(min_length=1)
    ] = setting(
        DEFAULT_REFRESH_CHOICES_MS,
        "REFRESH_CHOICES_MS",
        description="refresh choices in the picker, in ms",
    )
    refresh_default_ms: int = setting(
        DEFAULT_REFRESH_CHOICES_MS[0],
        "REFRESH_DEFAULT_MS",
        description="the refresh a new tab starts with (one of the choices, or `0` for off)",
        shown_default="the first choice",
    )
    # The server answers at most one poll per panel and browser tab within the floor. It sits
    # below the fastest choice so that timer jitter never drops a regular tick.
    refresh_floor_ms: int = setting(
        default_floor_ms(DEFAULT_REFRESH_CHOICES_MS),
        "REFRESH_FLOOR_MS",
        description="the server answers one tab's panel at most this often",
        shown_default="4/5 of the fastest choice",
        ge=0,
    )
    export_row_limit: int = setting(
        100_000,
        "EXPORT_ROW_LIMIT",
        description="most rows one CSV export may hold (above it the export is refused, saying so)",
        ge=1,
    )
    # Built figures kept per process, keyed by query, data version and builder.
    figure_cache_items: int = setting(
        256,
        "FIGURE_CACHE_ITEMS",
        description="figures kept per worker when there is no Redis (`REDIS_URL`), by query and "
        "data version",
        ge=1,
    )
    # The export of the same view is bounded separately.
    grid_row_limit: int = setting(
        20_000, "GRID_ROW_LIMIT", description="most rows a table on screen loads", ge=1
    )
    health_endpoints: Annotated[tuple[tuple[str, str], ...], BeforeValidator(_endpoints)] = setting(
        (),
        "HEALTH_ENDPOINTS",
        description="external endpoints probed on the Health page: `name=url,name=url` (CDN, "
        "payment provider)",
    )
    probe_timeout_seconds: float = setting(
        2.0, "PROBE_TIMEOUT_SECONDS", description="timeout of each health probe", gt=0
    )
    sample_hosts: Annotated[frozenset[str], BeforeValidator(comma_list)] = setting(
        frozenset(),
        "SAMPLE_HOSTS",
        description="hosts whose metrics are generated sample data, labelled `(sample)` in the "
        "Health host charts (`make run` sets `web-1,web-2`)",
    )

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_the_choices(cls, data: Any) -> Any:
        """The default refresh and floor follow REFRESH_CHOICES_MS when it is set."""
        if not isinstance(data, dict) or "refresh_choices_ms" not in data:
            return data
        try:
            choices = tuple(int(choice) for choice in comma_list(data["refresh_choices_ms"]))
        except (TypeError, ValueError):
            return data  # the field's own validation names the problem
        if not choices or min(choices) <= 0:
            return data
        return {
            "refresh_default_ms": choices[0],
            "refresh_floor_ms": default_floor_ms(choices),
            **data,
        }

    @field_validator("refresh_default_ms")
    @classmethod
    def _known_default(cls, value: int, info: Any) -> int:
        choices = info.data.get("refresh_choices_ms")
        if choices is not None and value not in (0, *choices):
            raise ValueError(f"{value} is not one of the choices {choices} (or 0 for off)")
        return value

    @field_validator("refresh_floor_ms")
    @classmethod
    def _floor_below_the_fastest_choice(cls, value: int, info: Any) -> int:
        choices = info.data.get("refresh_choices_ms")
        if choices and value > min(choices):
            raise ValueError(
                f"{value} must lie between 0 and the fastest refresh choice ({min(choices)} ms), "
                "or that choice never works"
            )
        return value
