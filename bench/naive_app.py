"""The baseline: the overview and screen-time views written the usual Dash way.

One ``dcc.Interval`` drives every panel; each callback reads its Parquet files from the lake
with ``pandas.read_parquet`` and builds a ``go.Figure`` on every tick. No cache, no data
version, no ``no_update``. It reads the same rollup and per-customer files as the real app
(a first version written against the raw events would be slower still), so the comparison
isolates what the real app's poll path saves: repeated reads and figure builds.

Served by gunicorn as ``bench.naive_app:create_naive_app()``; the lake folder comes from
``LAKE_ROOT`` when the factory runs. ``create_naive_app(memo_seconds=5)`` is the competent
version of the same app: every lake read goes through flask-caching's ``memoize`` (a
per-worker ``SimpleCache``, ``timeout=5``), as the Dash documentation's caching example does.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from urllib.parse import parse_qs

import dash
import dash_ag_grid as dag
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html
from flask import Flask, jsonify

RANGE_DAYS = {"today": 1, "7d": 7, "30d": 30, "90d": 90}
# Panel name -> (component id, property): the outputs the bench polls on each page.
OVERVIEW_PANELS = {
    "kpis": ("naive-kpis", "children"),
    "revenue": ("naive-revenue", "figure"),
    "products": ("naive-products", "figure"),
}
FLEET_PANELS = {
    "fleet-tiles": ("naive-fleet-tiles", "children"),
    "fleet-activity": ("naive-fleet-activity", "figure"),
    "fleet-categories": ("naive-fleet-categories", "figure"),
    "fleet-apps": ("naive-fleet-apps", "figure"),
    "fleet-hours": ("naive-fleet-hours", "figure"),
}
CUSTOMER_PANELS = {
    "customer-trend": ("naive-customer-trend", "figure"),
    "customer-day-apps": ("naive-day-apps", "figure"),
    "customer-day-hours": ("naive-day-hours", "figure"),
    "customer-sessions": ("naive-sessions", "rowData"),
}
POLL_ID, URL_ID, PAGE_ID = "poll", "url", "page"


def _view(search: str | None) -> tuple[dt.date, dt.date, str | None, dt.date | None]:
    """First and last day, customer and day from the query string (the real app's names)."""
    params = {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items()}
    end = dt.datetime.now(dt.UTC).date()
    start = end - dt.timedelta(days=RANGE_DAYS.get(params.get("range", "7d"), 7) - 1)
    day = dt.date.fromisoformat(params["day"]) if "day" in params else None
    return start, end, params.get("customer"), day


def _dates(start: dt.date, end: dt.date) -> list[str]:
    return [(start + dt.timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


class NaiveLake:
    """Reads Parquet the way a first version does: one ``read_parquet`` per file, then concat."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def frames(self, paths: list[Path], columns: list[str] | None = None) -> pd.DataFrame:
        found = [pd.read_parquet(path, columns=columns) for path in paths if path.is_file()]
        return pd.concat(found, ignore_index=True) if found else pd.DataFrame()

    def business(self, table: str, days: list[str]) -> pd.DataFrame:
        return self.frames([self.root / f"rollups/business/date={d}/{table}.parquet" for d in days])

    def fleet(self, table: str, days: list[str]) -> pd.DataFrame:
        paths = [self.root / f"rollups/screen_time/date={d}/{table}.parquet" for d in days]
        return self.frames(paths)

    def customer(self, customer: str, days: list[str]) -> pd.DataFrame:
        frames = []
        for day in days:
            path = self.root / f"processed/screen_time/{customer}/{day}/aggregated.parquet"
            if path.is_file():
                frame = pd.read_parquet(path)
                frame["day"] = day
                frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def raw_upload(self, customer: str, day: dt.date) -> dict | None:
        path = self.root / f"raw/screen_time/{customer}/{day}.json"
        return json.loads(path.read_text()) if path.is_file() else None


def _tiles(values: list[tuple[str, str]]) -> list:
    return [
        html.Div([html.Div(label, className="label"), html.Div(value, className="value")])
        for label, value in values
    ]


def _overview_layout() -> html.Div:
    return html.Div(
        [
            html.H1("Overview"),
            html.Div(id="naive-kpis"),
            dcc.Graph(id="naive-revenue"),
            dcc.Graph(id="naive-products"),
        ]
    )


def _screen_time_layout(search: str | None) -> html.Div:
    _, _, customer, day = _view(search)
    children: list = [
        html.H1("Screen time"),
        html.Div(id="naive-fleet-tiles"),
        dcc.Graph(id="naive-fleet-activity"),
        dcc.Graph(id="naive-fleet-categories"),
        dcc.Graph(id="naive-fleet-apps"),
        dcc.Graph(id="naive-fleet-hours"),
    ]
    if customer:
        children.append(dcc.Graph(id="naive-customer-trend"))
    if customer and day:
        children += [
            dcc.Graph(id="naive-day-apps"),
            dcc.Graph(id="naive-day-hours"),
            dag.AgGrid(
                id="naive-sessions",
                columnDefs=[
                    {"field": f}
                    for f in ("start", "end", "app_name", "category", "pickups", "notifications")
                ],
            ),
        ]
    return html.Div(children)


def _memoized(lake: NaiveLake, server: Flask, seconds: int) -> NaiveLake:
    """The lake's reads through flask-caching's ``memoize`` for ``seconds``."""
    from flask_caching import Cache

    cache = Cache(server, config={"CACHE_TYPE": "SimpleCache", "CACHE_THRESHOLD": 2000})
    for name in ("business", "fleet", "customer", "raw_upload"):
        setattr(lake, name, cache.memoize(timeout=seconds)(getattr(lake, name)))
    return lake


def create_naive_app(
    lake_root: str | None = None, lake: NaiveLake | None = None, memo_seconds: int = 0
) -> Flask:
    """The baseline app over ``lake`` (default: a ``NaiveLake`` at ``lake_root``/LAKE_ROOT);
    with ``memo_seconds``, its reads are memoized that long."""
    if lake is None:
        lake = NaiveLake(Path(lake_root or os.environ.get("LAKE_ROOT", "var/lake")))
    server = Flask(__name__)
    if memo_seconds:
        lake = _memoized(lake, server, memo_seconds)

    @server.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    app = dash.Dash(__name__, server=server, suppress_callback_exceptions=True)
    app.layout = html.Div(
        [
            dcc.Location(id=URL_ID),
            dcc.Interval(id=POLL_ID, interval=5000),
            html.Div(id=PAGE_ID),
        ]
    )

    @app.callback(Output(PAGE_ID, "children"), Input(URL_ID, "pathname"), State(URL_ID, "search"))
    def render(pathname, search):
        return _screen_time_layout(search) if pathname == "/screen-time" else _overview_layout()

    def poll_callback(component: str, prop: str):
        return app.callback(
            Output(component, prop), Input(POLL_ID, "n_intervals"), State(URL_ID, "search")
        )

    # ---- overview ----

    def totals(start: dt.date, end: dt.date) -> dict[str, float]:
        stats = lake.business("stats", _dates(start, end))
        users = lake.business("users", _dates(end - dt.timedelta(days=29), end))
        if stats.empty:
            return dict.fromkeys(("revenue", "orders", "aov", "conversion", "dau", "mau"), 0.0)
        revenue, orders = float(stats["revenue"].sum()), int(stats["orders"].sum())
        visitors = float(stats["visitors"].sum())
        return {
            "revenue": revenue,
            "orders": orders,
            "aov": revenue / orders if orders else 0.0,
            "conversion": float(stats["buyers"].sum()) / visitors if visitors else 0.0,
            "dau": float(stats["dau"].mean()),
            "mau": float(users["user_id"].nunique()) if not users.empty else 0.0,
        }

    @poll_callback(*OVERVIEW_PANELS["kpis"])
    def kpis(_n, search):
        start, end, _, _ = _view(search)
        span = end - start + dt.timedelta(days=1)
        now, before = totals(start, end), totals(start - span, start - dt.timedelta(days=1))
        return _tiles(
            [
                (
                    name,
                    f"{now[name]:,.2f} ({(now[name] - before[name]) / before[name]:+.1%})"
                    if before[name]
                    else f"{now[name]:,.2f}",
                )
                for name in now
            ]
        )

    @poll_callback(*OVERVIEW_PANELS["revenue"])
    def revenue(_n, search):
        start, end, _, _ = _view(search)
        stats = lake.business("stats", _dates(start, end))
        figure = go.Figure()
        if not stats.empty:
            stats = stats.sort_values("day")
            figure.add_bar(x=stats["day"], y=stats["orders"], name="Orders", yaxis="y2")
            figure.add_scatter(x=stats["day"], y=stats["revenue"], name="Revenue", fill="tozeroy")
        figure.update_layout(
            yaxis2={"overlaying": "y", "side": "right"}, hovermode="x unified", height=340
        )
        return figure

    @poll_callback(*OVERVIEW_PANELS["products"])
    def products(_n, search):
        start, end, _, _ = _view(search)
        sold = lake.business("products", _dates(start, end))
        figure = go.Figure()
        if not sold.empty:
            top = (
                sold.groupby("product_name", as_index=False)["revenue"]
                .sum()
                .nlargest(5, "revenue")
                .iloc[::-1]
            )
            figure.add_bar(x=top["revenue"], y=top["product_name"], orientation="h")
        figure.update_layout(height=340)
        return figure

    # ---- screen time: fleet ----

    def fleet_daily(search: str | None) -> pd.DataFrame:
        start, end, _, _ = _view(search)
        rows = lake.fleet("customers", _dates(start, end))
        if rows.empty:
            return rows
        active = rows[rows["seconds"] > 0]
        return (
            active.groupby("day")
            .agg(
                active=("customer_id", "nunique"),
                seconds=("seconds", "mean"),
                pickups=("pickups", "mean"),
            )
            .reset_index()
        )

    @poll_callback(*FLEET_PANELS["fleet-tiles"])
    def fleet_tiles(_n, search):
        daily = fleet_daily(search)
        if daily.empty:
            return _tiles([("Active customers", "-")])
        return _tiles(
            [
                ("Active customers", f"{int(daily['active'].iloc[-1]):,}"),
                ("Avg daily screen time", f"{daily['seconds'].mean() / 3600:.1f} h"),
                ("Avg daily pickups", f"{daily['pickups'].mean():.0f}"),
                ("Customer-days", f"{int(daily['active'].sum()):,}"),
            ]
        )

    @poll_callback(*FLEET_PANELS["fleet-activity"])
    def fleet_activity(_n, search):
        daily = fleet_daily(search)
        figure = go.Figure()
        if not daily.empty:
            figure.add_bar(x=daily["day"], y=daily["active"], name="Active customers")
            figure.add_scatter(x=daily["day"], y=daily["seconds"] / 3600, yaxis="y2", name="h")
        figure.update_layout(yaxis2={"overlaying": "y", "side": "right"}, height=320)
        return figure

    def fleet_apps(search: str | None) -> pd.DataFrame:
        start, end, _, _ = _view(search)
        apps = lake.fleet("apps", _dates(start, end))
        if apps.empty:
            return apps
        return apps.groupby(["app_name", "category"], as_index=False)["seconds"].sum()

    @poll_callback(*FLEET_PANELS["fleet-categories"])
    def fleet_categories(_n, search):
        apps = fleet_apps(search)
        figure = go.Figure()
        if not apps.empty:
            split = apps.groupby("category", as_index=False)["seconds"].sum()
            figure.add_pie(labels=split["category"], values=split["seconds"] / 3600, hole=0.55)
        figure.update_layout(height=320)
        return figure

    @poll_callback(*FLEET_PANELS["fleet-apps"])
    def top_apps(_n, search):
        apps = fleet_apps(search)
        figure = go.Figure()
        if not apps.empty:
            top = apps.nlargest(10, "seconds").iloc[::-1]
            figure.add_bar(x=top["seconds"] / 3600, y=top["app_name"], orientation="h")
        figure.update_layout(height=360)
        return figure

    @poll_callback(*FLEET_PANELS["fleet-hours"])
    def fleet_hours(_n, search):
        start, end, _, _ = _view(search)
        days = _dates(start, end)
        hours = lake.fleet("hours", days)
        customers = lake.fleet("customers", days)
        figure = go.Figure()
        if not hours.empty and not customers.empty:
            active_days = max(1, int((customers["seconds"] > 0).sum()))
            per_hour = hours.groupby("hour")["seconds"].sum() / active_days / 60
            figure.add_bar(x=per_hour.index, y=per_hour.values)
        figure.update_layout(height=360)
        return figure

    # ---- screen time: one customer ----

    @poll_callback(*CUSTOMER_PANELS["customer-trend"])
    def customer_trend(_n, search):
        start, end, customer, _ = _view(search)
        rows = lake.customer(customer, _dates(start, end)) if customer else pd.DataFrame()
        figure = go.Figure()
        if not rows.empty:
            per_day = rows.groupby("day", as_index=False)["seconds"].sum()
            figure.add_bar(x=per_day["day"], y=per_day["seconds"] / 3600)
        figure.update_layout(height=280, xaxis={"type": "date"})
        return figure

    def customer_day(search: str | None) -> pd.DataFrame:
        _, _, customer, day = _view(search)
        if not (customer and day):
            return pd.DataFrame()
        rows = lake.customer(customer, [day.isoformat()])
        names = lake.fleet("apps", [day.isoformat()])
        if rows.empty or names.empty:
            return rows
        names = names[["app_id", "app_name", "category"]].drop_duplicates("app_id")
        rows = rows.merge(names, on="app_id", how="left")
        rows["hour"] = rows["hour"] % 24
        return rows

    @poll_callback(*CUSTOMER_PANELS["customer-day-apps"])
    def day_apps(_n, search):
        rows = customer_day(search)
        figure = go.Figure()
        if not rows.empty:
            per_app = rows.groupby("app_name", as_index=False)["seconds"].sum()
            per_app = per_app.nlargest(15, "seconds").iloc[::-1]
            figure.add_bar(x=per_app["seconds"] / 60, y=per_app["app_name"], orientation="h")
        figure.update_layout(height=360)
        return figure

    @poll_callback(*CUSTOMER_PANELS["customer-day-hours"])
    def day_hours(_n, search):
        rows = customer_day(search)
        figure = go.Figure()
        if not rows.empty:
            table = rows.pivot_table(
                index="hour", columns="category", values="seconds", aggfunc="sum", fill_value=0
            )
            for category in table.columns:
                figure.add_bar(x=table.index, y=table[category] / 60, name=str(category))
        figure.update_layout(barmode="stack", height=360)
        return figure

    @poll_callback(*CUSTOMER_PANELS["customer-sessions"])
    def sessions(_n, search):
        _, _, customer, day = _view(search)
        body = lake.raw_upload(customer, day) if customer and day else None
        if body is None:
            return []
        return [
            {
                "start": s["start"],
                "end": s["end"],
                "app_name": s["app_name"],
                "category": s["category"],
                "pickups": s["pickups"],
                "notifications": s["notifications"],
            }
            for s in body.get("sessions", [])
        ]

    return server
