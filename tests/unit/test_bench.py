"""The benchmark's own parts: the simulated browser's requests, the baseline app, the HTTP
client's framing, the scale section's synthetic lake (against the real pipeline) and the ramp
arithmetic. No timings are asserted."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench import naive_app, scale
from bench.http_client import _AnswerReader
from bench.report import Report
from dashboard import create_app
from data_access import layout
from data_access.factory import build_stores
from data_access.queries import (
    CustomerDayQuery,
    CustomerSearchQuery,
    CustomerTrendQuery,
    FleetAppsQuery,
    FleetDailyQuery,
    FleetHoursQuery,
    read_customer_days,
)
from data_access.service import DataService
from data_access.settings import DataSettings
from devtools.operators import UPDATE_PATH, PageModel, PageSpec, render_body
from pipeline.events import compact_events
from pipeline.generate import customer_id, generate
from pipeline.process import drain
from pipeline.rollup import WATERMARK_SCREEN_TIME, rollup_all, rollup_screen_time

TODAY = dt.datetime.now(dt.UTC).date()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> DataSettings:
    root = tmp_path_factory.mktemp("bench-lake")
    settings = DataSettings(lake_root=root / "lake", state_db=root / "state.sqlite")
    stores = build_stores(settings)
    generate(stores.lake, queue=stores.queue, customers=3, days=4, seed=13, end_date=TODAY, hosts=0)
    drain(stores)
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
            assert panel.remember(first.status_code, first.get_data()), panel.name
            assert panel.held is not None, panel.name
            assert panel.status_message(first.get_data()) == "", panel.name
            unchanged = _post(client, model, panel, 1, "tab-a")
            assert unchanged.status_code == 204, panel.name
            held = panel.held
            assert not panel.remember(unchanged.status_code, unchanged.get_data())
            assert panel.held == held


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


# ---- the scale section's synthetic lake, against the real pipeline ------------------------

SMALL = 24  # customers: every customer-day gets its object, so the real fold can read them all


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> scale.Synthetic:
    return scale.synthesize(tmp_path_factory.mktemp("synthetic"), SMALL, flush=False)


@pytest.fixture(scope="module")
def really_folded(tmp_path_factory: pytest.TempPathFactory) -> scale.Synthetic:
    """The same index and objects with nothing of the rollup's, then the real rollup run."""
    lake = scale.synthesize(
        tmp_path_factory.mktemp("folded"),
        SMALL,
        fold=False,
        flush=False,
        buckets=range(layout.SCREEN_TIME_BUCKETS),
    )
    stores = build_stores(lake.settings)
    folded = rollup_screen_time(stores, settle_seconds=0, batch=1_000_000)
    assert folded.uploads_read == lake.customer_days
    return lake


def _summaries(settings: DataSettings) -> dict[str, pa.Table]:
    root = settings.lake_root / layout.ROLLUP_SCREEN_TIME
    return {
        path.parent.name.removeprefix("date="): pq.read_table(path)
        for path in sorted(root.glob("date=*/summary.parquet"))
    }


def _state(settings: DataSettings, pattern: str) -> list[tuple[str, str]]:
    with sqlite3.connect(settings.state_db) as connection:
        rows = connection.execute(
            "SELECT name, value FROM state WHERE name LIKE ? ORDER BY name", (pattern,)
        ).fetchall()
    connection.close()
    return rows


def test_the_synthetic_summaries_are_what_the_real_fold_writes(
    synthetic: scale.Synthetic, really_folded: scale.Synthetic
):
    ours, real = _summaries(synthetic.settings), _summaries(really_folded.settings)
    assert list(ours) == list(real)
    assert len(real) >= scale.DAYS
    for date, table in real.items():
        assert ours[date].equals(table), date  # same rows, same folded-through watermark
        assert (
            ours[date].schema.metadata[b"folded_through"]
            == table.schema.metadata[b"folded_through"]
        )
    # Both kinds of day that add to more than their own date were folded.
    kinds = scale.templates()
    spill = [n for n, t in enumerate(kinds) if t.spill_seconds]
    empty = [n for n, t in enumerate(kinds) if t.table.num_rows == 0]
    assert synthetic.counts[:-1, spill].sum() > 0 and synthetic.counts[:, empty].sum() > 0
    for pattern in ("folded:%", "rollup:screen_time:watermark"):
        assert _state(synthetic.settings, pattern) == _state(really_folded.settings, pattern)
    assert [name for name, _ in _state(synthetic.settings, "version:rollup:screen_time:%")] == [
        name for name, _ in _state(really_folded.settings, "version:rollup:screen_time:%")
    ]


