"""CSV export of what a panel shows: ``GET /export/<view>.csv?<the page's parameters>``.

The parameters are the page's own (range, customer, day, week, category) plus, for grids,
the grid's filter model (``filter``, AG Grid JSON) and sort (``sort``, ``[{"colId", "sort"}]``),
applied here with pandas the way the grid applies them, and ``version``: the data version the
panel shows. A pinned export answers from that version (``DataService.fetch_at``), so the file
holds the rows on screen even when newer data arrived since; when that version is no longer
kept it refuses (409) with a link to the current data, never silently exporting other rows.

Format choices:
- RFC 4180: comma, double-quote quoting, CRLF line ends, a header row.
- UTF-8 with a byte order mark, because the operators' spreadsheet (Excel) reads a CSV
  without one in the local 8-bit code page and garbles non-ASCII names; pandas
  (``encoding="utf-8-sig"``) and most CSV readers skip the mark.
- Headers are the column titles the panel shows, with units: ``Revenue ($)``, not ``revenue``.
- Money has two decimals (``249.00``); other numbers are written in full.
- Formula neutralisation: a text cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR gets
  a leading ``'`` so a spreadsheet shows it instead of evaluating it. Numbers stay numbers.
- Row limit: an export over ``EXPORT_ROW_LIMIT`` rows is refused with 413 and a message that
  gives the count and the limit; a silently truncated file would pass for the whole data.
- Bad parameters answer 400 with the reason; nothing here answers 500 for user input.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import numpy as np
import pandas as pd
from flask import Blueprint, Response, request, stream_with_context
from markupsafe import escape

from auth.guard import audit, require_role
from dashboard import figures
from dashboard.components.url_state import (
    BadParameter,
    ViewState,
    parse_view_state,
)
from data_access.queries import (
    CustomerDayQuery,
    CustomerSessionsQuery,
    CustomerTrendQuery,
    DailyBusinessQuery,
    FleetAppsQuery,
    FleetDailyQuery,
    FleetHoursQuery,
    KpiSummaryQuery,
    OrdersQuery,
    Query,
    TopProductsQuery,
    WeeklyRevenueQuery,
)
from data_access.service import NoData, Provenance, VersionGone

if TYPE_CHECKING:
    from dashboard.app import Services

log = logging.getLogger(__name__)

BOM = "\ufeff"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
GRID_PARAMS = ("filter", "sort")
ALLOWED_PARAMS = frozenset(
    {"range", "customer", "day", "week", "category", "version", *GRID_PARAMS}
)
MAX_VERSION_CHARS = 4_000
CHUNK_ROWS = 1000
# Exports hold per-customer and per-order rows: viewers are neither served nor offered them.
EXPORT_ROLE = "operator"
MAX_FILTER_CHARS = 20_000


class ExportRefused(Exception):
    """An export that cannot be served as asked; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class PinnedVersionGone(ExportRefused):
    """The data version the panel showed is no longer kept: the export would not match it."""

    def __init__(self, pinned: str, current_href: str) -> None:
        self.explanation = (
            f"The data this panel showed (version {pinned}) has changed since the page showed "
            "it and is no longer kept, so this file could not match the screen."
        )
        super().__init__(
            409, f"{self.explanation} Download the current data instead: {current_href}"
        )
        self.current_href = current_href


# ---- column titles ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvColumn:
    """How a field is written: the title the panel shows (with its unit), and money or not."""

    title: str
    money: bool = False

    @property
    def header(self) -> str:
        return f"{self.title} ({figures.CURRENCY})" if self.money else self.title


