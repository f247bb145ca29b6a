"""A grid's CSV link is pinned to the data version the grid shows.

New orders arrive between showing the week's orders and clicking CSV: the pinned file still
holds the rows on screen (or, once that version is no longer kept, refuses with a link to the
current data), while the unpinned link gives the new rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard import create_app
from dashboard.components.url_state import parse_view_state
from data_access.factory import build_stores
from data_access.settings import DataSettings
from pipeline.events import compact_events, compact_metrics
from pipeline.generate import event_key, generate
from pipeline.process import drain
from pipeline.rollup import rollup_all

TODAY = dt.datetime.now(dt.UTC).date()
WEEK = {"week": (TODAY - dt.timedelta(days=TODAY.weekday())).isoformat()}
PANEL = "revenue-orders"


@pytest.fixture
def lake(tmp_path: Path) -> DataSettings:
    settings = DataSettings(lake_root=tmp_path / "lake", state_db=tmp_path / "state.sqlite")
    stores = build_stores(settings)
    generate(stores.lake, queue=stores.queue, customers=3, days=3, seed=7, end_date=TODAY, hosts=1)
    drain(stores)
    compact_events(stores)
    compact_metrics(stores)
    rollup_all(stores)
    return settings


def _client(settings: DataSettings, **env: str):
    server = create_app(
        {
            "LAKE_ROOT": str(settings.lake_root),
            "STATE_DB": str(settings.state_db),
            "SECRET_KEY": "test",
            "DEV_ROLE": "operator",
            "VERSION_MEMO_SECONDS": "0",
            **env,
        }
    )
    client = server.test_client()
    assert client.get("/").status_code == 200  # the first request registers the router
    return client


def _part(name: str) -> dict[str, str]:
    return {"panel": PANEL, "type": f"mc-{name}"}


def _key(component: dict[str, str]) -> str:
    return json.dumps(component, sort_keys=True, separators=(",", ":"))


def _callback(client, outputs, inputs, state) -> dict:
    """POST a callback the way dash-renderer does; answers the outputs by component key."""
    names = [f"{_key(i)}.{p}" for i, p in outputs]
    specs = [{"id": i, "property": p} for i, p in outputs]
    body = {
        "output": names[0] if len(names) == 1 else ".." + "...".join(names) + "..",
        "outputs": specs[0] if len(specs) == 1 else specs,
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
        "changedPropIds": [f"{_key(i)}.{p}" for i, p, _ in inputs],
    }
    response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_json()["response"]


def _show_orders(client) -> tuple[list[dict], str, str]:
    """The orders grid as the page shows it: its rows, its version and its CSV link."""
    store = parse_view_state(WEEK, TODAY).to_store()
    shown = _callback(
        client,
        [
            (_part("grid"), "rowData"),
            (_part("version"), "data"),
            (_part("badge"), "children"),
            (_part("status"), "children"),
        ],
        [(_part("tick"), "data", 1)],
        [
            (_part("version"), "data", None),
            ("mc-client", "data", "tab"),
            ("mc-state", "data", store),
        ],
    )
    rows, version = shown[_key(_part("grid"))]["rowData"], shown[_key(_part("version"))]["data"]
    link = _callback(
        client,
        [(_part("export"), "href")],
        [
            (_part("grid"), "filterModel", {}),
            (_part("grid"), "columnState", []),
            (_part("version"), "data", version),
        ],
        [("mc-state", "data", store)],
    )
    return rows, version, link[_key(_part("export"))]["href"]


def _new_order(settings: DataSettings, order_id: str) -> None:
    """One more purchase this hour, compacted: the orders' data version moves."""
    stores = build_stores(settings)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    # In the week the grid shows, even when the run crosses midnight into a new week.
    now = min(now, dt.datetime.combine(TODAY, dt.time(23, 59, 59), dt.UTC))
    line = {
        "event_id": order_id.replace("-", "0").ljust(32, "0")[:32],
        "event_type": "purchase",
        "ts": now.isoformat().replace("+00:00", "Z"),
        "user_id": "u0000001",
        "session_id": "0000000000000001",
        "order_id": order_id,
        "product_id": "p001",
        "product_name": "Pinned test kettle",
        "category": "Home",
        "quantity": 1,
        "unit_price": 249.0,
        "amount": 249.0,
        "currency": "USD",
    }
    key = event_key("purchase", now.date(), now.hour, seed=abs(hash(order_id)) % 10_000)
    stores.lake.write_bytes(key, json.dumps(line).encode() + b"\n")
    assert compact_events(stores).rows >= 1


def _order_ids(body: bytes) -> list[str]:
    text = body.decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text[1:], newline="")))
    return [row["Order"] for row in rows]


@pytest.fixture
def shown(lake: DataSettings) -> Iterator[tuple]:
    client = _client(lake)
    rows, version, link = _show_orders(client)
    yield client, rows, version, link


def test_the_grid_link_carries_the_version_the_grid_shows(shown):
    _, _, version, link = shown
    assert link.startswith("/export/orders.csv?")
    assert f"version={version}" in link.replace("%7C", "|").replace("%3A", ":")


def test_a_pinned_export_keeps_the_rows_on_screen_after_new_orders(lake, shown):
    client, rows, _, link = shown
    _new_order(lake, "o-arrived-after-showing")

    pinned = client.get(link)
    assert pinned.status_code == 200, pinned.get_data(as_text=True)
    assert _order_ids(pinned.data) == [row["order_id"] for row in rows]
    assert pinned.headers["X-Export-Rows"] == str(len(rows))

    current = client.get(re.sub(r"&?version=[^&]*", "", link))
    assert current.status_code == 200
    assert "o-arrived-after-showing" in _order_ids(current.data)
    assert int(current.headers["X-Export-Rows"]) == len(rows) + 1


def test_a_pinned_version_no_longer_kept_is_refused_with_a_link_to_the_current_data(lake):
    # Nothing is kept: the version on screen can be served only while it is still current.
    forgetful = {"CACHE_TTL_SECONDS": "0", "MEMO_SECONDS": "0"}
    rows, _version, link = _show_orders(_client(lake, **forgetful))
    _new_order(lake, "o-arrived-after-showing")

    refused = _client(lake, **forgetful).get(link)  # another worker: nothing in memory
    assert refused.status_code == 409
    assert refused.mimetype == "text/html"
    page = refused.get_data(as_text=True)
    assert "no longer matches the screen" in page
    current_link = re.search(r'<a href="([^"]+)">Download the current data</a>', page)
    assert current_link is not None
    current = _client(lake, **forgetful).get(current_link.group(1).replace("&amp;", "&"))
    assert current.status_code == 200
    assert "version=" not in current_link.group(1)
    assert len(_order_ids(current.data)) == len(rows) + 1