def test_the_real_queries_answer_from_the_synthetic_lake(
    synthetic: scale.Synthetic, really_folded: scale.Synthetic
):
    start, end = scale.START, scale.END
    ours = DataService(build_stores(synthetic.settings), synthetic.settings)
    real = DataService(build_stores(really_folded.settings), really_folded.settings)
    for query in (
        FleetDailyQuery(start, end),
        FleetAppsQuery(start, end),
        FleetHoursQuery(start, end),
    ):
        pd.testing.assert_frame_equal(ours.fetch(query).data, real.fetch(query).data)
    daily = ours.fetch(FleetDailyQuery(start, end)).data
    assert len(daily) == scale.DAYS and daily["active_customers"].between(SMALL * 0.8, SMALL).all()

    for number in scale.view_customers(SMALL, 2):
        cid = scale.customer(number)
        trend = ours.fetch(CustomerTrendQuery(start, end, customer_id=cid)).data
        assert dict(zip(trend["day"], trend["seconds"], strict=True)) == scale.expected_trend(
            number
        )
        kinds = scale.templates()
        day = next(
            d for d, t in enumerate(scale.plan(number)) if t is not None and kinds[t].table.num_rows
        )
        rows = ours.fetch(CustomerDayQuery(cid, start + dt.timedelta(days=day))).data
        assert len(rows) and rows["app_name"].notna().all()
    found = ours.fetch(CustomerSearchQuery("c000001")).data["customer_id"].tolist()
    assert found == [scale.customer(n) for n in range(10, 20)]

    stores = build_stores(synthetic.settings)
    number = scale.view_customers(SMALL, 0)[0]
    kinds = scale.templates()
    day = next(
        d for d, t in enumerate(scale.plan(number)) if t is not None and kinds[t].table.num_rows
    )
    record = stores.index.get(scale.customer(number), (start + dt.timedelta(days=day)).isoformat())
    template = scale.plan(number)[day]
    assert record is not None and template is not None
    [rows] = read_customer_days(stores, [record])
    assert rows is not None
    assert rows.equals(scale.templates()[template].table.select(rows.column_names))
    assert record.parquet_bytes == len(scale.templates()[template].parquet)
    watermark = float(stores.state.get(WATERMARK_SCREEN_TIME) or 0)
    assert watermark < dt.datetime.now(dt.UTC).timestamp()
    assert stores.index.uploaded_since(watermark) == []


def test_the_templates_are_what_processing_writes_for_generated_uploads(tmp_path: Path):
    stores = build_stores(
        DataSettings(lake_root=tmp_path / "lake", state_db=tmp_path / "state.sqlite")
    )
    chosen = scale.templates()
    assert len(chosen) == scale.TEMPLATES
    for template in (chosen[0], *(t for t in chosen if t.spill_seconds)):
        stores.lake.write_bytes(template.raw_key, template.raw)
        stores.queue.send([template.raw_key])
    assert drain(stores).processed == 1 + sum(1 for t in chosen if t.spill_seconds)
    for template in (chosen[0], *(t for t in chosen if t.spill_seconds)):
        _, _, customer, name = template.raw_key.split("/")
        record = stores.index.get(customer, name.removesuffix(".json"))
        assert record is not None
        [rows] = read_customer_days(stores, [record], template.table.column_names)
        assert rows is not None and rows.equals(template.table)