# The grids' own titles (dashboard/pages) for their fields; tests hold the two equal.
CSV_COLUMNS: dict[str, CsvColumn] = {
    "metric": CsvColumn("Metric"),
    "label": CsvColumn("KPI"),
    "value": CsvColumn("Value"),
    "previous": CsvColumn("Previous period"),
    "change": CsvColumn("Change"),
    "day": CsvColumn("Day"),
    "week": CsvColumn("Week (Monday)"),
    "ts": CsvColumn("Time (UTC)"),
    "order_id": CsvColumn("Order"),
    "user_id": CsvColumn("User"),
    "product_id": CsvColumn("Product id"),
    "product_name": CsvColumn("Product"),
    "category": CsvColumn("Category"),
    "quantity": CsvColumn("Units"),
    "unit_price": CsvColumn("Unit price", money=True),
    "amount": CsvColumn("Amount", money=True),
    "revenue": CsvColumn("Revenue", money=True),
    "currency": CsvColumn("Currency"),
    "orders": CsvColumn("Orders"),
    "visitors": CsvColumn("Visitors"),
    "buyers": CsvColumn("Buyers"),
    "dau": CsvColumn("Active users"),
    "pageviews": CsvColumn("Page views"),
    "active_customers": CsvColumn(figures.ACTIVE_DEVICES_LABEL),
    "total_seconds": CsvColumn("Screen time (s)"),
    "avg_seconds": CsvColumn("Avg screen time (s)"),
    "avg_pickups": CsvColumn("Avg pickups"),
    "app_id": CsvColumn("App id"),
    "app_name": CsvColumn("App"),
    "seconds": CsvColumn("Screen time (s)"),
    "customer_days": CsvColumn("Customer-days"),
    "sessions": CsvColumn("Sessions"),
    "share": CsvColumn("Share (0-1)"),
    "hour": CsvColumn("Local hour"),
    "pickups": CsvColumn("Pickups"),
    "notifications": CsvColumn("Notifications"),
    "start": CsvColumn("Start"),
    "end": CsvColumn("End"),
    "minutes": CsvColumn("Minutes"),
}


def csv_column(field: str, titles: Mapping[str, str] | None = None) -> CsvColumn:
    """The column a field is written as; ``titles`` are a view's own titles for some fields."""
    column = CSV_COLUMNS.get(field, CsvColumn(field))
    if titles and field in titles:
        return CsvColumn(titles[field], money=column.money)
    return column


# ---- views ------------------------------------------------------------------------------------


def _need(view: ViewState, *names: str) -> None:
    missing = [name for name in names if getattr(view, name) is None]
    if missing:
        raise BadParameter(f"this export needs {', '.join(missing)}")


def _customer_trend(view: ViewState) -> Query:
    _need(view, "customer")
    return CustomerTrendQuery(view.start, view.end, customer_id=view.customer or "")


def _customer_day(view: ViewState) -> Query:
    _need(view, "customer", "day")
    return CustomerDayQuery(view.customer or "", view.day or view.end)


def _customer_sessions(view: ViewState) -> Query:
    _need(view, "customer", "day")
    return CustomerSessionsQuery(view.customer or "", view.day or view.end)


def orders_query(view: ViewState) -> Query:
    """The orders a revenue page shows: the selected week (Monday to Sunday), else the range."""
    if view.week is not None:
        return OrdersQuery(view.week, view.week + dt.timedelta(days=6), view.category or "")
    return OrdersQuery(view.start, view.end, view.category or "")


def _category_revenue(products: pd.DataFrame) -> pd.DataFrame:
    if products.empty:
        return pd.DataFrame({"category": [], "revenue": [], "orders": []})
    out = products.groupby("category", as_index=False)[["revenue", "orders"]].sum()
    return out.sort_values("revenue", ascending=False).reset_index(drop=True)


@dataclass(frozen=True)
class ExportView:
    # What the panel is called and the page it is on, for the panel's Inspect view.
    title: str
    page: str
    query: Callable[[ViewState], Query]
    # Which page parameters the view depends on, for the file name.
    params: tuple[str, ...] = ("range",)
    transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    # Titles this view's grid gives a field differently from CSV_COLUMNS.
    titles: Mapping[str, str] | None = None


