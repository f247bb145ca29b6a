"""The ingest benchmark's app: durability off exists only there, and still ingests."""

from __future__ import annotations

from bench.ingest import UnsyncedLake, bench_app
from data_access.apikeys import create_key
from tests.live.factories import pageview


def test_bench_app_with_durability_off_still_stores_events(
    local_settings, local_stores, monkeypatch
):
    monkeypatch.setenv("LAKE_ROOT", str(local_settings.lake_root))
    monkeypatch.setenv("STATE_DB", str(local_settings.state_db))
    token = create_key(local_stores.records, "bench", ["ingest"], created_by="t").token
    server = bench_app(durable=False)
    api = server.extensions["ingest_api"]
    assert isinstance(api.stores.lake, UnsyncedLake)
    response = server.test_client().post(
        "/api/ingest/pageview", json=pageview(), headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 202
    assert len(list(local_stores.lake.list("raw/events/pageview/"))) == 1
    assert not isinstance(
        bench_app(durable=True).extensions["ingest_api"].stores.lake, UnsyncedLake
    )