def test_the_scale_section_measures_each_size_and_checks_its_goals(tmp_path: Path):
    benches = {}
    for customers in (60, 120):
        lake = scale.synthesize(
            tmp_path / str(customers),
            customers,
            flush=False,
        )
        benches[customers] = scale.SizeBench(lake, 1)
    by_size = scale.measure(benches, 1)
    for bench in benches.values():
        assert any("counted in the" in line for line in bench.close())
    timed = [spec.key for spec in scale.FIGURES if spec.unit == "ms"]
    for figures in by_size.values():
        assert all(figures[key] > 0 for key in timed), figures
        assert all(
            figures[spec.key] is None or figures[spec.key] >= 0
            for spec in scale.FIGURES
            if spec.unit == "MiB"
        )

    def sizes(
        cold_large: float, upload_large: float, objects: float = 1.0
    ) -> dict[int, dict[str, float | None]]:
        small = {"fleet_cold_ms": 100.0, "upload_total_ms": 40.0, "idle_drain_ms": 0.02}
        small |= {"customer_cold_ms": 20.0, "customer_objects_per_day": 1.0}
        large = {"fleet_cold_ms": cold_large, "upload_total_ms": upload_large}
        large |= {"customer_cold_ms": 25.0, "customer_objects_per_day": objects}
        return {10_000: small, 1_000_000: {**large, "idle_drain_ms": 0.02}}

    passing = scale.goals(sizes(140.0, 50.0), {"ratio": 1.8})
    assert [goal.passed for goal in passing] == [True, True, True, True, True]
    failing = scale.goals(sizes(320.0, 70.0, objects=3.0), {"ratio": 1.5})
    assert [goal.passed for goal in failing] == [False, False, True, False, False]
    workers = scale.measure_workers(tmp_path / "workers", customers=4, days=2, rounds=1)
    assert workers["uploads"] > 0 and workers["w1_per_s"] > 0 and workers["w2_per_s"] > 0
    assert workers["ratio"] == workers["w2_per_s"] / workers["w1_per_s"]
    assert workers["w1_worker_mib"] > 10  # the pool process's RSS high-water, in MiB
    table = scale.growth_table(sizes(320.0, 70.0, objects=3.0), workers, failing)
    assert "1M/10k" in table and "3.20x" in table and table.count("FAIL") == 4


def test_the_table_ends_with_the_time_each_section_took():
    report = Report(mode="quick")
    report.add("operators", "unchanged poll throughput", 900.0, unit="req/s", ratio=0.5)
    report.seconds["operators"] = 61.0
    report.context["cpus"] = 2
    report.tables["scale"] = "scale: growth table"
    report.details["scale"] = {"sizes": [10_000]}

    table = report.table()
    assert "900 req/s" in table and "0.5x" in table
    assert table.index("scale: growth table") < table.index("quick run: operators 61 s")
    recorded = report.as_dict()
    assert recorded["section_seconds"] == {"operators": 61.0}
    assert recorded["tables"] == {"scale": "scale: growth table"}
    assert recorded["details"] == {"scale": {"sizes": [10_000]}}


def _tab_level(tabs: int, p95_ms: float, errors: int = 0, skipped: int = 0):
    from bench.operators import Level as TabLevel

    return TabLevel(
        tabs=tabs,
        requests_per_s=tabs / 5,
        p50_ms=p95_ms / 2,
        p95_ms=p95_ms,
        p99_ms=p95_ms * 2,
        errors=errors,
        skipped_ticks=skipped,
        ticks=tabs * 6,
        changed_share=0.01,
        bytes_per_tick=800.0,
        unchanged_tick_bytes=790.0,
        unchanged_answer_bytes=230.0,
        client_cpu_per_s=0.2,
        load_average=1.0,
    )


def test_an_operator_ramp_counts_the_largest_level_within_budget_without_errors_or_skips():
    from bench.operators import Ramp as TabRamp

    ramp = TabRamp("overview", "Overview", "Mission Control")
    ramp.levels = [
        _tab_level(2000, 40.0),
        _tab_level(3000, 90.0),
        _tab_level(4000, 60.0, errors=1),
        _tab_level(5000, 70.0, skipped=2),
        _tab_level(6000, 140.0),
    ]
    best = ramp.best()
    assert best is not None and best.tabs == 3000
    assert TabRamp("x", "x", "naive", [_tab_level(5, 150.0)]).best() is None