EXPORT_VIEWS: dict[str, ExportView] = {
    "kpis": ExportView("Key numbers", "/", lambda v: KpiSummaryQuery(v.start, v.end)),
    "business-daily": ExportView(
        "Daily revenue", "/", lambda v: DailyBusinessQuery(v.start, v.end)
    ),
    "top-products": ExportView(
        "Top 5 products", "/", lambda v: TopProductsQuery(v.start, v.end, limit=5)
    ),
    "products": ExportView(
        "By product", "/revenue", lambda v: TopProductsQuery(v.start, v.end, limit=0)
    ),
    "category-revenue": ExportView(
        "By category",
        "/revenue",
        lambda v: TopProductsQuery(v.start, v.end, limit=0),
        transform=_category_revenue,
    ),
    "weekly-revenue": ExportView(
        "Weekly revenue by category", "/revenue", lambda v: WeeklyRevenueQuery(v.start, v.end)
    ),
    "orders": ExportView(
        "Orders",
        "/revenue",
        orders_query,
        params=("range", "week", "category"),
        titles={"quantity": "Qty"},
    ),
    "fleet-daily": ExportView(
        "Active devices and screen time",
        "/screen-time",
        lambda v: FleetDailyQuery(v.start, v.end),
    ),
    "fleet-apps": ExportView("Top apps", "/screen-time", lambda v: FleetAppsQuery(v.start, v.end)),
    "fleet-categories": ExportView(
        "Categories",
        "/screen-time",
        lambda v: FleetAppsQuery(v.start, v.end),
        transform=figures.category_split,
    ),
    "fleet-hours": ExportView(
        "Usage by hour of day", "/screen-time", lambda v: FleetHoursQuery(v.start, v.end)
    ),
    "customer-trend": ExportView(
        "Daily screen time", "/screen-time", _customer_trend, params=("range", "customer")
    ),
    "customer-day": ExportView(
        "Apps and hours of a day", "/screen-time", _customer_day, params=("customer", "day")
    ),
    "customer-sessions": ExportView(
        "Sessions of a day", "/screen-time", _customer_sessions, params=("customer", "day")
    ),
}


def export_href(
    view_name: str,
    view: ViewState,
    *,
    filter_model: Mapping[str, Any] | None = None,
    sort: list[dict[str, Any]] | None = None,
    version: str | None = None,
) -> str:
    """The export URL for a view as the page shows it (what ``/export`` parses back);
    ``version`` pins it to the data version on screen."""
    if view_name not in EXPORT_VIEWS:
        raise KeyError(view_name)
    params = dict(view.params())
    if filter_model:
        params["filter"] = json.dumps(filter_model, separators=(",", ":"), sort_keys=True)
    if sort:
        params["sort"] = json.dumps(sort, separators=(",", ":"))
    if version:
        params["version"] = version
    query = urlencode(params)
    return f"/export/{view_name}.csv" + (f"?{query}" if query else "")


def sort_from_column_state(column_state: Iterable[Mapping[str, Any]] | None) -> list[dict]:
    """AG Grid's columnState as a sort list ``[{"colId", "sort"}]`` in sort priority order."""
    sorted_columns = [
        column for column in column_state or () if column.get("sort") in ("asc", "desc")
    ]
    sorted_columns.sort(key=lambda column: column.get("sortIndex") or 0)
    return [{"colId": column["colId"], "sort": column["sort"]} for column in sorted_columns]


# ---- filter and sort, the way AG Grid applies them ---------------------------------------------


