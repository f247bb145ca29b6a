"""Pure builders: a query's DataFrame in, a plotly figure dict (or plain tile data) out.

No I/O and no ``go.Figure``: a plain dict costs a fraction of a figure object to build and to
serialise, and the poll path keeps built dicts per data version. Figures carry no colours of
the page theme; the browser applies the light or dark template (assets/mission-control.js).
"""

from __future__ import annotations

import datetime as dt
import math
import zlib
from collections.abc import Sequence
from typing import Any

import pandas as pd

Figure = dict[str, Any]

# Sixteen hues far enough apart to tell categories apart in light and dark.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#76b7b2",
    "#ff9da7",
    "#9c755f",
    "#79706e",
    "#2f4b7c",
    "#a5d36c",
    "#d45087",
    "#b6992d",
    "#8fc1e8",
    "#6a3d9a",
)
ACCENT = "#3b6fd4"
MUTED = "rgba(127,127,127,0.35)"
CURRENCY = "$"


# ---- formatting -------------------------------------------------------------------------------


def format_money(value: float) -> str:
    if abs(value) >= 10_000:
        return f"{CURRENCY}{value:,.0f}"
    return f"{CURRENCY}{value:,.2f}"


def format_duration(seconds: float) -> str:
    """``2 h 05 min``, ``14 min``, ``45 s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min"
    return f"{seconds} s"


def format_change(change: float | None) -> str:
    if change is None or (isinstance(change, float) and math.isnan(change)):
        return "no earlier data"
    sign = "+" if change > 0 else "\u2212" if change < 0 else "\u00b1"
    return f"{sign}{abs(change) * 100:.1f}%"


def _num(values: pd.Series) -> list:
    """Numbers as JSON-safe Python values (NaN becomes None)."""
    return [None if pd.isna(v) else v for v in values.astype("float64").tolist()]


def _ints(values: pd.Series) -> list[int]:
    return [int(v) for v in values.tolist()]


def _text(values: pd.Series) -> list[str]:
    return [str(v) for v in values.astype(object).tolist()]


def category_colors(categories: Sequence[str]) -> dict[str, str]:
    """One colour per category, the same in every chart where the palette allows.

    A category's colour comes from a stable hash of its name; when two names of one chart
    land on the same colour, the later (by name) takes the next free one.
    """
    colors: dict[str, str] = {}
    taken: set[int] = set()
    for name in sorted(set(categories)):
        slot = zlib.crc32(name.encode()) % len(PALETTE)
        while slot in taken and len(taken) < len(PALETTE):
            slot = (slot + 1) % len(PALETTE)
        taken.add(slot)
        colors[name] = PALETTE[slot]
    return colors


# ---- layout helpers ---------------------------------------------------------------------------


def _layout(**overrides: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "margin": {"l": 56, "r": 16, "t": 12, "b": 40},
        "showlegend": False,
        "hovermode": "closest",
        "bargap": 0.25,
        "xaxis": {"showgrid": False, "zeroline": False, "automargin": True},
        "yaxis": {"zeroline": False, "automargin": True, "rangemode": "tozero"},
        "uirevision": "keep",  # zoom and hidden traces survive a data refresh
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(layout.get(key), dict):
            layout[key] = {**layout[key], **value}
        else:
            layout[key] = value
    return layout


def no_data_figure(message: str = "No data for this selection") -> Figure:
    """An empty chart that says why it is empty."""
    return {
        "data": [],
        "layout": _layout(
            xaxis={"visible": False},
            yaxis={"visible": False},
            annotations=[
                {
                    "text": message,
                    "showarrow": False,
                    "xref": "paper",
                    "yref": "paper",
                    "x": 0.5,
                    "y": 0.5,
                    "font": {"size": 15},
                    "opacity": 0.7,
                }
            ],
            meta={"empty": True},
        ),
    }


def is_no_data(figure: Figure) -> bool:
    return bool(figure.get("layout", {}).get("meta", {}).get("empty"))


# ---- overview ---------------------------------------------------------------------------------

_KPI_FORMATS = {
    "revenue": format_money,
    "orders": lambda v: f"{v:,.0f}",
    "aov": format_money,
    "conversion": lambda v: f"{v * 100:.2f}%",
    "dau": lambda v: f"{v:,.0f}",
    "mau": lambda v: f"{v:,.0f}",
}


# Two populations share the word "active": shop visitors (Overview) and screen-time devices,
# one per customer (Screen time). Labels name which one a number counts.
SHOP_USER_LABELS = {"dau": "Shop daily active users", "mau": "Shop monthly active users"}
ACTIVE_DEVICES_LABEL = "Active devices (customers)"


def kpi_tiles(kpis: pd.DataFrame) -> list[dict[str, Any]]:
    """One tile per KPI row: formatted value, previous value and change against it."""
    tiles = []
    for row in kpis.to_dict("records"):
        fmt = _KPI_FORMATS.get(row["metric"], lambda v: f"{v:,.2f}")
        change = row.get("change")
        if change is not None and pd.isna(change):
            change = None
        direction = "flat" if not change else ("up" if change > 0 else "down")
        tiles.append(
            {
                "metric": row["metric"],
                "label": SHOP_USER_LABELS.get(row["metric"], row["label"]),
                "value": fmt(float(row["value"])),
                "previous": fmt(float(row["previous"])),
                "change": format_change(change),
                "direction": direction if change is not None else "none",
            }
        )
    return tiles


def revenue_trend(daily: pd.DataFrame) -> Figure:
    """Revenue per day as an area, orders as light bars on a second axis."""
    if daily.empty:
        return no_data_figure("No sales in this range")
    daily = daily.sort_values("day")
    days = _text(daily["day"])
    return {
        "data": [
            {
                "type": "bar",
                "name": "Orders (right axis)",
                "x": days,
                "y": _ints(daily["orders"]),
                "yaxis": "y2",
                "marker": {"color": MUTED},
                "hovertemplate": "%{y:,} orders<extra></extra>",
            },
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "Revenue",
                "x": days,
                "y": _num(daily["revenue"]),
                "line": {"color": ACCENT, "width": 3, "shape": "spline", "smoothing": 0.4},
                "fill": "tozeroy",
                "fillcolor": "rgba(59,111,212,0.12)",
                "marker": {"size": 6},
                "hovertemplate": CURRENCY + "%{y:,.2f} revenue<extra></extra>",
            },
        ],
        "layout": _layout(
            # The unified hover's heading is the day; each series' line carries its unit.
            xaxis={"hoverformat": "%a %d %b %Y"},
            yaxis={
                "tickprefix": CURRENCY,
                "tickformat": ",.0f",
                "title": {"text": f"Revenue ({CURRENCY})"},
            },
            yaxis2={
                "overlaying": "y",
                "side": "right",
                "showgrid": False,
                "rangemode": "tozero",
                "tickmode": "auto",
                "tickformat": ",d",
                "title": {"text": "Orders"},
            },
            margin={"r": 56, "t": 36},
            hovermode="x unified",
            showlegend=True,
            legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
        ),
    }


def top_products(products: pd.DataFrame, limit: int = 5) -> Figure:
    if products.empty:
        return no_data_figure("No products sold in this range")
    top = products.sort_values("revenue", ascending=False).head(limit).iloc[::-1]
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": _num(top["revenue"]),
                "y": _text(top["product_name"]),
                "customdata": [
                    [c, int(o)] for c, o in zip(_text(top["category"]), top["orders"], strict=True)
                ],
                "text": [format_money(v) for v in top["revenue"].tolist()],
                "textposition": "auto",
                "marker": {"color": ACCENT},
                "hovertemplate": "%{y}<br>%{customdata[0]}<br>"
                + CURRENCY
                + "%{x:,.2f} from %{customdata[1]:,} orders<extra></extra>",
            }
        ],
        "layout": _layout(
            xaxis={"tickprefix": CURRENCY, "tickformat": ",.0f", "showgrid": True},
            yaxis={"automargin": True},
            margin={"l": 8},
        ),
    }


# ---- screen time: fleet -----------------------------------------------------------------------


def fleet_tiles(daily: pd.DataFrame) -> list[dict[str, Any]]:
    """Headline numbers for the fleet over the range."""
    if daily.empty:
        return [
            {"metric": m, "label": label, "value": "\u2013", "previous": "", "change": ""}
            | {"direction": "none"}
            for m, label in (
                ("active", ACTIVE_DEVICES_LABEL),
                ("screen_time", "Avg daily screen time"),
                ("pickups", "Avg daily pickups"),
                ("customer_days", "Customer-days"),
            )
        ]
    daily = daily.sort_values("day")
    latest = daily.iloc[-1]
    customer_days = int(daily["active_customers"].sum())
    avg_seconds = float(daily["total_seconds"].sum()) / customer_days if customer_days else 0.0
    pickups = (daily["avg_pickups"] * daily["active_customers"]).sum() / max(customer_days, 1)

    def tile(metric: str, label: str, value: str, note: str) -> dict[str, Any]:
        return {
            "metric": metric,
            "label": label,
            "value": value,
            "previous": note,
            "change": "",
            "direction": "none",
        }

    return [
        tile(
            "active",
            ACTIVE_DEVICES_LABEL,
            f"{int(latest['active_customers']):,}",
            f"on {latest['day']}",
        ),
        tile("screen_time", "Avg daily screen time", format_duration(avg_seconds), "per customer"),
        tile("pickups", "Avg daily pickups", f"{pickups:,.0f}", "per customer"),
        tile("customer_days", "Customer-days", f"{customer_days:,}", f"over {len(daily)} days"),
    ]


def fleet_activity(daily: pd.DataFrame) -> Figure:
    """Active customers per day (bars) and average screen time per active customer (line)."""
    if daily.empty:
        return no_data_figure("No screen time in this range")
    daily = daily.sort_values("day")
    days = _text(daily["day"])
    hours = (daily["avg_seconds"] / 3600).round(2)
    return {
        "data": [
            {
                "type": "bar",
                "name": ACTIVE_DEVICES_LABEL,
                "x": days,
                "y": _ints(daily["active_customers"]),
                "marker": {"color": MUTED},
                "hovertemplate": "%{x|%a %d %b}<br>%{y:,} active customers<extra></extra>",
            },
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "Avg screen time",
                "x": days,
                "y": _num(hours),
                "yaxis": "y2",
                "line": {"color": ACCENT, "width": 3},
                "hovertemplate": "%{x|%a %d %b}<br>%{y:.2f} h per customer<extra></extra>",
            },
        ],
        "layout": _layout(
            yaxis={"title": {"text": "Customers"}},
            yaxis2={
                "overlaying": "y",
                "side": "right",
                "showgrid": False,
                "rangemode": "tozero",
                "ticksuffix": " h",
                "tickmode": "auto",
                "title": {"text": "Screen time"},
            },
            margin={"r": 56},
            hovermode="x unified",
        ),
    }


def top_apps(apps: pd.DataFrame, limit: int = 10) -> Figure:
    if apps.empty:
        return no_data_figure("No app usage in this range")
    top = apps.sort_values("seconds", ascending=False).head(limit).iloc[::-1]
    colors = category_colors(_text(apps["category"]))
    hours = (top["seconds"] / 3600).round(1)
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": _num(hours),
                "y": _text(top["app_name"]),
                "customdata": _text(top["category"]),
                "marker": {"color": [colors[c] for c in _text(top["category"])]},
                "hovertemplate": "%{y} (%{customdata})<br>%{x:,.1f} h<extra></extra>",
            }
        ],
        "layout": _layout(
            xaxis={"ticksuffix": " h", "showgrid": True},
            yaxis={"automargin": True},
            margin={"l": 8},
        ),
    }


def category_split(apps: pd.DataFrame) -> pd.DataFrame:
    """Seconds and share of the total per category, largest first."""
    if apps.empty:
        return pd.DataFrame(
            {
                "category": pd.Series(dtype="object"),
                "seconds": pd.Series(dtype="int64"),
                "share": pd.Series(dtype="float64"),
            }
        )
    split = apps.groupby("category", as_index=False)["seconds"].sum()
    total = split["seconds"].sum()
    split["share"] = split["seconds"] / total if total else 0.0
    split["category"] = split["category"].astype(object)
    return split.sort_values(["seconds", "category"], ascending=[False, True]).reset_index(
        drop=True
    )


def category_donut(apps: pd.DataFrame) -> Figure:
    split = category_split(apps)
    if split.empty or split["seconds"].sum() == 0:
        return no_data_figure("No app usage in this range")
    colors = category_colors(_text(split["category"]))
    labels = _text(split["category"])
    return {
        "data": [
            {
                "type": "pie",
                "hole": 0.55,
                "labels": labels,
                "values": _num((split["seconds"] / 3600).round(1)),
                "marker": {"colors": [colors[c] for c in labels]},
                "sort": False,
                "textinfo": "percent",
                "textposition": "inside",
                "hovertemplate": "%{label}<br>%{value:,.1f} h (%{percent})<extra></extra>",
            }
        ],
        "layout": _layout(
            showlegend=True,
            legend={"orientation": "v", "x": 1.02, "y": 0.5},
            margin={"l": 8, "r": 8, "t": 8, "b": 8},
            uniformtext={"minsize": 11, "mode": "hide"},
        ),
    }


def hourly_usage(hours: pd.DataFrame) -> Figure:
    """Average minutes per active customer-day by local hour of day."""
    if hours.empty or float(hours["avg_seconds"].sum()) == 0:
        return no_data_figure("No screen time in this range")
    hours = hours.sort_values("hour")
    return {
        "data": [
            {
                "type": "bar",
                "x": _ints(hours["hour"]),
                "y": _num((hours["avg_seconds"] / 60).round(1)),
                "marker": {"color": ACCENT},
                "hovertemplate": "%{x}:00\u2013%{x}:59<br>%{y:.1f} min<extra></extra>",
            }
        ],
        "layout": _layout(
            xaxis={"dtick": 3, "tickmode": "linear", "tick0": 0, "title": {"text": "Local hour"}},
            yaxis={"ticksuffix": " min"},
        ),
    }


# ---- screen time: one customer ----------------------------------------------------------------


def customer_trend(trend: pd.DataFrame, selected_day: str | None = None) -> Figure:
    """One customer's daily screen time; the selected day stands out. Click a bar to drill in."""
    if trend.empty:
        return no_data_figure("No uploads from this customer in this range")
    trend = trend.sort_values("day")
    days = _text(trend["day"])
    colors = [ACCENT if day == selected_day or selected_day is None else MUTED for day in days]
    return {
        "data": [
            {
                "type": "bar",
                "x": days,
                "y": _num((trend["seconds"] / 3600).round(2)),
                "customdata": [
                    [int(s), int(p)]
                    for s, p in zip(trend["sessions"], trend["pickups"], strict=True)
                ],
                "marker": {"color": colors},
                "hovertemplate": "%{x|%a %d %b}<br>%{y:.2f} h, %{customdata[0]:,} sessions, "
                "%{customdata[1]:,} pickups<br><i>click for the day</i><extra></extra>",
            }
        ],
        "layout": _layout(yaxis={"ticksuffix": " h"}, xaxis={"type": "date"}, clickmode="event"),
    }


