"""The Dash app through Flask's test client, over a tiny lake built by the real pipeline.

Pages render through the pages router callback; panel callbacks answer the way the browser
asks them (POST /_dash-update-component): data first, then 204 (no_update) while the data
version stays the same or while a tab polls faster than the floor.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode

import pytest

from dashboard import create_app, figures
from dashboard.components import url_state
from dashboard.components.url_state import parse_view_state
from data_access.factory import build_stores
from data_access.queries import CustomerSessionsQuery, KpiSummaryQuery
from data_access.service import NoData
from data_access.settings import DataSettings
from pipeline.events import compact_events, compact_metrics
from pipeline.generate import customer_id, generate
from pipeline.process import drain
from pipeline.rollup import rollup_all

TODAY = dt.datetime.now(dt.UTC).date()
PAGES = {
    "/": "overview-kpis",
    "/screen-time": "fleet-activity",
    "/revenue": "revenue-weekly",
    "/health": "health",
    "/lake": "panel-lake-summary",
}


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> DataSettings:
    root = tmp_path_factory.mktemp("dash-app")
    settings = DataSettings(lake_root=root / "lake", state_db=root / "state.sqlite")
    stores = build_stores(settings)
    generate(stores.lake, queue=stores.queue, customers=3, days=3, seed=7, end_date=TODAY, hosts=1)
    drain(stores)
    compact_events(stores)
    compact_metrics(stores)
    rollup_all(stores)
    return settings


def _env(settings: DataSettings, **extra: str) -> dict[str, str]:
    return {
        "LAKE_ROOT": str(settings.lake_root),
        "STATE_DB": str(settings.state_db),
        "SECRET_KEY": "test",
        **extra,
    }


@pytest.fixture
def app_client(lake: DataSettings) -> Iterator:
    server = create_app(_env(lake, REFRESH_CHOICES_MS="60000,120000"))
    client = server.test_client()
    assert client.get("/").status_code == 200  # the first request registers the router
    yield server, client


def _key(component_id: dict | str) -> str:
    if isinstance(component_id, dict):
        return json.dumps(component_id, sort_keys=True, separators=(",", ":"))
    return component_id


def _part(panel: str, name: str) -> dict[str, str]:
    return {"panel": panel, "type": f"mc-{name}"}


def _update(client, outputs, inputs, state=()):
    """POST a callback the way dash-renderer does; ``outputs`` are (id, property) pairs."""
    names = [f"{_key(i)}.{p}" for i, p in outputs]
    body = {
        "output": names[0] if len(names) == 1 else ".." + "...".join(names) + "..",
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
        "changedPropIds": [f"{_key(i)}.{p}" for i, p, _ in inputs],
    }
    return client.post("/_dash-update-component", json=body)


def _render(client, path: str, search: str = ""):
    return _update(
        client,
        [("_pages_content", "children"), ("_pages_store", "data")],
        [("_pages_location", "pathname", path), ("_pages_location", "search", search)],
    )


def _poll(client, panel, content, *, version=None, tab="tab-1", query=None, tick=1):
    view = parse_view_state(query or {}, TODAY)
    return _update(
        client,
        [
            (_part(panel, content[0]), content[1]),
            (_part(panel, "version"), "data"),
            (_part(panel, "badge"), "children"),
            (_part(panel, "status"), "children"),
        ],
        [(_part(panel, "tick"), "data", tick)],
        [
            (_part(panel, "version"), "data", version),
            ("mc-client", "data", tab),
            ("mc-state", "data", view.to_store()),
        ],
    )


KPIS = ("overview-kpis", ("content", "children"))
REVENUE = ("overview-revenue", ("figure", "data"))
SESSIONS = ("customer-sessions", ("grid", "rowData"))
ORDERS = ("revenue-orders", ("grid", "rowData"))


def _answer(response) -> dict:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_json()["response"]


@pytest.mark.parametrize("path", sorted(PAGES))
def test_every_page_renders(app_client, path):
    _, client = app_client
    assert client.get(path).status_code == 200
    content = _answer(_render(client, path))["_pages_content"]["children"]
    assert PAGES[path] in json.dumps(content)


def test_a_page_reports_bad_url_parameters_instead_of_failing(app_client):
    _, client = app_client
    content = _answer(_render(client, "/screen-time", "?range=forever&customer=../x"))
    text = json.dumps(content)
    assert "Unknown range 'forever'; showing the last 7 days" in text
    assert "Ignored customer" in text


def test_a_drill_down_url_renders_its_panels(app_client):
    _, client = app_client
    search = f"?customer={customer_id(1)}&day={TODAY.isoformat()}"
    text = json.dumps(_answer(_render(client, "/screen-time", search)))
    for panel in ("customer-trend", "customer-day-apps", "customer-sessions"):
        assert panel in text


def test_a_panel_answers_with_data_then_no_update_for_the_same_version(app_client):
    server, client = app_client
    services = server.extensions["mission_control"]
    first = _answer(_poll(client, *KPIS))
    version = first[_key(_part("overview-kpis", "version"))]["data"]
    assert version == services.data.version(KpiSummaryQuery(TODAY - dt.timedelta(days=6), TODAY))
    tiles = json.dumps(first[_key(_part("overview-kpis", "content"))]["children"])
    kpis = services.data.fetch(KpiSummaryQuery(TODAY - dt.timedelta(days=6), TODAY)).data
    revenue = kpis.set_index("metric").loc["revenue", "value"]
    assert figures.format_money(revenue) in tiles
    assert "mc-tier-" in json.dumps(first[_key(_part("overview-kpis", "badge"))])
    # The same tab a floor later, or another tab at once: the version is unchanged -> 204.
    again = _poll(client, *KPIS, version=version, tab="tab-2")
    assert again.status_code == 204, again.get_data(as_text=True)


def test_a_figure_panel_returns_the_builders_figure(app_client):
    _, client = app_client
    figure = _answer(_poll(client, *REVENUE))[_key(_part("overview-revenue", "figure"))]["data"]
    revenue = next(trace for trace in figure["data"] if trace["name"] == "Revenue")
    assert revenue["x"][-1] == TODAY.isoformat()
    assert len(revenue["x"]) <= 7


def test_a_poll_inside_the_floor_answers_no_update(app_client):
    _, client = app_client
    _answer(_poll(client, *REVENUE, tab="fast-tab"))
    # Even a version that differs is not answered again within the floor (60 s here)...
    assert _poll(client, *REVENUE, version="older", tab="fast-tab").status_code == 204
    # ...while another tab is.
    assert _poll(client, *REVENUE, version="older", tab="other-tab").status_code == 200


def test_without_a_floor_a_changed_version_is_answered_again(lake):
    server = create_app(_env(lake, REFRESH_FLOOR_MS="0"))
    client = server.test_client()
    client.get("/")
    _answer(_poll(client, *REVENUE))
    assert _poll(client, *REVENUE, version="older").status_code == 200


def test_hot_figures_are_built_once_per_version(app_client):
    server, client = app_client
    cache = server.extensions["mission_control"].panels.figures
    _answer(_poll(client, *REVENUE, tab="a", query={"range": "30d"}))
    built = cache.misses
    hits = cache.hits
    _answer(_poll(client, *REVENUE, tab="b", query={"range": "30d"}))
    assert cache.misses == built
    assert cache.hits == hits + 1


def test_a_grid_panel_shows_the_rows_of_its_query(app_client):
    server, client = app_client
    customer = customer_id(0)
    query = {"customer": customer, "day": TODAY.isoformat()}
    rows = _answer(_poll(client, *SESSIONS, query=query))[_key(_part("customer-sessions", "grid"))]
    expected = server.extensions["mission_control"].data.fetch(
        CustomerSessionsQuery(customer, TODAY)
    )
    assert rows["rowData"] == figures.grid_records(expected.data)


def test_a_failing_read_degrades_the_panel_instead_of_an_error(app_client):
    server, client = app_client
    services = server.extensions["mission_control"]

    def unreachable(query):
        raise NoData("lake unreachable and no earlier data")

    services.data.fetch = unreachable
    try:
        answer = _answer(_poll(client, *REVENUE, tab="degraded", query={"range": "90d"}))
    finally:
        del services.data.fetch
    assert _key(_part("overview-revenue", "figure")) not in answer  # the last figure stays
    status = json.dumps(answer[_key(_part("overview-revenue", "status"))])
    assert "lake unreachable" in status
    assert "mc-tier-error" in json.dumps(answer[_key(_part("overview-revenue", "badge"))])


def test_a_tampered_view_state_degrades_too(app_client):
    _, client = app_client
    response = _update(
        client,
        [
            (_part("overview-revenue", "figure"), "data"),
            (_part("overview-revenue", "version"), "data"),
            (_part("overview-revenue", "badge"), "children"),
            (_part("overview-revenue", "status"), "children"),
        ],
        [(_part("overview-revenue", "tick"), "data", 1)],
        [
            (_part("overview-revenue", "version"), "data", None),
            ("mc-client", "data", "t"),
            ("mc-state", "data", {"start": "not a date", "end": "2026-01-01"}),
        ],
    )
    status = json.dumps(_answer(response)[_key(_part("overview-revenue", "status"))])
    assert "could not be updated" in status


def test_choosing_a_range_preset_writes_the_url(app_client):
    _, client = app_client
    inputs = [
        ("mc-range-preset", "value", "30d"),
        ("mc-range-dates", "start_date", None),
        ("mc-range-dates", "end_date", None),
    ]
    body = {
        "output": "mc-url.search@" + _range_callback_hash(client),
        "outputs": {"id": "mc-url", "property": "search"},
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "state": [{"id": "mc-url", "property": "search", "value": "?customer=c0000001"}],
        "changedPropIds": ["mc-range-preset.value"],
    }
    answer = _answer(client.post("/_dash-update-component", json=body))
    assert answer["mc-url"]["search"] == "?range=30d&customer=c0000001"
    # The same preset as the URL's (Dash calls this when a page renders): the URL stays.
    body["state"][0]["value"] = "?range=30d"
    assert _answer(client.post("/_dash-update-component", json=body)) == {}


def _range_callback_hash(client) -> str:
    dependencies = client.get("/_dash-dependencies").get_json()
    for dependency in dependencies:
        output = dependency["output"]
        if output.startswith("mc-url.search@") and any(
            i["id"] == "mc-range-preset" for i in dependency["inputs"]
        ):
            return output.split("@", 1)[1]
    raise AssertionError("range picker callback not registered")


def test_every_export_link_on_a_page_answers(app_client):
    _, client = app_client
    search = f"?customer={customer_id(0)}&day={TODAY.isoformat()}"
    text = json.dumps(_answer(_render(client, "/screen-time", search)))
    links = sorted({part.split('"')[0] for part in text.split('"href": "')[1:]})
    exports = [link for link in links if link.startswith("/export/")]
    assert len(exports) >= 6
    for link in exports:
        response = client.get(link.replace("\\u0026", "&"))
        assert response.status_code == 200, (link, response.get_data(as_text=True))
        assert response.data.startswith(b"\xef\xbb\xbf")
        # Headers are the titles a reader sees, not the lake's field names.
        header = response.data[3:].decode().split("\r\n", 1)[0].split(",")
        assert all(title[0].isupper() and "_" not in title for title in header), (link, header)


def test_every_inspect_link_on_a_page_shows_the_rows_of_its_csv(app_client):
    _, client = app_client
    search = f"?customer={customer_id(0)}&day={TODAY.isoformat()}"
    text = json.dumps(_answer(_render(client, "/screen-time", search)))
    hrefs = {part.split('"')[0] for part in text.split('"href": "')[1:]}
    links = sorted(href.replace("\\u0026", "&") for href in hrefs if href.startswith("/inspect?"))
    assert len(links) >= 6
    for link in links:
        query = link.partition("?")[2]
        page = json.dumps(_answer(_render(client, "/inspect", "?" + query)))
        params = parse_qs(query)
        view_name = params.pop("panel")[0]
        csv = client.get(f"/export/{view_name}.csv?{urlencode(params, doseq=True)}")
        body = csv.get_data(as_text=True)  # read to its end: the streamed file's request closes
        assert csv.status_code == 200, (link, body)
        assert f"{int(csv.headers['X-Export-Rows']):,} rows" in page, link
        assert "inspect-query" in page and "inspect-provenance" in page


def _audit_events(settings: DataSettings, event: str) -> list[dict]:
    return [
        entry
        for _, entry in build_stores(settings).records.scan("audit")
        if entry["event"] == event
    ]


def test_a_viewer_is_shown_no_rows_on_an_inspect_link(lake: DataSettings):
    viewer = create_app(_env(lake, DEV_ROLE="viewer")).test_client()
    refused = len(_audit_events(lake, "refused"))
    page = json.dumps(_answer(_render(viewer, "/inspect", "?panel=products&range=7d")))
    assert "needs the operator role" in page
    assert "inspect-rows" not in page and "inspect-query" not in page
    assert len(_audit_events(lake, "refused")) == refused + 1


def test_inspecting_a_panel_is_audited_as_an_export_is(app_client, lake: DataSettings):
    _, client = app_client
    page = json.dumps(_answer(_render(client, "/inspect", "?panel=products&range=30d")))
    assert "inspect-rows" in page
    [entry] = [
        e for e in _audit_events(lake, "inspect") if e["details"]["filters"] == {"range": "30d"}
    ]
    assert entry["details"]["view"] == "products" and entry["details"]["rows"] > 0


# ---- URL state the pages share ------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "first", "last"),
    [
        ("today", "2026-03-18", "2026-03-18"),
        ("7d", "2026-03-12", "2026-03-18"),
        ("30d", "2026-02-17", "2026-03-18"),
        ("90d", "2025-12-19", "2026-03-18"),
        ("this-week", "2026-03-16", "2026-03-18"),
        ("last-week", "2026-03-09", "2026-03-15"),
        ("2026-01-01..2026-01-31", "2026-01-01", "2026-01-31"),
    ],
)
def test_range_presets_resolve_against_today(token, first, last):
    wednesday = dt.date(2026, 3, 18)
    assert url_state.resolve_range(token, wednesday) == (
        dt.date.fromisoformat(first),
        dt.date.fromisoformat(last),
    )


def test_view_state_round_trips_and_normalises_the_week_to_monday():
    view = url_state.parse_view_state(
        {"range": "30d", "customer": "c0000007", "day": "2026-03-17", "week": "2026-03-18"},
        dt.date(2026, 3, 18),
    )
    assert view.week == dt.date(2026, 3, 16)
    assert view.problems == ()
    assert url_state.ViewState.from_store(view.to_store()) == view
    with pytest.raises(url_state.BadParameter):
        url_state.parse_view_state({"day": "2026-02-30"}, dt.date(2026, 3, 18), strict=True)


def test_search_with_replaces_and_removes_parameters_in_a_stable_order():
    search = "?day=2026-03-17&customer=c1&range=7d"
    assert url_state.search_with(search, customer="c2", day=None) == "?range=7d&customer=c2"
    assert url_state.search_with("", range="30d") == "?range=30d"
    assert url_state.search_with("?range=7d", range=None) == ""


def test_a_viewer_sees_aggregates_but_not_customers_or_exports(lake: DataSettings):
    server = create_app(_env(lake, DEV_ROLE="viewer", REFRESH_CHOICES_MS="60000,120000"))
    client = server.test_client()
    assert _poll(client, *KPIS).status_code == 200
    customer = customer_id(0)
    query = {"customer": customer, "day": TODAY.isoformat()}
    # A crafted callback for a per-customer panel is refused on the server, not only hidden.
    refused = _poll(client, *SESSIONS, query=query)
    assert refused.status_code == 403
    assert client.get(f"/export/customer-trend.csv?customer={customer}").status_code == 403
    operator = create_app(_env(lake, DEV_ROLE="operator")).test_client()
    assert operator.get(f"/export/customer-trend.csv?customer={customer}").status_code == 200


def test_a_viewer_is_not_offered_the_customer_picker_or_csv_links(lake: DataSettings):
    search = f"?customer={customer_id(0)}&day={TODAY.isoformat()}"
    viewer = create_app(_env(lake, DEV_ROLE="viewer")).test_client()
    page = json.dumps(_answer(_render(viewer, "/screen-time", search)))
    assert "customer-needs-operator" in page and customer_id(0) in page
    assert "screen-customer" not in page and "customer-trend" not in page
    assert "mc-export" not in page
    operator = create_app(_env(lake, DEV_ROLE="operator")).test_client()
    page = json.dumps(_answer(_render(operator, "/screen-time", search)))
    assert "customer-needs-operator" not in page
    assert "screen-customer" in page and "customer-trend" in page and "mc-export" in page


def test_a_viewer_gets_a_weeks_totals_but_not_its_orders(lake: DataSettings):
    week = {"week": (TODAY - dt.timedelta(days=TODAY.weekday())).isoformat()}
    viewer = create_app(_env(lake, DEV_ROLE="viewer")).test_client()
    page = json.dumps(_answer(_render(viewer, "/revenue", "?week=" + week["week"])))
    assert "needs the operator role" in page
    assert _poll(viewer, *ORDERS, query=week).status_code == 403
    operator = create_app(_env(lake, DEV_ROLE="operator")).test_client()
    page = json.dumps(_answer(_render(operator, "/revenue", "?week=" + week["week"])))
    assert "needs the operator role" not in page and "revenue-orders" in page
    rows = _answer(_poll(operator, *ORDERS, query=week))[_key(_part("revenue-orders", "grid"))]
    assert rows["rowData"] and "user_id" in rows["rowData"][0]


def test_an_unknown_page_answers_404_and_known_pages_200(app_client):
    _, client = app_client
    assert client.get("/no-such-page", headers={"Accept": "text/html"}).status_code == 404
    assert client.get("/revenue/extra", headers={"Accept": "text/html"}).status_code == 404
    for path in PAGES:
        assert client.get(path, headers={"Accept": "text/html"}).status_code == 200, path
    assert client.get("/revenue/", headers={"Accept": "text/html"}).status_code == 200