def _text_condition(values: pd.Series, condition: Mapping[str, Any]) -> pd.Series:
    kind = condition.get("type")
    missing = values.isna()
    text = values.astype(object).where(~missing, "").map(str).str.lower()
    if kind == "blank":
        return missing | (text.str.strip() == "")
    if kind == "notBlank":
        return ~(missing | (text.str.strip() == ""))
    needle = condition.get("filter")
    if isinstance(needle, bool) or not isinstance(needle, str | int | float):
        raise BadParameter(f"text filter {kind!r} needs a text 'filter'")
    needle = str(needle).lower()
    matchers = {
        "contains": lambda s: s.str.contains(needle, regex=False),
        "notContains": lambda s: ~s.str.contains(needle, regex=False),
        "equals": lambda s: s == needle,
        "notEqual": lambda s: s != needle,
        "startsWith": lambda s: s.str.startswith(needle),
        "endsWith": lambda s: s.str.endswith(needle),
    }
    if kind not in matchers:
        raise BadParameter(f"unknown text filter type {kind!r}")
    result = matchers[kind](text)
    # As in AG Grid, a missing value passes only the negative conditions.
    if kind in ("notContains", "notEqual"):
        return result | missing
    return result & ~missing


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadParameter(f"number filter needs a number in {name!r}")
    try:
        number = float(value)
    except ValueError as exc:
        raise BadParameter(f"number filter needs a number in {name!r}") from exc
    if math.isnan(number):
        raise BadParameter(f"number filter needs a number in {name!r}")
    return number


def _number_condition(values: pd.Series, condition: Mapping[str, Any]) -> pd.Series:
    kind = condition.get("type")
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    missing = numbers.isna()
    if kind == "blank":
        return missing
    if kind == "notBlank":
        return ~missing
    low = _number(condition.get("filter"), "filter")
    comparisons = {
        "equals": lambda s: s == low,
        "notEqual": lambda s: s != low,
        "lessThan": lambda s: s < low,
        "lessThanOrEqual": lambda s: s <= low,
        "greaterThan": lambda s: s > low,
        "greaterThanOrEqual": lambda s: s >= low,
    }
    if kind == "inRange":
        high = _number(condition.get("filterTo"), "filterTo")
        low, high = min(low, high), max(low, high)
        return (numbers > low) & (numbers < high) & ~missing
    if kind not in comparisons:
        raise BadParameter(f"unknown number filter type {kind!r}")
    result = comparisons[kind](numbers)
    return (result | missing) if kind == "notEqual" else (result & ~missing)


def _column_mask(values: pd.Series, model: Mapping[str, Any], column: str) -> pd.Series:
    if not isinstance(model, Mapping):
        raise BadParameter(f"filter for {column!r} must be an object")
    apply = {"text": _text_condition, "number": _number_condition}.get(model.get("filterType"))
    if apply is None:
        raise BadParameter(f"unsupported filterType {model.get('filterType')!r} for {column!r}")
    if "conditions" in model:
        conditions = model["conditions"]
        operator = model.get("operator", "AND")
        if not isinstance(conditions, list) or not conditions or operator not in ("AND", "OR"):
            raise BadParameter(f"filter for {column!r} needs conditions and AND or OR")
        masks = [apply(values, {**c, "filterType": model["filterType"]}) for c in conditions]
        combined = masks[0]
        for mask in masks[1:]:
            combined = (combined & mask) if operator == "AND" else (combined | mask)
        return combined
    return apply(values, model)


def apply_filter_model(frame: pd.DataFrame, filter_model: Mapping[str, Any]) -> pd.DataFrame:
    """Rows of ``frame`` that pass every column's filter (AG Grid text and number filters)."""
    if not isinstance(filter_model, Mapping):
        raise BadParameter("filter must be a JSON object of column filters")
    keep = pd.Series(True, index=frame.index)
    for column, model in filter_model.items():
        if column not in frame.columns:
            raise BadParameter(f"filter names an unknown column {column!r}")
        keep &= _column_mask(frame[column], model, column).fillna(False).astype(bool)
    return frame[keep]