def customer_day_apps(rows: pd.DataFrame, limit: int = 15) -> Figure:
    """A customer-day's minutes per app."""
    if rows.empty or int(rows["seconds"].sum()) == 0:
        return no_data_figure("No screen time on this day")
    per_app = (
        rows.groupby(["app_name", "category"], as_index=False)[["seconds", "sessions"]]
        .sum()
        .sort_values("seconds", ascending=False)
        .head(limit)
        .iloc[::-1]
    )
    colors = category_colors(_text(rows["category"]))
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": _num((per_app["seconds"] / 60).round(1)),
                "y": _text(per_app["app_name"]),
                "customdata": [
                    [c, int(s)]
                    for c, s in zip(_text(per_app["category"]), per_app["sessions"], strict=True)
                ],
                "marker": {"color": [colors[c] for c in _text(per_app["category"])]},
                "hovertemplate": "%{y} (%{customdata[0]})<br>%{x:.1f} min in "
                "%{customdata[1]} sessions<extra></extra>",
            }
        ],
        "layout": _layout(
            xaxis={"ticksuffix": " min", "showgrid": True},
            yaxis={"automargin": True},
            margin={"l": 8},
        ),
    }


def customer_day_hours(rows: pd.DataFrame) -> Figure:
    """A customer-day's minutes per hour, stacked by category."""
    if rows.empty or int(rows["seconds"].sum()) == 0:
        return no_data_figure("No screen time on this day")
    table = rows.pivot_table(
        index="hour", columns="category", values="seconds", aggfunc="sum", fill_value=0
    ).reindex(range(24), fill_value=0)
    colors = category_colors([str(c) for c in table.columns])
    traces = [
        {
            "type": "bar",
            "name": str(category),
            "x": list(range(24)),
            "y": _num((table[category] / 60).round(1)),
            "marker": {"color": colors[str(category)]},
            "hovertemplate": "%{x}:00 " + str(category) + "<br>%{y:.1f} min<extra></extra>",
        }
        for category in sorted(table.columns, key=str)
    ]
    return {
        "data": traces,
        "layout": _layout(
            barmode="stack",
            showlegend=True,
            legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
            xaxis={"dtick": 3, "tick0": 0, "tickmode": "linear", "title": {"text": "Local hour"}},
            yaxis={"ticksuffix": " min"},
            margin={"t": 8},
        ),
    }


