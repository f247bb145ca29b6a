"""Integrity under messy input: whatever mix of uploads arrives, in whatever order and
through whichever entry point, every upload ends processed or quarantined exactly once,
every accepted event is present exactly once, and the incremental rollups equal a
recomputation from scratch.

``pipeline.reconcile`` is the audit; these tests feed it sequences a real fleet produces
(re-uploads, duplicates, garbage, hostile keys, replayed event batches) and check that it
finds nothing wrong, and that the counts add up.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import sqlite3
import tempfile
import urllib.parse
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from hypothesis import event, given, settings
from hypothesis import strategies as st

from data_access import layout
from data_access.factory import build_stores
from data_access.settings import DataSettings
from data_access.stores import Stores
from pipeline import rollup
from pipeline.events import compact_events
from pipeline.generate import customer_id, customer_profile, generate, screen_time_upload
from pipeline.process import drain, handle_s3_event
from pipeline.rollup import rollup_all
from tests.fuzz.conftest import FUZZ
from tests.integrity.checks import assert_reconciled

SEED = 3
END = dt.date(2024, 5, 7)
DAYS = [END - dt.timedelta(days=n) for n in range(3)]
CUSTOMERS = 3


def _settings(root: Path) -> DataSettings:
    return DataSettings(lake_root=root / "lake", state_db=root / "state.sqlite")


def _upload(number: int, day: dt.date, variant: int = 0) -> bytes:
    """A valid upload; a non-zero variant is a corrected re-upload (other bytes, still valid)."""
    body = None
    for profile_number in (number, *range(CUSTOMERS, CUSTOMERS + 20)):
        profile = customer_profile(SEED, profile_number, END)
        body = screen_time_upload(SEED, profile, day, body_customer_id=customer_id(number))
        if body is not None and json.loads(body)["sessions"]:
            break
    assert body is not None
    document = json.loads(body)
    if variant:
        document["sessions"] = document["sessions"][: max(1, len(document["sessions"]) - variant)]
    return json.dumps(document).encode()


GARBAGE = [b"", b"{", b"[]", b'{"customerId": 5}', b"\xff\xfe\x00", json.dumps({"a": 1}).encode()]
HOSTILE_CUSTOMERS = ["..", "%2e%2e", "c\u0430", "x y", "c/../d"]

OPERATIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("upload"),
            st.integers(0, CUSTOMERS - 1),
            st.sampled_from(DAYS),
            st.integers(0, 2),
        ),
        st.tuples(st.just("garbage"), st.integers(0, CUSTOMERS - 1), st.sampled_from(DAYS)),
        st.tuples(st.just("hostile"), st.sampled_from(HOSTILE_CUSTOMERS), st.sampled_from(DAYS)),
        st.tuples(st.just("process")),
    ),
    min_size=1,
    max_size=14,
)


def _apply(stores: Stores, operation: tuple, data: st.DataObject) -> None:
    kind = operation[0]
    if kind == "process":
        drain(stores)
        rollup_all(stores)
        return
    if kind == "upload":
        _, number, day, variant = operation
        key = layout.raw_upload_key(customer_id(number), day.isoformat())
        body = _upload(number, day, variant)
    elif kind == "garbage":
        _, number, day = operation
        key = layout.raw_upload_key(customer_id(number), day.isoformat())
        body = data.draw(st.sampled_from(GARBAGE))
    else:
        _, customer, day = operation
        key = f"{layout.RAW_SCREEN_TIME}{customer}/{day.isoformat()}.json"
        body = _upload(0, day)
    with contextlib.suppress(ValueError):  # the lake refuses the key; the event still names it
        stores.lake.write_bytes(key, body)
    # Half the uploads are processed at once (a Lambda given the S3 event), the rest are
    # queued for the next pass (the local worker).
    if not data.draw(st.booleans(), label="event"):
        stores.queue.send([key])
    else:
        event = {
            "Records": [
                {
                    "eventName": "ObjectCreated:Put",
                    "s3": {"object": {"key": urllib.parse.quote_plus(key, safe="/")}},
                }
            ]
        }
        handle_s3_event(event, stores)


def _rollup_tables(stores: Stores) -> dict[str, pd.DataFrame]:
    tables = {}
    for prefix in (layout.ROLLUP_SCREEN_TIME, layout.ROLLUP_BUSINESS):
        for info in stores.lake.list(prefix):
            frame = stores.lake.read_table([info.key]).to_pandas()
            columns = sorted(frame.columns)
            tables[info.key] = frame[columns].sort_values(columns).reset_index(drop=True)
    return tables


def assert_rollups_equal_a_recomputation(settings_: DataSettings, scratch: Path) -> None:
    """Copy the lake, drop its rollups, watermarks and folded versions, roll up from scratch,
    compare: the additive fold, after any sequence, equals one fold of what is current."""
    copy = _settings(scratch)
    shutil.copytree(settings_.lake_root, copy.lake_root)
    # SQLite's backup, not a file copy: recent writes may still sit in the WAL file.
    with sqlite3.connect(settings_.state_db) as source, sqlite3.connect(copy.state_db) as target:
        source.backup(target)
        # Forget which versions the summaries hold: the fold starts from nothing.
        target.execute("DELETE FROM state WHERE name LIKE 'folded:%'")
    fresh = build_stores(copy)
    shutil.rmtree(copy.lake_root / "rollups", ignore_errors=True)
    fresh.state.put(rollup.WATERMARK_SCREEN_TIME, "0")
    fresh.state.put(rollup.WATERMARK_BUSINESS, "0")
    rollup_all(fresh)
    incremental = _rollup_tables(build_stores(settings_))
    recomputed = _rollup_tables(fresh)
    assert sorted(incremental) == sorted(recomputed)
    for key, frame in incremental.items():
        pd.testing.assert_frame_equal(frame, recomputed[key], check_dtype=False, obj=key)


@settings(FUZZ, max_examples=25)
@given(operations=OPERATIONS, data=st.data())
def test_any_upload_sequence_reconciles_and_rollups_match(
    operations: list[tuple], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory(prefix="mc-integrity-") as folder:
        root = Path(folder)
        settings_ = _settings(root / "live")
        settings_.lake_root.mkdir(parents=True)
        stores = build_stores(settings_)
        for operation in operations:
            _apply(stores, operation, data)
        drain(stores)
        rollup_all(stores)

        report = assert_reconciled(stores)
        event(f"processed {min(report.processed, 3)}+, quarantined {min(report.quarantined, 3)}+")
        valid_days = {
            (record.customer_id, record.date) for record in stores.index.uploaded_since(-1.0)
        }
        # A day processed once stays processed when garbage later lands on its key (the garbage
        # is quarantined): every processed upload is indexed, not every index record current.
        assert report.processed <= len(valid_days)
        for customer, _date in valid_days:
            assert layout.is_safe_customer_id(customer)
        # Nothing new on a second pass: processed or quarantined once.
        again = drain(stores)
        assert again.processed == again.replaced == 0
        assert_reconciled(stores)
        assert_rollups_equal_a_recomputation(settings_, root / "recomputed")


def test_replayed_and_broken_event_batches_are_counted_once(tmp_path: Path) -> None:
    settings_ = _settings(tmp_path / "live")
    stores = build_stores(settings_)
    generate(stores.lake, queue=stores.queue, customers=2, days=2, seed=SEED, end_date=END, hosts=0)
    compact_events(stores)
    batch = max(stores.lake.list("raw/events/pageview/"), key=lambda info: info.size)
    lines = stores.lake.read_bytes(batch.key).splitlines()
    assert len(lines) >= 3
    folder = batch.key.rsplit("/", 1)[0]
    # A client retried a batch (same event ids), and another arrived with broken lines.
    stores.lake.write_bytes(f"{folder}/replayed.jsonl", b"\n".join(lines[:3]) + b"\n")
    broken = [b"{not json", b'{"event_id": 5}', b'{"event_type": "purchase"}']
    stores.lake.write_bytes(f"{folder}/broken.jsonl", b"\n".join(broken) + b"\n")
    compact_events(stores)
    compact_events(stores)  # idempotent: rewrites hours from raw
    drain(stores)
    rollup_all(stores)

    report = assert_reconciled(stores)
    assert report.events_duplicates_collapsed >= 3
    assert report.events_quarantined >= len(broken)
    processed = sum(
        pq.read_metadata(stores.lake.root / info.key).num_rows  # type: ignore[attr-defined]
        for info in stores.lake.list(layout.PROCESSED_EVENTS)
    )
    assert processed == report.events_processed_rows
    assert processed == report.events_raw_lines - report.events_quarantined - (
        report.events_duplicates_collapsed
    )
    assert_rollups_equal_a_recomputation(settings_, tmp_path / "recomputed")