def apply_sort(frame: pd.DataFrame, sort: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Sort like AG Grid: by each column in priority order, blanks first when ascending."""
    if not isinstance(sort, list):
        raise BadParameter("sort must be a JSON list of {colId, sort}")
    # Apply the keys from the least to the most significant with a stable sort.
    for entry in reversed(sort):
        if not isinstance(entry, Mapping):
            raise BadParameter("sort entries must be objects")
        column, direction = entry.get("colId"), entry.get("sort")
        if column not in frame.columns:
            raise BadParameter(f"sort names an unknown column {column!r}")
        if direction not in ("asc", "desc"):
            raise BadParameter(f"sort direction must be asc or desc, not {direction!r}")
        ascending = direction == "asc"
        frame = frame.sort_values(
            column,
            ascending=ascending,
            kind="stable",
            na_position="first" if ascending else "last",
        )
    return frame


def _json_param(args: Mapping[str, str], name: str) -> Any:
    raw = args.get(name)
    if raw in (None, ""):
        return None
    if len(raw) > MAX_FILTER_CHARS:
        raise BadParameter(f"{name} is longer than {MAX_FILTER_CHARS} characters")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadParameter(f"{name} is not valid JSON") from exc


# ---- CSV -------------------------------------------------------------------------------------


def neutralise(value: Any) -> Any:
    """A spreadsheet-safe cell: text that a spreadsheet would run as a formula gets a ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _money(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return _cell(value)
    return "" if math.isnan(float(value)) else f"{float(value):.2f}"


def _cell(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else repr(float(value))
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        return value.isoformat()
    return neutralise(value if isinstance(value, str | int) else str(value))


def csv_chunks(
    frame: pd.DataFrame, *, bom: bool = True, titles: Mapping[str, str] | None = None
) -> Iterator[str]:
    """The frame as RFC 4180 CSV text, a header and ``CHUNK_ROWS`` rows at a time."""
    columns = [csv_column(str(name), titles) for name in frame.columns]
    writers = [_money if column.money else _cell for column in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow([neutralise(column.header) for column in columns])
    yield (BOM if bom else "") + buffer.getvalue()
    for start in range(0, len(frame), CHUNK_ROWS):
        buffer.seek(0)
        buffer.truncate()
        chunk = frame.iloc[start : start + CHUNK_ROWS]
        for row in chunk.itertuples(index=False, name=None):
            writer.writerow([write(value) for write, value in zip(writers, row, strict=True)])
        yield buffer.getvalue()


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def export_filename(view_name: str, view: ViewState, spec: ExportView, *, filtered: bool) -> str:
    parts = [view_name]
    if "range" in spec.params:
        parts.append(f"{view.start.isoformat()}_{view.end.isoformat()}")
    for name in spec.params:
        value = getattr(view, name, None) if name != "range" else None
        if value:
            text = value.isoformat() if isinstance(value, dt.date) else str(value)
            parts.append(f"{name}-{text}")
    if filtered:
        parts.append("filtered")
    return _UNSAFE_NAME.sub("-", "_".join(parts)).strip("-") + ".csv"


# ---- the route --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportData:
    """One export as asked: the rows, and what they came from (for the Inspect view)."""

    frame: pd.DataFrame
    name: str  # the file name
    spec: ExportView
    view: ViewState
    query: Query
    provenance: Provenance
    # The data version asked for (the panel's), or None for the current data.
    pinned: str | None
    filter_model: Any
    sort: Any


def build_export(
    services: Services, view_name: str, args: Mapping[str, str], today: dt.date
) -> tuple[pd.DataFrame, str]:
    """The rows and file name of one export; raises ``ExportRefused`` or ``BadParameter``."""
    data = export_data(services, view_name, args, today)
    return data.frame, data.name


def export_data(
    services: Services, view_name: str, args: Mapping[str, str], today: dt.date
) -> ExportData:
    """What one export holds and where it came from; raises ``ExportRefused`` or
    ``BadParameter`` (and ``ValueError`` for a query refusing its parameters)."""
    spec = EXPORT_VIEWS.get(view_name)
    if spec is None:
        raise ExportRefused(404, f"Unknown export {view_name!r}. Known: {', '.join(EXPORT_VIEWS)}")
    unknown = sorted(set(args) - ALLOWED_PARAMS)
    if unknown:
        raise BadParameter(f"unknown parameter(s): {', '.join(unknown)}")
    for name in args:
        if len(args.getlist(name) if hasattr(args, "getlist") else [args[name]]) > 1:
            raise BadParameter(f"{name} is given more than once")
    view = parse_view_state(args, today, strict=True)
    filter_model = _json_param(args, "filter")
    sort = _json_param(args, "sort")
    query = spec.query(view)
    version = args.get("version") or None
    if version is not None and len(version) > MAX_VERSION_CHARS:
        raise BadParameter(f"version is longer than {MAX_VERSION_CHARS} characters")
    try:
        if version is None:
            result = services.data.fetch(query)
        else:
            result = services.data.fetch_at(query, version)
    except NoData as exc:
        raise ExportRefused(503, f"The data is unreachable right now: {exc}") from exc
    except VersionGone as exc:
        current = {name: args[name] for name in args if name != "version"}
        current_href = f"/export/{view_name}.csv" + (f"?{urlencode(current)}" if current else "")
        raise PinnedVersionGone(version, current_href) from exc
    frame = result.data
    if spec.transform is not None:
        frame = spec.transform(frame)
    try:
        if filter_model:
            frame = apply_filter_model(frame, filter_model)
        if sort:
            frame = apply_sort(frame, sort)
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        # A hand-made filter or sort the grid would never send: refuse it, clearly.
        raise BadParameter(f"filter or sort not understood: {exc}") from exc
    limit = services.settings.export_row_limit
    if len(frame) > limit:
        raise ExportRefused(
            413,
            f"This export has {len(frame):,} rows; the limit is {limit:,} (EXPORT_ROW_LIMIT). "
            "Narrow the time range or filter the table, then export again.",
        )
    name = export_filename(view_name, view, spec, filtered=bool(filter_model))
    return ExportData(
        frame, name, spec, view, query, result.provenance, version, filter_model, sort
    )


def _text_response(status: int, message: str) -> Response:
    return Response(message + "\n", status=status, mimetype="text/plain")


def _version_gone_page(refusal: PinnedVersionGone) -> Response:
    """A page, not a file: the browser shows why, and the link to the current data."""
    href = escape(refusal.current_href)
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>This export no longer matches the screen</title></head><body>"
        "<h1>This export no longer matches the screen</h1>"
        f"<p>{escape(refusal.explanation)}</p>"
        f'<p><a href="{href}">Download the current data</a> (it may differ from what the '
        "page showed), or go back and reload the page to see the current data first.</p>"
        "</body></html>"
    )
    response = Response(body, status=refusal.status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def blueprint(services: Services) -> Blueprint:
    exports = Blueprint("export", __name__)

    @exports.get("/export/<view_name>.csv")
    @require_role(EXPORT_ROLE)
    def export_csv(view_name: str) -> Response:
        try:
            frame, name = build_export(
                services, view_name, request.args, dt.datetime.now(dt.UTC).date()
            )
        except BadParameter as exc:
            return _text_response(400, f"Bad export request: {exc}")
        except PinnedVersionGone as exc:
            return _version_gone_page(exc)
        except ExportRefused as exc:
            return _text_response(exc.status, exc.message)
        except ValueError as exc:  # a query refusing its parameters, e.g. a range too long
            return _text_response(400, f"Bad export request: {exc}")
        audit("export", view=view_name, filters=dict(request.args), rows=len(frame), file=name)
        spec = EXPORT_VIEWS[view_name]
        response = Response(stream_with_context(csv_chunks(frame, titles=spec.titles)))
        response.headers["Content-Type"] = "text/csv; charset=utf-8; header=present"
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        response.headers["X-Export-Rows"] = str(len(frame))
        response.headers["Cache-Control"] = "no-store"
        return response

    return exports
