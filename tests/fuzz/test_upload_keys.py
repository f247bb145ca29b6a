"""Hostile upload keys and customer ids through the real processing entry points.

Keys arrive as S3 ``ObjectCreated`` events (URL-encoded, sometimes twice), name customers
with path escapes, percent-encodings, control characters and Unicode look-alikes, and carry
a perfectly valid upload body. Whatever the key, the upload is quarantined (or ignored when
it is not a screen-time key; found quarantined already when it comes again), nothing is
processed under a hostile id, and no file outside the lake folder is created, changed or
read back.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_access import layout
from data_access.factory import build_stores
from data_access.settings import DataSettings
from data_access.stores import Stores
from pipeline.generate import customer_profile, screen_time_upload
from pipeline.process import drain, handle_s3_event, process_upload, quarantine_keys
from pipeline.reconcile import requeue_missed
from tests.fuzz.conftest import FUZZ, SECRET_MARKER, plant_secrets
from tests.integrity.checks import assert_reconciled

SEED = 5
DAY = dt.date(2024, 5, 1)
TODAY = dt.date(2024, 5, 2)
LAKE_PREFIXES = ("raw/", "processed/", "quarantine/", "records/", "rollups/")

HOSTILE_IDS = st.sampled_from(
    [
        "..",
        "../..",
        "../../outside",
        "..%2f..%2foutside",
        "%2e%2e",
        "%252e%252e%252f",
        "..\\..\\outside",
        "c0000002/../../../outside",
        "c0000002\x00",
        "c0000002\r\nX-Injected: 1",
        "\tc0000002",
        "c0000002 ",
        "\u202ec0000002",
        "c\u0430000002",  # Cyrillic a
        "\uff43\uff10\uff10\uff10\uff10\uff10\uff10\uff12",  # full-width
        "c0000002\u2024json",  # one-dot leader
        "\u2025",  # two-dot leader
        "c" * 65,
        "",
        "-leading-dash",
        "_underscore",
    ]
)
CUSTOMER_IDS = HOSTILE_IDS | st.text(max_size=30)
DATES = st.sampled_from([DAY.isoformat(), "2024-02-30", "2024-5-1", "../2024-05-01", "99999"])


@dataclass
class Lakeside:
    """A lake inside a folder with secrets planted around it, and its stores."""

    around: Path
    lake_root: Path
    stores: Stores
    body: bytes  # a valid upload for customer c0000001 on DAY

    def outside_files(self) -> dict[str, tuple[int, int]]:
        found = {}
        for folder, folders, files in os.walk(self.around):
            # Not into the lake itself: only its surroundings are watched.
            folders[:] = [f for f in folders if Path(folder, f).resolve() != self.lake_root]
            for name in files:
                stat = Path(folder, name).stat()
                found[os.path.join(folder, name)] = (stat.st_size, stat.st_mtime_ns)
        return found


@pytest.fixture(scope="module")
def lakeside(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lakeside]:
    root = tmp_path_factory.mktemp("upload-keys")
    around = root / "around"
    lake_root = (around / "lake").resolve()
    plant_secrets(around / "outside")
    plant_secrets(around)  # right beside the lake: what "../x" from lake_root reaches
    settings = DataSettings(lake_root=lake_root, state_db=root / "state" / "state.sqlite")
    profile = customer_profile(SEED, 1, DAY)
    body = screen_time_upload(SEED, profile, DAY)
    assert body is not None and json.loads(body)["sessions"]
    yield Lakeside(around, lake_root, build_stores(settings), body)


def _event(*keys: str) -> dict:
    return {
        "Records": [
            {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": key}}} for key in keys
        ]
    }


def _write_if_the_lake_allows(stores: Stores, key: str, body: bytes) -> bool:
    try:
        stores.lake.write_bytes(key, body)
    except (ValueError, OSError):
        return False
    return True


def _lake_files(lakeside: Lakeside) -> dict[str, int]:
    return {
        info.key: info.size
        for prefix in ("processed/", "quarantine/")
        for info in lakeside.stores.lake.list(prefix)
    }


def _assert_inside(lakeside: Lakeside) -> None:
    for folder, _, files in os.walk(lakeside.lake_root):
        for name in files:
            path = Path(folder, name).resolve()
            assert path.is_relative_to(lakeside.lake_root), path
            key = path.relative_to(lakeside.lake_root).as_posix()
            assert key.startswith(LAKE_PREFIXES) or key.startswith(".") or "/." in key, key


@FUZZ
@given(customer=CUSTOMER_IDS, date=DATES, encodings=st.integers(min_value=0, max_value=2))
def test_hostile_keys_from_s3_events_are_quarantined_inside_the_lake(
    lakeside: Lakeside, customer: str, date: str, encodings: int
) -> None:
    before = lakeside.outside_files()
    key = f"{layout.RAW_SCREEN_TIME}{customer}/{date}.json"
    written = _write_if_the_lake_allows(lakeside.stores, key, lakeside.body)
    sent = key
    for _ in range(encodings + 1):
        sent = urllib.parse.quote_plus(sent, safe="/")
    outcomes = handle_s3_event(_event(sent), lakeside.stores)

    decoded = urllib.parse.unquote_plus(sent)
    for outcome in outcomes:
        assert outcome.raw_key == decoded
        if outcome.reason is None:
            # Accepted (processed, replaced, or a duplicate of an indexed upload): only a key
            # that really names a safe customer and date, and the body names c0000001: the
            # key must say so too.
            assert outcome.status in ("processed", "replaced", "duplicate"), outcome
            assert outcome.customer_id == "c0000001" and decoded == key and written, outcome
        else:
            # Quarantined now, or found quarantined already (the same key and bytes again).
            assert outcome.status in ("quarantined", "duplicate"), outcome
            _, reason_key = quarantine_keys(outcome.raw_key, outcome.content_hash)
            assert lakeside.stores.lake.exists(reason_key), outcome
    if not written and encodings == 0 and key.startswith(layout.RAW_SCREEN_TIME):
        assert len(outcomes) == 1 and outcomes[0].reason is not None, outcomes
    assert lakeside.outside_files() == before
    _assert_inside(lakeside)


# Each example lists and re-checks the whole (growing) lake: fewer examples.
@settings(FUZZ, max_examples=60)
@given(customer=CUSTOMER_IDS, date=DATES)
def test_hostile_keys_found_by_a_listing_are_handled_once(
    lakeside: Lakeside, customer: str, date: str
) -> None:
    before = lakeside.outside_files()
    key = f"{layout.RAW_SCREEN_TIME}{customer}/{date}.json"
    if _write_if_the_lake_allows(lakeside.stores, key, lakeside.body):
        # Its notification was lost: the catch-up's listing finds it.
        assert requeue_missed(lakeside.stores) >= 1
        first = drain(lakeside.stores)
        assert first.failed == 0 and first.handled >= 1, first
        handled = _lake_files(lakeside)
        # A second pass may queue the upload again (its mtime is too fresh to skip), but
        # it must write nothing: the same bytes are quarantined (or processed) once.
        requeue_missed(lakeside.stores)
        again = drain(lakeside.stores)
        assert (again.failed, again.handled) == (0, again.duplicate), again
        assert _lake_files(lakeside) == handled
    else:
        outcome = process_upload(lakeside.stores, key)
        assert outcome.status in ("quarantined", "duplicate")
        assert outcome.reason is not None and outcome.customer_id is None, outcome
    assert lakeside.outside_files() == before
    _assert_inside(lakeside)


@pytest.mark.parametrize(
    "key",
    [
        "raw/screen_time/../../outside/secret.txt",
        "raw/screen_time/c0000001/../../../secret.txt",
        "raw/screen_time/..%2F..%2Fsecret.txt",
        "/etc/passwd",
        "raw/screen_time/c0000001/2024-05-01.json\x00.png",
    ],
)
def test_a_path_escape_is_never_read_or_copied(lakeside: Lakeside, key: str) -> None:
    outcomes = handle_s3_event(_event(urllib.parse.quote_plus(key, safe="/")), lakeside.stores)
    for outcome in outcomes:
        assert outcome.status == "quarantined"
        assert outcome.bytes == 0 or SECRET_MARKER.encode() not in lakeside.body
    for info in lakeside.stores.lake.list(layout.QUARANTINE_SCREEN_TIME):
        assert SECRET_MARKER.encode() not in lakeside.stores.lake.read_bytes(info.key)


def test_nothing_was_indexed_under_a_hostile_id_and_the_lake_reconciles(
    lakeside: Lakeside,
) -> None:
    # Runs after the fuzzing above (same module-scoped lake).
    for record in lakeside.stores.index.uploaded_since(-1.0):
        assert layout.is_safe_customer_id(record.customer_id), record
        assert record.customer_id == "c0000001", record
    # Uploads whose notification never came (an event named another key) are caught up.
    requeue_missed(lakeside.stores)
    assert drain(lakeside.stores).failed == 0
    report = assert_reconciled(lakeside.stores)
    assert report.quarantined >= 1
