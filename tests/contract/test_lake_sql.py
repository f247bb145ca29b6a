"""`mission-control sql`: the example queries on DuckDB over the local lake and over the S3
server, on data the pipeline made, against the dashboard's own numbers for the same thing.

A query is compared on all the data where the dashboard's number covers other days than its
filter: the variant drops the example's date filter (and its top-3 cut), nothing else.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from data_access import aws, layout
from data_access.factory import build_stores
from data_access.queries import FleetAppsQuery, PipelineStatsQuery, TopProductsQuery
from data_access.settings import DataSettings
from data_access.stores import Stores
from pipeline import sql
from pipeline.bootstrap import bootstrap
from pipeline.events import compact_events, compact_metrics
from pipeline.generate import generate
from pipeline.process import ProcessSummary, drain
from pipeline.rollup import rollup_all
from tests.plugins.servers import aws_env_for, remove_aws_resources

DAYS = 15  # two weeks for the week-over-week query, and today
TOP_APPS, RISE, REVENUE, LAG, QUARANTINE = sql.EXAMPLE_QUERIES.values()


@dataclass
class Lake:
    settings: DataSettings
    stores: Stores
    processed: ProcessSummary
    end: dt.date

    def run(self, query: str) -> pd.DataFrame:
        result = sql.run_query(sql.connect(self.settings), query)
        return pd.DataFrame(result.rows, columns=result.columns)


def _fill(settings: DataSettings, stores: Stores) -> Lake:
    end = dt.datetime.now(dt.UTC).date()  # the examples look back from today
    generate(
        stores.lake,
        queue=stores.queue,
        customers=5,
        days=DAYS,
        seed=11,
        end_date=end,
        bad_uploads=4,
    )
    processed = drain(stores)
    compact_events(stores)
    compact_metrics(stores)
    rollup_all(stores)
    assert sql.export_app_dimension(stores)
    return Lake(settings, stores, processed, end)


@pytest.fixture(scope="module", params=["local", pytest.param("aws", marks=pytest.mark.aws)])
def lake(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lake]:
    if request.param == "local":
        root = tmp_path_factory.mktemp("sql-lake")
        settings = DataSettings(lake_root=root / "lake", state_db=root / "state.sqlite")
        yield _fill(settings, build_stores(settings))
        return
    clients = request.getfixturevalue("aws_clients")
    env = aws_env_for(
        request.getfixturevalue("dynamodb_local"),
        request.getfixturevalue("seaweed_s3"),
        tmp_path_factory,
    )
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)  # DuckDB's S3 secret takes boto3's credentials
        settings = DataSettings.from_env(env)
        bootstrap(settings, s3=clients.s3, dynamodb=clients.dynamodb)
        stores = aws.build_aws_stores(settings, s3=clients.s3, dynamodb=clients.dynamodb)
        try:
            yield _fill(settings, stores)
        finally:
            stores.lake.close()  # type: ignore[attr-defined]
            remove_aws_resources(settings, clients)


def _all_dates(query: str) -> str:
    """The example without its date filter, so it covers what a dashboard total covers."""
    unfiltered = re.sub(r"""(WHERE|AND) (s\.)?"date" > CAST\(.*?AS varchar\)""", "", query)
    unfiltered = re.sub(r"WHERE\s+(GROUP|\))", r"\1", unfiltered).replace("WHERE AND", "WHERE")
    assert unfiltered != query
    return unfiltered.replace("place <= 3", "place <= 1000")


def _screen_time_rows(stores: Stores) -> pd.DataFrame:
    """Every stored part, read without SQL, latest version per customer-day."""
    frames = []
    for info in stores.lake.list(layout.PROCESSED_SCREEN_TIME):
        [table] = stores.lake.read_tables([info.key])
        date = re.search(r"date=([\d-]+)/", info.key).group(1)  # type: ignore[union-attr]
        frames.append(table.to_pandas().assign(date=date))
    rows = pd.concat(frames, ignore_index=True)
    latest = rows.groupby(["customer_id", "date"])["uploaded_at"].transform("max")
    return rows[rows["uploaded_at"] == latest]


def test_every_example_runs_and_the_tables_have_rows(lake: Lake) -> None:
    for query in sql.EXAMPLE_QUERIES.values():
        lake.run(query)
    for table in [t.name for t in sql.TABLES] + [v.name for v in sql.VIEWS]:
        counted = lake.run(f"SELECT count(*) AS n FROM {table}")["n"][0]
        assert counted > 0, table


def test_top_apps_equal_the_fleet_apps_query(lake: Lake) -> None:
    top = lake.run(TOP_APPS)
    assert not top.empty
    assert top.groupby("hour_of_day").size().max() <= 3
    assert set(top["hour_of_day"]) <= set(range(24))

    per_app = lake.run(_all_dates(TOP_APPS)).groupby("app_name")["seconds"].sum()
    first = lake.end - dt.timedelta(days=DAYS)
    fleet = FleetAppsQuery(first, lake.end + dt.timedelta(days=1)).load(lake.stores)
    games = fleet[fleet["category"] == "Games"].set_index("app_name")["seconds"]
    assert per_app.sort_index().to_dict() == games.sort_index().to_dict()


def test_week_over_week_rise_matches_the_stored_rows(lake: Lake) -> None:
    rows = _screen_time_rows(lake.stores)
    cut = (lake.end - dt.timedelta(days=7)).isoformat()
    start = (lake.end - dt.timedelta(days=14)).isoformat()
    rows = rows[rows["date"] > start]
    last = rows[rows["date"] <= cut].groupby("customer_id")["seconds"].sum()
    this = rows[rows["date"] > cut].groupby("customer_id")["seconds"].sum()
    weeks = pd.DataFrame({"last": last, "this": this}).fillna(0)
    expected = weeks[(weeks["last"] > 0) & (weeks["this"] >= 1.5 * weeks["last"])]

    risen = lake.run(RISE).set_index("customer_id")
    assert sorted(risen.index) == sorted(expected.index)
    for customer, row in risen.iterrows():
        assert row["last_week"] == expected.loc[customer, "last"]
        assert row["this_week"] == expected.loc[customer, "this"]


def test_revenue_by_product_and_hour_adds_up_to_the_business_rollup(lake: Lake) -> None:
    by_hour = lake.run(REVENUE)
    assert not by_hour.empty and set(by_hour["hour"]) <= set(range(24))

    revenue = lake.run(_all_dates(REVENUE)).groupby("product_id")["revenue"].sum()
    first = lake.end - dt.timedelta(days=DAYS)
    products = TopProductsQuery(first, lake.end, limit=0).load(lake.stores)
    dashboard = products.set_index("product_id")["revenue"]
    assert sorted(revenue.index) == sorted(dashboard.index)
    for product, amount in dashboard.items():
        # Both round to cents, per hour here and per day there.
        assert math.isclose(revenue[product], amount, abs_tol=0.01 * 24 * DAYS), product


def test_pipeline_lag_matches_the_stored_upload_times(lake: Lake) -> None:
    rows = _screen_time_rows(lake.stores)
    rows = rows[rows["date"] > (lake.end - dt.timedelta(days=7)).isoformat()]
    days = rows.drop_duplicates(["customer_id", "date", "uploaded_at"])
    day_end = pd.to_datetime(days["date"]) + pd.Timedelta(days=1)
    lag = days["uploaded_at"] - (day_end - pd.Timestamp("1970-01-01")).dt.total_seconds()
    hour = (days["uploaded_at"] // 3600).astype("int64") % 24

    lags = lake.run(LAG).set_index("processed_hour")
    assert lags["customer_days"].to_dict() == hour.value_counts().to_dict()
    expected = (lag.groupby(hour).mean() / 3600).round(2)
    assert lags["avg_lag_hours"].to_dict() == pytest.approx(expected.to_dict(), abs=0.011)


def test_quarantine_reasons_equal_the_pipelines_counts(lake: Lake) -> None:
    reasons = lake.run(QUARANTINE)
    assert reasons.groupby("code")["uploads"].sum().to_dict() == (
        lake.processed.quarantined_by_reason
    )
    documents = lake.run("SELECT count(*) AS n FROM quarantine")["n"][0]
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    stats = PipelineStatsQuery(since).load(lake.stores).set_index("metric")["value"]
    assert documents == stats["uploads_quarantined"] == lake.processed.quarantined > 0


def test_screen_time_view_keeps_only_the_latest_version_of_a_customer_day(lake: Lake) -> None:
    # An older version of one customer-day, as a replaced upload leaves it until compaction.
    [customer, date, uploaded_at] = lake.run(
        'SELECT customer_id, "date", uploaded_at FROM screen_time LIMIT 1'
    ).iloc[0]
    bucket = layout.screen_time_bucket(customer)
    stale = pa.table(
        {
            "customer_id": [customer],
            "content_hash": ["0" * 64],
            "uploaded_at": [float(uploaded_at) - 60],
            "hour": pa.array([3], pa.int8()),
            "app_id": ["stale.app"],
            "seconds": pa.array([999], pa.int32()),
            "sessions": pa.array([1], pa.int16()),
            "pickups": pa.array([1], pa.int16()),
            "notifications": pa.array([1], pa.int16()),
        }
    )
    key = layout.screen_time_part_key(date, bucket, "stale-test")
    lake.stores.lake.write_table(key, stale)
    try:
        apps = lake.run("SELECT DISTINCT app_id FROM screen_time_parts")["app_id"]
        assert "stale.app" in set(apps)
        assert "stale.app" not in set(lake.run("SELECT app_id FROM screen_time")["app_id"])
    finally:
        lake.stores.lake.delete(key)


def test_an_empty_lake_has_every_table_empty_and_typed(tmp_path: Path) -> None:
    settings = DataSettings(lake_root=tmp_path / "lake", state_db=tmp_path / "state.sqlite")
    connection = sql.connect(settings)
    for name in [t.name for t in sql.TABLES] + [v.name for v in sql.VIEWS]:
        assert sql.run_query(connection, f"SELECT * FROM {name}").rows == [], name
    result = sql.run_query(connection, "SELECT typeof(hour) AS t FROM screen_time_parts")
    assert result.columns == ["t"]
