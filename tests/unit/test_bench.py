"""The benchmark's own parts: the simulated browser's requests, the baseline app, the HTTP
client's framing, the synthetic lake and the ramp arithmetic. No timings are asserted."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bench import growth, naive_app
from bench.operators import (
    UPDATE_PATH,
    Answer,
    Level,
    PageModel,
    PageSpec,
    Ramp,
    _AnswerReader,
    render_body,
)
from bench.report import Report
from dashboard import create_app
from data_access import layout
from data_access.factory import build_stores
from data_access.queries import CustomerTrendQuery, FleetDailyQuery
from data_access.service import DataService
from data_access.settings import DataSettings
from pipeline.events import compact_events
from pipeline.generate import customer_id, generate
from pipeline.process import process_pending
from pipeline.rollup import rollup_all

TODAY = dt.datetime.now(dt.UTC).date()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> DataSettings:
    root = tmp_path_factory.mktemp("bench-lake")
    settings = DataSettings(lake_root=root / "lake", state_db=root / "state.sqlite")
    stores = build_stores(settings)
    generate(stores.lake, customers=3, days=4, seed=13, end_date=TODAY, hosts=0)
    process_pending(stores)
    compact_events(stores)
    rollup_all(stores)
    return settings


def _model(client, spec: PageSpec) -> PageModel:
    """What the simulated tab learns from a page: its panels and their callback bodies."""
    dependencies = client.get("/_dash-dependencies").get_json()
    render = render_body(spec, dependencies)
    answer = client.post(UPDATE_PATH, data=render, content_type="application/json")
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    return PageModel(spec, dependencies, answer.get_json()["response"], render)


def _post(client, model: PageModel, panel, tick: int, tab: str):
    body = panel.body(tick, tab, model.state, model.trigger_for(panel))
    return client.post(UPDATE_PATH, data=body, content_type="application/json")


def test_simulated_tabs_poll_like_the_renderer_first_data_then_204(lake: DataSettings):
    server = create_app(
        {
            "LAKE_ROOT": str(lake.lake_root),
            "STATE_DB": str(lake.state_db),
            "SECRET_KEY": "test",
            "REFRESH_CHOICES_MS": "1000",
            "REFRESH_FLOOR_MS": "0",
        }
    )
    client = server.test_client()
    client.get("/")
    search = f"?customer={customer_id(1)}&day={(TODAY - dt.timedelta(days=1)).isoformat()}"
    for spec in (
        PageSpec("overview", "ours", "/"),
        PageSpec("customer", "ours", "/screen-time", search),
    ):
        model = _model(client, spec)
        panels = model.new_panels()
        assert {"overview-revenue", "customer-sessions"} & {p.name for p in panels}
        for panel in panels:
            first = _post(client, model, panel, 0, "tab-a")
            assert first.status_code == 200, (panel.name, first.get_data(as_text=True)[:200])
            panel.remember(Answer(first.status_code, 0, first.get_data()))
            assert panel.held is not None, panel.name
            assert _post(client, model, panel, 1, "tab-a").status_code == 204, panel.name


def test_the_naive_app_rebuilds_every_panel_on_every_tick(lake: DataSettings):
    client = naive_app.create_naive_app(str(lake.lake_root)).test_client()
    client.get("/")
    search = f"?customer={customer_id(1)}&day={(TODAY - dt.timedelta(days=1)).isoformat()}"
    overview = _model(client, PageSpec("naive overview", "naive", "/"))
    customer = _model(client, PageSpec("naive customer", "naive", "/screen-time", search))

    assert {p.name for p in overview.new_panels()} == {
        "naive-kpis",
        "naive-revenue",
        "naive-products",
    }
    assert len(customer.new_panels()) == 9
    for model in (overview, customer):
        for panel in model.new_panels():
            for tick in (1, 2):  # never a 204: every tick reads and builds again
                answer = _post(client, model, panel, tick, "tab")
                assert answer.status_code == 200, (panel.name, answer.get_data(as_text=True))
    revenue = next(p for p in overview.new_panels() if p.name == "naive-revenue")
    figure = _post(client, overview, revenue, 3, "tab").get_json()["response"]["naive-revenue"]
    assert [trace["name"] for trace in figure["figure"]["data"]] == ["Orders", "Revenue"]


class _Transport:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_the_client_splits_answers_that_arrive_in_pieces():
    no_content = b"HTTP/1.1 204 NO CONTENT\r\nServer: x\r\n\r\n"
    data = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
        b'{"a": true}'
    )
    stream = no_content + data

    async def read() -> list:
        reader = _AnswerReader()
        reader.connection_made(_Transport())  # type: ignore[arg-type]
        answers = []
        waiter = reader.expect()
        for start in range(0, len(stream), 7):  # 7-byte pieces, split anywhere
            reader.data_received(stream[start : start + 7])
            while waiter.done() and len(answers) < 2:
                answers.append(waiter.result())
                waiter = reader.expect()
        return answers

    # In a thread of its own: a session-wide Playwright keeps an event loop on this one.
    with ThreadPoolExecutor(1) as pool:
        first, second = pool.submit(asyncio.run, read()).result()
    assert (first.status, first.body, first.size) == (204, b"", len(no_content))
    assert (second.status, json.loads(second.body), second.size) == (200, {"a": True}, len(data))


def test_the_synthetic_lake_answers_the_real_queries(tmp_path: Path):
    customers = 40
    settings = growth.write_processed_lake(tmp_path, customers)
    stores = build_stores(settings)
    service = DataService(stores, settings)
    start = growth.END - dt.timedelta(days=growth.DAYS - 1)
    templates = growth._templates(23)

    daily = service.fetch(FleetDailyQuery(start, growth.END)).data
    for index, row in enumerate(daily.sort_values("day").itertuples()):
        expected = sum(
            1
            for number in range(customers)
            if (chosen := growth._pick(number, index)) is not None and templates[chosen].seconds > 0
        )
        assert row.active_customers == expected, row.day

    customer = growth._customer(7)
    trend = service.fetch(CustomerTrendQuery(start, growth.END, customer_id=customer)).data
    uploaded = [n for n in range(growth.DAYS) if growth._pick(7, n) is not None]
    assert len(trend) == len(uploaded)

    key = layout.processed_upload_key(customer, start.isoformat())
    metadata = pq.ParquetFile(settings.lake_root / key).metadata
    assert metadata.row_group(0).column(0).compression == "GZIP"


def test_a_level_passes_only_within_budget_without_errors_or_dropped_ticks():
    good = Level(10, 80.0, 80.0, 2.0, 40.0, errors=0, dropped_ticks=0, changed=0)
    assert good.passes(100.0)
    assert not good.passes(30.0)
    assert not Level(10, 80.0, 80.0, 2.0, 40.0, errors=1, dropped_ticks=0, changed=0).passes(100)
    assert not Level(10, 80.0, 70.0, 2.0, 40.0, errors=0, dropped_ticks=3, changed=0).passes(100)


def test_operators_at_5_s_scale_the_best_passing_level_by_the_simulated_period():
    levels = [
        Level(20, 160.0, 160.0, 2.0, 30.0, errors=0, dropped_ticks=0, changed=0),
        Level(28, 224.0, 224.0, 3.0, 90.0, errors=0, dropped_ticks=0, changed=0),
        Level(39, 312.0, 250.0, 80.0, 400.0, errors=0, dropped_ticks=9, changed=0),
    ]
    ramp = Ramp(PageSpec("overview", "ours", "/"), 0.5, 4, levels, 10.0)

    assert ramp.operators_at(5.0, 100.0) == 280
    assert ramp.operators_at(5.0, 50.0) == 200
    assert ramp.operators_at(5.0, 10.0) == 0


def test_the_table_ends_with_the_time_each_section_took():
    report = Report(mode="quick")
    report.add("operators", "unchanged poll throughput", 900.0, unit="req/s", ratio=0.5)
    report.seconds["operators"] = 61.0
    report.context["cpus"] = 2

    table = report.table()
    assert "900 req/s" in table and "0.5x" in table
    assert "quick run: operators 61 s" in table
    assert report.as_dict()["section_seconds"] == {"operators": 61.0}
