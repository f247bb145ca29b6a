"""Upload, event and metric validation: every reason code from a crafted input."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest

from pipeline import schema
from pipeline.schema import validate_event_line, validate_metric_line, validate_upload

DAY = dt.date(2026, 11, 1)
TODAY = dt.date(2026, 11, 10)


def session(start: str, end: str, app: str = "com.instagram.android", **extra: Any) -> dict:
    return {
        "app_id": app,
        "app_name": "Instagram",
        "category": "Social",
        "start": start,
        "end": end,
        "pickups": 1,
        "notifications": 3,
        **extra,
    }


def upload(sessions: list[dict] | None = None, **fields: Any) -> dict:
    body = {
        "schema_version": 1,
        "customer_id": "c0000042",
        "date": DAY.isoformat(),
        "timezone": "Europe/Berlin",
        "device": {
            "device_id": "d-5f2c",
            "model": "Pixel 8",
            "os": "Android 15",
            "agent_version": "5.2.1",
        },
        "sessions": [
            session("2026-11-01T08:15:03", "2026-11-01T08:21:44"),
            session("2026-11-01T09:00:00", "2026-11-01T09:30:00", "com.whatsapp"),
        ]
        if sessions is None
        else sessions,
    }
    body.update(fields)
    return body


def encode(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def check(body: object, **keys: str) -> schema.UploadValidation:
    raw = body if isinstance(body, bytes) else encode(body)
    return validate_upload(raw, today=TODAY, **keys)


def test_valid_upload_is_accepted_with_offsets_from_midnight() -> None:
    result = check(upload(), key_customer_id="c0000042", key_date="2026-11-01")
    assert result.ok and result.upload is not None
    first = result.upload.sessions[0]
    assert (first.start_offset, first.end_offset) == (
        8 * 3600 + 15 * 60 + 3,
        8 * 3600 + 21 * 60 + 44,
    )
    assert result.upload.date == DAY


def test_empty_day_is_accepted() -> None:
    result = check(upload(sessions=[]))
    assert result.ok and result.upload is not None and result.upload.sessions == ()


def test_session_crossing_midnight_is_accepted() -> None:
    result = check(upload(sessions=[session("2026-11-01T23:50:00", "2026-11-02T00:10:00")]))
    assert result.ok
    assert result.upload.sessions[0].end_offset == 24 * 3600 + 600


def test_unsorted_sessions_are_sorted_and_touching_ones_do_not_overlap() -> None:
    sessions = [
        session("2026-11-01T10:00:00", "2026-11-01T10:05:00"),
        session("2026-11-01T09:00:00", "2026-11-01T10:00:00"),
    ]
    result = check(upload(sessions=sessions))
    assert result.ok, result.problems
    assert [s.start_offset for s in result.upload.sessions] == [9 * 3600, 10 * 3600]


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe{}", b"hello", b'{"a": 1} trailing', b"{'a': 1}", b"[" * 100_000 + b"]" * 100_000],
)
def test_not_json(raw: bytes) -> None:
    assert check(raw).codes == ["not_json"]


@pytest.mark.parametrize("cut", [0.3, 0.5, 0.9, -1])
def test_truncated_json_is_told_apart_from_other_syntax_errors(cut: float) -> None:
    raw = encode(upload())
    end = len(raw) - 1 if cut == -1 else int(len(raw) * cut)
    assert check(raw[:end]).codes == ["truncated"]


def test_truncated_inside_a_string() -> None:
    raw = encode(upload())
    cut = raw.index(b"Instagram") + 4
    assert check(raw[:cut]).codes == ["truncated"]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda b: b.pop("timezone"), "timezone"),
        (lambda b: b.update(extra=1), "extra"),
        (lambda b: b.update(schema_version=2), "schema_version"),
        (lambda b: b.update(schema_version=True), "schema_version"),
        (lambda b: b.update(timezone="Mars/Olympus_Mons"), "timezone"),
        (lambda b: b.update(timezone="../../etc/passwd"), "timezone"),
        (lambda b: b.update(sessions={"a": 1}), "sessions"),
        (lambda b: b.update(customer_id=42), "customer_id"),
        (lambda b: b.update(device="pixel"), "device"),
        (lambda b: b["device"].pop("model"), "device.model"),
        (lambda b: b["sessions"][0].update(app_id=""), "sessions[0].app_id"),
        (lambda b: b["sessions"][0].update(category="x" * 65), "sessions[0].category"),
        (lambda b: b["sessions"][0].update(app_name=None), "sessions[0].app_name"),
        (lambda b: b["sessions"][0].pop("end"), "sessions[0].end"),
        (lambda b: b["sessions"][0].update(colour="red"), "sessions[0].colour"),
        (lambda b: b["sessions"][1].update(start="2026-11-01 09:00"), "sessions[1].start"),
        (lambda b: b["sessions"][1].update(end="2026-11-01T09:30:00+01:00"), "sessions[1].end"),
        (lambda b: b["sessions"][1].update(end="2026-11-01T25:30:00"), "sessions[1].end"),
    ],
)
def test_schema_problems_name_their_path(change, path: str) -> None:
    body = copy.deepcopy(upload())
    change(body)
    result = check(body)
    assert "schema" in result.codes
    assert path in [p.path for p in result.problems if p.code == "schema"]
    assert result.upload is None


def test_top_level_not_an_object() -> None:
    assert check(b"[1, 2]").codes == ["schema"]


def test_key_mismatch_for_customer_and_date() -> None:
    result = check(upload(), key_customer_id="c0000043", key_date="2026-11-02")
    assert result.codes == ["key_mismatch"]
    assert sorted(p.path for p in result.problems) == ["customer_id", "date"]


@pytest.mark.parametrize("customer_id", ["../etc", "a/b", "a\x00b", "x" * 65, "", "-lead", "a b"])
def test_unsafe_customer_id(customer_id: str) -> None:
    assert "unsafe_customer_id" in check(upload(customer_id=customer_id)).codes
    assert not schema.is_safe_customer_id(customer_id)


def test_longest_safe_customer_id_is_accepted() -> None:
    assert check(upload(customer_id="a" * 64)).ok


@pytest.mark.parametrize("date", ["2026-02-30", "2026-1-01", "01/11/2026", "2026-11-01T00"])
def test_bad_date(date: str) -> None:
    assert "bad_date" in check(upload(date=date, sessions=[])).codes


def test_future_date_allows_one_day_of_time_zone_slack() -> None:
    tomorrow = (TODAY + dt.timedelta(days=1)).isoformat()
    later = (TODAY + dt.timedelta(days=2)).isoformat()
    assert check(upload(date=tomorrow, sessions=[])).ok
    assert check(upload(date=later, sessions=[])).codes == ["future_date"]


@pytest.mark.parametrize("end", ["2026-11-01T08:15:03", "2026-11-01T08:00:00"])
def test_end_before_or_at_start(end: str) -> None:
    result = check(upload(sessions=[session("2026-11-01T08:15:03", end)]))
    assert result.codes == ["end_before_start"]


def test_overlap_is_found_after_sorting() -> None:
    sessions = [
        session("2026-11-01T12:00:00", "2026-11-01T12:30:00"),
        session("2026-11-01T08:00:00", "2026-11-01T09:00:00"),
        session("2026-11-01T08:59:59", "2026-11-01T09:10:00"),
    ]
    result = check(upload(sessions=sessions))
    assert result.codes == ["overlap"]
    assert [p.path for p in result.problems] == ["sessions[2]"]


def test_session_inside_a_longer_one_overlaps() -> None:
    sessions = [
        session("2026-11-01T08:00:00", "2026-11-01T10:00:00"),
        session("2026-11-01T08:30:00", "2026-11-01T08:40:00"),
        session("2026-11-01T09:00:00", "2026-11-01T09:10:00"),
    ]
    assert [p.path for p in check(upload(sessions=sessions)).problems] == [
        "sessions[1]",
        "sessions[2]",
    ]


def test_session_outside_day() -> None:
    result = check(upload(sessions=[session("2026-10-31T23:00:00", "2026-10-31T23:10:00")]))
    assert result.codes == ["session_outside_day"]


def test_too_long_is_more_than_24_hours() -> None:
    exactly = check(upload(sessions=[session("2026-11-01T06:00:00", "2026-11-02T06:00:00")]))
    longer = check(upload(sessions=[session("2026-11-01T06:00:00", "2026-11-02T06:00:01")]))
    assert exactly.ok
    assert longer.codes == ["too_long"]


def test_oversize_is_checked_before_parsing() -> None:
    raw = b"{" + b"x" * schema.MAX_UPLOAD_BYTES  # not JSON either: only oversize is reported
    result = check(raw)
    assert result.codes == ["oversize"]


@pytest.mark.parametrize("value", [-1, 1.5, "3", True, None])
def test_negative_or_non_integer_counts(value: object) -> None:
    body = upload()
    body["sessions"][1]["notifications"] = value
    result = check(body)
    assert result.codes == ["negative_count"]
    assert result.problems[0].path == "sessions[1].notifications"


def test_all_problems_are_reported_together() -> None:
    sessions = [
        session("2026-11-01T08:00:00", "2026-11-01T07:00:00"),
        session("2026-11-01T09:00:00", "2026-11-01T09:30:00", pickups=-2),
        session("2026-11-01T09:10:00", "2026-11-01T09:20:00"),
    ]
    result = check(upload(sessions=sessions, timezone="Nowhere/Else"), key_customer_id="c1")
    assert set(result.codes) == {
        "schema",
        "key_mismatch",
        "end_before_start",
        "negative_count",
        "overlap",
    }


def test_hostile_field_names_are_escaped_in_problem_paths() -> None:
    body = upload()
    body["\x1b[31m"] = 1
    path = check(body).problems[0].path
    assert "\x1b" not in path


# ---- events and metrics ------------------------------------------------------------------------


def event(event_type: str, **changes: Any) -> dict:
    base = {
        "event_id": "e1",
        "event_type": event_type,
        "ts": "2026-11-01T08:15:03Z",
        "user_id": "u0000001",
        "session_id": "s1",
    }
    extra = {
        "pageview": {"page": "/products/p017", "referrer": "https://example.com/"},
        "purchase": {
            "order_id": "o1",
            "product_id": "p017",
            "product_name": "Socks",
            "category": "Apparel",
            "quantity": 2,
            "unit_price": 4.5,
            "amount": 9.0,
            "currency": "USD",
        },
        "custom": {"name": "search", "properties": {"query": "socks"}},
    }[event_type]
    return {**base, **extra, **changes}


@pytest.mark.parametrize("event_type", schema.EVENT_TYPES)
def test_valid_events_parse_with_aware_timestamps(event_type: str) -> None:
    result = validate_event_line(encode(event(event_type)), event_type)
    assert result.problems == ()
    assert result.record["ts"] == dt.datetime(2026, 11, 1, 8, 15, 3, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("line", "event_type", "code"),
    [
        (b'{"event_id": "e1"', "pageview", "truncated"),
        (b"not json", "pageview", "not_json"),
        (encode(event("pageview", ts="2026-11-01 08:15:03")), "pageview", "bad_ts"),
        (encode(event("pageview", ts="2026-11-01T08:15:03+01:00")), "pageview", "bad_ts"),
        (encode(event("pageview")), "purchase", "event_type_mismatch"),
        (
            encode({k: v for k, v in event("custom").items() if k != "name"}),
            "custom",
            "missing_field",
        ),
        (encode(event("custom", properties=[1])), "custom", "wrong_type"),
        (encode(event("purchase", quantity=True)), "purchase", "wrong_type"),
        (encode(event("purchase", quantity=0)), "purchase", "bad_value"),
        (encode(event("purchase", debug=1)), "purchase", "unexpected_field"),
        (encode(event("pageview", event_id="")), "pageview", "bad_value"),
    ],
)
def test_bad_event_lines(line: bytes, event_type: str, code: str) -> None:
    result = validate_event_line(line, event_type)
    assert result.record is None
    assert code in result.codes


def test_metric_lines() -> None:
    good = {"ts": "2026-11-01T08:15:00Z", "host": "web-1", "metric": "cpu_percent", "value": 23}
    result = validate_metric_line(encode(good))
    assert result.record["value"] == 23.0 and isinstance(result.record["value"], float)
    assert "wrong_type" in validate_metric_line(encode({**good, "value": "23"})).codes
    assert "bad_value" in validate_metric_line(encode({**good, "host": ""})).codes
    assert "missing_field" in validate_metric_line(encode({"ts": good["ts"]})).codes