# ---- revenue ----------------------------------------------------------------------------------


def _week_label(week: str) -> str:
    return dt.date.fromisoformat(week).strftime("%d %b")


def days_in_range(week: str, start: dt.date | None, end: dt.date | None) -> int:
    """How many of the week's seven days (from its Monday) fall in ``start``..``end``."""
    monday = dt.date.fromisoformat(week)
    first = max(monday, start) if start else monday
    last = min(monday + dt.timedelta(days=6), end) if end else monday + dt.timedelta(days=6)
    return max(0, (last - first).days + 1)


def weekly_revenue(
    weekly: pd.DataFrame,
    selected_week: str | None = None,
    selected_category: str | None = None,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> Figure:
    """Revenue per week stacked by category. Click a segment to see that week's orders.

    A week the range ``start``..``end`` cuts short is drawn lighter and its hover says how
    many days it holds, so a short first or last week does not read as a drop.
    """
    if weekly.empty:
        return no_data_figure("No sales in this range")
    weeks = sorted({str(w) for w in weekly["week"]})
    days = {week: days_in_range(week, start, end) for week in weeks}
    categories = sorted({str(c) for c in weekly["category"]})
    colors = category_colors(categories)
    table = weekly.pivot_table(
        index="week", columns="category", values="revenue", aggfunc="sum", fill_value=0.0
    )
    table.index = table.index.astype(str)
    table = table.reindex(weeks, fill_value=0.0)

    def opacity(week: str, category: str) -> float:
        partial = 0.45 if days[week] < 7 else 1.0
        if selected_week is None:
            return partial
        if week != selected_week:
            return 0.35 * partial
        return (1.0 if selected_category in (None, category) else 0.6) * partial

    traces = []
    for category in categories:
        values = table[category] if category in table else pd.Series(0.0, index=weeks)
        traces.append(
            {
                "type": "bar",
                "name": category,
                "x": weeks,
                "y": _num(values.round(2)),
                "customdata": [category] * len(weeks),
                "hovertext": [
                    f"<br>partial week: {days[w]} day{'s' if days[w] != 1 else ''}"
                    if days[w] < 7
                    else ""
                    for w in weeks
                ],
                "marker": {
                    "color": colors[category],
                    "opacity": [opacity(w, category) for w in weeks],
                },
                "hovertemplate": "Week of %{x}<br>%{customdata}: "
                + CURRENCY
                + "%{y:,.2f}%{hovertext}<br><i>click for the orders</i><extra></extra>",
            }
        )
    return {
        "data": traces,
        "layout": _layout(
            barmode="stack",
            showlegend=True,
            legend={"orientation": "h", "y": -0.18},
            xaxis={
                "type": "category",
                "tickmode": "array",
                "tickvals": weeks,
                "ticktext": [_week_label(week) for week in weeks],
            },
            yaxis={"tickprefix": CURRENCY, "tickformat": ",.0f"},
            margin={"b": 64},
            clickmode="event",
        ),
    }


def category_revenue(products: pd.DataFrame) -> Figure:
    """Revenue share per product category."""
    if products.empty:
        return no_data_figure("No sales in this range")
    split = (
        products.groupby("category", as_index=False)["revenue"]
        .sum()
        .sort_values("revenue", ascending=False)
    )
    labels = _text(split["category"])
    colors = category_colors(labels)
    return {
        "data": [
            {
                "type": "pie",
                "hole": 0.55,
                "labels": labels,
                "values": _num(split["revenue"].round(2)),
                "marker": {"colors": [colors[c] for c in labels]},
                "sort": False,
                "textinfo": "percent",
                "textposition": "inside",
                "hovertemplate": "%{label}<br>" + CURRENCY + "%{value:,.2f} (%{percent})"
                "<extra></extra>",
            }
        ],
        "layout": _layout(
            showlegend=True,
            legend={"orientation": "v", "x": 1.02, "y": 0.5},
            margin={"l": 8, "r": 8, "t": 8, "b": 8},
            uniformtext={"minsize": 11, "mode": "hide"},
        ),
    }


# ---- tables -----------------------------------------------------------------------------------


def grid_records(frame: pd.DataFrame, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows for a grid: JSON-safe values, NaN as None, at most ``limit`` rows."""
    if limit is not None:
        frame = frame.head(limit)
    clean = frame.astype(object).where(frame.notna(), None)
    return clean.to_dict("records")


ALERT_SEVERITIES = (("error", "Errors"), ("warning", "Warnings"), ("info", "Info"))


def alert_tiles(alerts: pd.DataFrame) -> list[dict[str, Any]]:
    """Open alerts by severity, with how many of them are not yet acknowledged."""
    open_alerts = alerts[alerts["status"] == "open"] if len(alerts) else alerts
    tiles = []
    for severity, label in ALERT_SEVERITIES:
        rows = open_alerts[open_alerts["severity"] == severity] if len(open_alerts) else []
        unacknowledged = int(rows["acknowledged_at"].isna().sum()) if len(rows) else 0
        tiles.append(
            {
                "metric": f"alerts-{severity}",
                "label": f"{label} open",
                "value": f"{len(rows):,}",
                "previous": f"{unacknowledged:,} not acknowledged" if len(rows) else "none",
                "change": "",
                "direction": "none",
            }
        )
    return tiles
