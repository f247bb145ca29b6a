"""What a view shows, carried in the URL's query string so links can be shared and Back works.

Pages parse leniently (a bad parameter is dropped and reported on the page); the CSV export
parses strictly (a bad parameter is a 400). Both read the same names with the same rules.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

from data_access.layout import is_safe_customer_id
from data_access.queries import DateRange

RANGE_PRESETS: dict[str, str] = {
    "today": "Today",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "90d": "Last 90 days",
    "this-week": "This week",
    "last-week": "Last week",
}
DEFAULT_RANGE = "7d"
# Health and Alerts look back hours, not days: their own parameter, ``?window=6h``.
WINDOW_PRESETS: dict[str, str] = {
    "1h": "Last 1 hour",
    "6h": "Last 6 hours",
    "24h": "Last 24 hours",
}
DEFAULT_WINDOW = "24h"
CUSTOM_RANGE = "custom"
STATE_PARAMS = ("range", "customer", "day", "week", "category")

# Same rule as the ingest side's customer ids: no path separators, dots or spaces.
CATEGORY = re.compile(r"[\w][\w &/+-]{0,63}")
_CUSTOM = re.compile(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})")


class BadParameter(ValueError):
    """A query-string parameter that cannot be used; the message says which and why."""


def parse_date(value: object, name: str) -> dt.date:
    if not isinstance(value, str) or len(value) != 10:
        raise BadParameter(f"{name} must be a date like 2026-01-31")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise BadParameter(f"{name} must be a date like 2026-01-31, not {value!r}") from exc


def parse_customer(value: object) -> str:
    if not is_safe_customer_id(value):
        raise BadParameter("customer must be letters, digits, '-' or '_' (at most 64)")
    return value


def parse_category(value: object) -> str:
    if not isinstance(value, str) or not CATEGORY.fullmatch(value):
        raise BadParameter("category must be at most 64 letters, digits, spaces or &/+-")
    return value


def week_start(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def resolve_range(token: object, today: dt.date) -> tuple[dt.date, dt.date]:
    """A preset name or ``YYYY-MM-DD..YYYY-MM-DD`` as first and last day, both inclusive."""
    if token in (None, ""):
        token = DEFAULT_RANGE
    if not isinstance(token, str):
        raise BadParameter("range must be given once")
    days = {"today": 1, "7d": 7, "30d": 30, "90d": 90}
    if token in days:
        return today - dt.timedelta(days=days[token] - 1), today
    if token == "this-week":
        return week_start(today), today
    if token == "last-week":
        start = week_start(today) - dt.timedelta(days=7)
        return start, start + dt.timedelta(days=6)
    match = _CUSTOM.fullmatch(token)
    if match is None:
        presets = ", ".join(RANGE_PRESETS)
        raise BadParameter(f"range must be one of {presets} or 2026-01-01..2026-01-31")
    start, end = (parse_date(part, "range") for part in match.groups())
    try:
        DateRange(start, end)  # the queries' own limits: order and length
    except ValueError as exc:
        raise BadParameter(f"range: {exc}") from exc
    return start, end


def window_hours(token: object) -> int:
    """Hours of a ``?window=`` value; raises ``BadParameter`` for one not offered."""
    if token in (None, ""):
        token = DEFAULT_WINDOW
    if token not in WINDOW_PRESETS:
        raise BadParameter(f"window must be one of {', '.join(WINDOW_PRESETS)}")
    return int(str(token).removesuffix("h"))


def parse_window(token: object) -> tuple[str, int, str | None]:
    """Lenient ``?window=``: the token shown, its hours, and the notice for one dropped."""
    try:
        hours = window_hours(token)
    except BadParameter as exc:
        shown = WINDOW_PRESETS[DEFAULT_WINDOW].lower()
        problem = f"Unknown window {str(token)[:40]!r}; showing the {shown} ({exc})."
        return DEFAULT_WINDOW, window_hours(DEFAULT_WINDOW), problem
    return str(token or DEFAULT_WINDOW), hours, None


def custom_range(start: dt.date, end: dt.date) -> str:
    return f"{start.isoformat()}..{end.isoformat()}"


@dataclass(frozen=True)
class ViewState:
    """The parsed parameters of one view. ``problems`` lists what was dropped, for the page."""

    range_token: str
    start: dt.date
    end: dt.date
    customer: str | None = None
    day: dt.date | None = None
    week: dt.date | None = None
    category: str | None = None
    problems: tuple[str, ...] = field(default=())

    @property
    def is_preset(self) -> bool:
        return self.range_token in RANGE_PRESETS

    def params(self) -> dict[str, str]:
        """Canonical query parameters, without the ones not set."""
        values = {
            "range": self.range_token,
            "customer": self.customer,
            "day": self.day.isoformat() if self.day else None,
            "week": self.week.isoformat() if self.week else None,
            "category": self.category,
        }
        return {name: value for name, value in values.items() if value}

    def to_store(self) -> dict[str, str]:
        return {**self.params(), "start": self.start.isoformat(), "end": self.end.isoformat()}

    @classmethod
    def from_store(cls, data: Mapping[str, str] | None) -> ViewState:
        """Rebuild from what ``to_store`` wrote; raises ``BadParameter`` if tampered with."""
        if not data:
            raise BadParameter("the view has no state")
        return cls(
            range_token=str(data.get("range", DEFAULT_RANGE)),
            start=parse_date(data.get("start"), "start"),
            end=parse_date(data.get("end"), "end"),
            customer=parse_customer(data["customer"]) if data.get("customer") else None,
            day=parse_date(data["day"], "day") if data.get("day") else None,
            week=parse_date(data["week"], "week") if data.get("week") else None,
            category=parse_category(data["category"]) if data.get("category") else None,
        )


def parse_view_state(
    query: Mapping[str, object], today: dt.date, *, strict: bool = False
) -> ViewState:
    """Parse ``range``, ``customer``, ``day``, ``week``, ``category`` from a query mapping.

    Lenient by default: a bad value is dropped and described in ``problems``. With
    ``strict=True`` the first bad value raises ``BadParameter``.
    """
    problems: list[str] = []

    def attempt(name: str, parse):
        value = query.get(name)
        if value in (None, ""):
            return None
        try:
            return parse(value)
        except BadParameter as exc:
            if strict:
                raise
            problems.append(f"Ignored {name}: {exc}")
            return None

    token = query.get("range") or DEFAULT_RANGE
    try:
        start, end = resolve_range(token, today)
    except BadParameter as exc:
        if strict:
            raise
        shown = RANGE_PRESETS[DEFAULT_RANGE].lower()
        problems.append(f"Unknown range {str(token)[:40]!r}; showing the {shown} ({exc}).")
        token = DEFAULT_RANGE
        start, end = resolve_range(token, today)
    week = attempt("week", lambda value: week_start(parse_date(value, "week")))
    return ViewState(
        range_token=str(token),
        start=start,
        end=end,
        customer=attempt("customer", parse_customer),
        day=attempt("day", lambda value: parse_date(value, "day")),
        week=week,
        category=attempt("category", parse_category),
        problems=tuple(problems),
    )


def query_param(search: str | None, name: str) -> str | None:
    """One parameter of a query string, or None when absent or empty."""
    return dict(parse_qsl((search or "").lstrip("?"))).get(name) or None


def search_with(search: str | None, **changes: str | None) -> str:
    """The query string ``search`` with parameters replaced; ``None`` removes one."""
    pairs = dict(parse_qsl((search or "").lstrip("?"), keep_blank_values=False))
    for name, value in changes.items():
        if value is None:
            pairs.pop(name, None)
        else:
            pairs[name] = value
    ordered = {name: pairs[name] for name in STATE_PARAMS if name in pairs}
    ordered.update({name: value for name, value in pairs.items() if name not in ordered})
    return f"?{urlencode(ordered)}" if ordered else ""
