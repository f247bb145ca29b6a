"""Validation of screen-time uploads (schema v1), business events and metric points.

Every check reports all the problems it finds, each with a machine-readable code, so a
quarantined input carries the whole list of what is wrong with it, not only the first.

Session times are the device's wall clock without an offset. Durations, overlaps and the
midnight split are computed on that wall clock: the format carries no offset that would
tell the two 01:30s of a DST fall-back apart, so wall-clock arithmetic is the only
consistent reading of it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from data_access.layout import is_safe_customer_id

SCHEMA_VERSION = 1
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
MAX_SESSION_SECONDS = 24 * 3600
# Time zones put a device's "today" up to 14 h ahead of UTC: allow one day of slack.
FUTURE_SLACK = dt.timedelta(days=1)
# Per-session counts go into int16 hourly sums; a single session beyond this is not a phone.
MAX_SESSION_COUNT = 10_000
MAX_LENGTHS = {"app_id": 255, "app_name": 200, "category": 64}
MAX_DETAIL_CHARS = 200

UPLOAD_FIELDS = frozenset(
    {"schema_version", "customer_id", "date", "timezone", "device", "sessions"}
)
DEVICE_FIELDS = frozenset({"device_id", "model", "os", "agent_version"})
SESSION_FIELDS = frozenset(
    {"app_id", "app_name", "category", "start", "end", "pickups", "notifications"}
)

# Reason codes, as they appear in quarantine reason documents.
NOT_JSON = "not_json"
TRUNCATED = "truncated"
SCHEMA = "schema"
KEY_MISMATCH = "key_mismatch"
UNSAFE_CUSTOMER_ID = "unsafe_customer_id"
BAD_DATE = "bad_date"
FUTURE_DATE = "future_date"
END_BEFORE_START = "end_before_start"
OVERLAP = "overlap"
SESSION_OUTSIDE_DAY = "session_outside_day"
TOO_LONG = "too_long"
OVERSIZE = "oversize"
NEGATIVE_COUNT = "negative_count"
BAD_KEY = "bad_key"


@dataclass(frozen=True)
class Problem:
    code: str
    path: str  # where in the document, e.g. "sessions[3].end"
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "path": self.path, "detail": self.detail}


class Session(NamedTuple):
    """One validated session; offsets are whole seconds after the upload date's midnight.

    A tuple rather than a dataclass: an upload builds ~300 of them on the hot path.
    """

    app_id: str
    app_name: str
    category: str
    start_offset: int
    end_offset: int
    pickups: int
    notifications: int


@dataclass(frozen=True)
class Upload:
    customer_id: str
    date: dt.date
    timezone: str
    device: dict[str, str]
    sessions: tuple[Session, ...]  # sorted by start


@dataclass(frozen=True)
class UploadValidation:
    upload: Upload | None  # None whenever problems is not empty
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def codes(self) -> list[str]:
        """Distinct codes in first-seen order."""
        return list(dict.fromkeys(problem.code for problem in self.problems))


def show_value(value: object) -> str:
    """A bounded, printable rendering of untrusted input for a problem's detail."""
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 3] + "..."


def parse_iso_date(value: object) -> dt.date | None:
    """A strict YYYY-MM-DD date, or None."""
    if not isinstance(value, str) or len(value) != 10 or value[4] != "-" or value[7] != "-":
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _is_local_time_text(value: object) -> bool:
    # Fixed positions rule out the other forms fromisoformat accepts (offsets, week dates).
    return (
        type(value) is str
        and len(value) == 19
        and value[4] == "-"
        and value[7] == "-"
        and value[10] == "T"
        and value[13] == ":"
        and value[16] == ":"
    )


def _parse_local_time(value: object) -> dt.datetime | None:
    """A strict YYYY-MM-DDTHH:MM:SS wall-clock time (no offset, no fraction), or None."""
    if not _is_local_time_text(value):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is None else None


@lru_cache(maxsize=512)
def is_known_timezone(name: str) -> bool:
    if not name or len(name) > 64:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def decode_json(raw: bytes) -> tuple[Any, Problem | None]:
    """Parse UTF-8 JSON; a syntax error at the end of the input means the body was cut short."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, Problem(NOT_JSON, "", f"not UTF-8 at byte {exc.start}")
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        # An unterminated string reports where the string began, but only end of input causes it.
        at_end = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        code = TRUNCATED if at_end else NOT_JSON
        return None, Problem(code, "", f"{exc.msg} at char {exc.pos} of {len(text)}")
    except RecursionError:
        return None, Problem(NOT_JSON, "", "nested too deeply")


def validate_upload(
    raw: bytes,
    *,
    today: dt.date,
    key_customer_id: str | None = None,
    key_date: str | None = None,
) -> UploadValidation:
    """Validate raw upload bytes against schema v1 and the key they were stored under.

    ``today`` is the current UTC date; dates more than a day after it are in the future.
    """
    if len(raw) > MAX_UPLOAD_BYTES:
        # Checked before parsing: a huge body must not cost a parse.
        detail = f"{len(raw)} bytes > {MAX_UPLOAD_BYTES}"
        return UploadValidation(None, (Problem(OVERSIZE, "", detail),))
    body, problem = decode_json(raw)
    if problem is not None:
        return UploadValidation(None, (problem,))
    problems: list[Problem] = []
    if not isinstance(body, dict):
        problems.append(Problem(SCHEMA, "", f"top level is {type(body).__name__}, not object"))
        return UploadValidation(None, tuple(problems))

    for name in sorted(UPLOAD_FIELDS - body.keys()):
        problems.append(Problem(SCHEMA, name, "missing field"))
    for name in sorted(body.keys() - UPLOAD_FIELDS):
        problems.append(Problem(SCHEMA, show_value(name)[1:-1], "unexpected field"))

    version = body.get("schema_version")
    if "schema_version" in body and (not _is_int(version) or version != SCHEMA_VERSION):
        problems.append(Problem(SCHEMA, "schema_version", f"unknown version {show_value(version)}"))

    customer_id = body.get("customer_id")
    if "customer_id" in body:
        if not isinstance(customer_id, str):
            problems.append(Problem(SCHEMA, "customer_id", "not a string"))
        elif not is_safe_customer_id(customer_id):
            problems.append(Problem(UNSAFE_CUSTOMER_ID, "customer_id", show_value(customer_id)))
        if key_customer_id is not None and customer_id != key_customer_id:
            detail = f"body {show_value(customer_id)} != key {show_value(key_customer_id)}"
            problems.append(Problem(KEY_MISMATCH, "customer_id", detail))

    date_text = body.get("date")
    date = parse_iso_date(date_text)
    if "date" in body:
        if not isinstance(date_text, str):
            problems.append(Problem(SCHEMA, "date", "not a string"))
        elif date is None:
            problems.append(Problem(BAD_DATE, "date", show_value(date_text)))
        elif date > today + FUTURE_SLACK:
            problems.append(Problem(FUTURE_DATE, "date", f"{date_text} after {today} + 1 day"))
        if key_date is not None and date_text != key_date:
            detail = f"body {show_value(date_text)} != key {show_value(key_date)}"
            problems.append(Problem(KEY_MISMATCH, "date", detail))

    timezone = body.get("timezone")
    if "timezone" in body and not (isinstance(timezone, str) and is_known_timezone(timezone)):
        problems.append(Problem(SCHEMA, "timezone", f"unknown time zone {show_value(timezone)}"))

    device = body.get("device")
    if "device" in body:
        problems.extend(_check_device(device))

    sessions: list[Session] = []
    raw_sessions = body.get("sessions")
    if "sessions" in body:
        if isinstance(raw_sessions, list):
            sessions = _check_sessions(raw_sessions, date, problems)
        else:
            problems.append(Problem(SCHEMA, "sessions", "not a list"))

    if problems:
        return UploadValidation(None, tuple(problems))
    upload = Upload(
        customer_id=customer_id,
        date=date,
        timezone=timezone,
        device=dict(device),
        sessions=tuple(sessions),
    )
    return UploadValidation(upload, ())


def _check_device(device: object) -> list[Problem]:
    if not isinstance(device, dict):
        return [Problem(SCHEMA, "device", "not an object")]
    problems = [
        Problem(SCHEMA, f"device.{name}", "missing field")
        for name in sorted(DEVICE_FIELDS - device.keys())
    ]
    problems += [
        Problem(SCHEMA, f"device.{show_value(name)[1:-1]}", "unexpected field")
        for name in sorted(device.keys() - DEVICE_FIELDS)
    ]
    for name in sorted(DEVICE_FIELDS & device.keys()):
        value = device[name]
        if not isinstance(value, str) or len(value) > 200:
            problems.append(Problem(SCHEMA, f"device.{name}", "not a string of <= 200 chars"))
    return problems


_ONE_SECOND = dt.timedelta(seconds=1)


def _check_sessions(
    raw_sessions: list[Any], date: dt.date | None, problems: list[Problem]
) -> list[Session]:
    """Check each session, then the sorted sequence for overlaps.

    Returns the sessions whose times are usable, sorted; when no problem was added, that is
    every session and all of them are valid.
    """
    midnight = dt.datetime.combine(date, dt.time()) if date is not None else None
    date_prefix = next_prefix = ""
    if date is not None:
        date_prefix = f"{date.isoformat()}T"
        next_prefix = f"{(date + dt.timedelta(days=1)).isoformat()}T"
    parse = dt.datetime.fromisoformat
    candidates: list[tuple[int, Session]] = []
    for index, item in enumerate(raw_sessions):
        # Fast path for a well-formed session (~300 per upload); anything odd takes the slow
        # path, which names every problem.
        if midnight is not None and type(item) is dict and item.keys() == SESSION_FIELDS:
            app_id, app_name, category = item["app_id"], item["app_name"], item["category"]
            start_text, end_text = item["start"], item["end"]
            pickups, notifications = item["pickups"], item["notifications"]
            if (
                type(app_id) is str
                and 0 < len(app_id) <= 255
                and type(app_name) is str
                and 0 < len(app_name) <= 200
                and type(category) is str
                and 0 < len(category) <= 64
                and type(pickups) is int
                and 0 <= pickups <= MAX_SESSION_COUNT
                and type(notifications) is int
                and 0 <= notifications <= MAX_SESSION_COUNT
                and type(start_text) is str
                and len(start_text) == 19
                and start_text[:11] == date_prefix
                and start_text[13] == ":"
                and start_text[16] == ":"
                and type(end_text) is str
                and len(end_text) == 19
                and (end_text[:11] == date_prefix or end_text[:11] == next_prefix)
                and end_text[13] == ":"
                and end_text[16] == ":"
            ):
                try:
                    start_offset = (parse(start_text) - midnight) // _ONE_SECOND
                    end_offset = (parse(end_text) - midnight) // _ONE_SECOND
                except ValueError:
                    start_offset = end_offset = -1
                if 0 < end_offset - start_offset <= MAX_SESSION_SECONDS and start_offset >= 0:
                    session = Session(
                        app_id, app_name, category, start_offset, end_offset, pickups, notifications
                    )
                    candidates.append((index, session))
                    continue
        session = _check_one_session(index, item, date, midnight, problems)
        if session is not None:
            candidates.append((index, session))

    # Devices may send sessions unsorted: sort, then each must start at or after the previous end.
    candidates.sort(key=lambda pair: (pair[1].start_offset, pair[1].end_offset))
    previous: tuple[int, Session] | None = None
    for index, session in candidates:
        if previous is not None and session.start_offset < previous[1].end_offset:
            detail = f"starts before sessions[{previous[0]}] ends"
            problems.append(Problem(OVERLAP, f"sessions[{index}]", detail))
        if previous is None or session.end_offset > previous[1].end_offset:
            previous = (index, session)
    return [session for _, session in candidates]


def _check_one_session(
    index: int,
    item: object,
    date: dt.date | None,
    midnight: dt.datetime | None,
    problems: list[Problem],
) -> Session | None:
    """Every problem of one session; the session when its times are usable."""
    path = f"sessions[{index}]"
    if not isinstance(item, dict):
        problems.append(Problem(SCHEMA, path, "not an object"))
        return None
    keys = item.keys()
    for name in sorted(SESSION_FIELDS - keys):
        problems.append(Problem(SCHEMA, f"{path}.{name}", "missing field"))
    for name in sorted(keys - SESSION_FIELDS):
        problems.append(Problem(SCHEMA, f"{path}.{show_value(name)[1:-1]}", "unexpected field"))
    for name, limit in MAX_LENGTHS.items():
        value = item.get(name)
        if name in item and not (isinstance(value, str) and 0 < len(value) <= limit):
            detail = f"must be a non-empty string of <= {limit} chars"
            problems.append(Problem(SCHEMA, f"{path}.{name}", detail))
    for name in ("pickups", "notifications"):
        value = item.get(name)
        if name not in item:
            continue
        if not _is_int(value) or value < 0:
            problems.append(Problem(NEGATIVE_COUNT, f"{path}.{name}", show_value(value)))
        elif value > MAX_SESSION_COUNT:
            problems.append(Problem(SCHEMA, f"{path}.{name}", f"{value} > {MAX_SESSION_COUNT}"))

    start = _parse_local_time(item.get("start"))
    end = _parse_local_time(item.get("end"))
    times_ok_before = len(problems)
    for name, parsed in (("start", start), ("end", end)):
        if name in item and parsed is None:
            detail = f"{show_value(item[name])} is not YYYY-MM-DDTHH:MM:SS"
            problems.append(Problem(SCHEMA, f"{path}.{name}", detail))
    if start is not None and end is not None:
        if end <= start:
            detail = f"end {item['end']} <= start {item['start']}"
            problems.append(Problem(END_BEFORE_START, path, detail))
        elif end - start > dt.timedelta(seconds=MAX_SESSION_SECONDS):
            problems.append(Problem(TOO_LONG, path, f"{end - start} > 24 h"))
    if start is not None and date is not None and start.date() != date:
        problems.append(Problem(SESSION_OUTSIDE_DAY, f"{path}.start", f"not on {date}"))

    if midnight is None or start is None or end is None or len(problems) > times_ok_before:
        return None
    # Returned even when other fields are bad, so overlaps are reported too; any problem
    # rejects the upload, so such a session is never aggregated.
    return Session(
        app_id=item.get("app_id"),
        app_name=item.get("app_name"),
        category=item.get("category"),
        start_offset=(start - midnight) // _ONE_SECOND,
        end_offset=(end - midnight) // _ONE_SECOND,
        pickups=item.get("pickups"),
        notifications=item.get("notifications"),
    )


# ---- events and metrics ------------------------------------------------------------------------

EVENT_TYPES = ("pageview", "purchase", "custom")
_COMMON_EVENT_FIELDS = {"event_id": str, "event_type": str, "ts": str, "user_id": str}
EVENT_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "pageview": {"session_id": (str,), "page": (str,), "referrer": (str, type(None))},
    "purchase": {
        "session_id": (str,),
        "order_id": (str,),
        "product_id": (str,),
        "product_name": (str,),
        "category": (str,),
        "quantity": (int,),
        "unit_price": (int, float),
        "amount": (int, float),
        "currency": (str,),
    },
    "custom": {"session_id": (str,), "name": (str,), "properties": (dict,)},
}
MAX_EVENT_STRING = 512
MAX_LINE_BYTES = 64 * 1024

# Event and metric line reason codes.
BAD_TS = "bad_ts"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
UNEXPECTED_FIELD = "unexpected_field"
EVENT_TYPE_MISMATCH = "event_type_mismatch"
BAD_VALUE = "bad_value"
OVERSIZE_LINE = "oversize"


def parse_utc_ts(value: object) -> dt.datetime | None:
    """A UTC timestamp ending in Z, e.g. 2026-11-01T08:15:03Z (fraction allowed), or None."""
    if not isinstance(value, str) or not value.endswith("Z") or not 20 <= len(value) <= 30:
        return None
    if value[10] != "T":
        return None
    try:
        return dt.datetime.fromisoformat(value[:-1]).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class LineValidation:
    record: dict[str, Any] | None  # the parsed line, with ``ts`` as an aware datetime
    problems: tuple[Problem, ...]

    @property
    def codes(self) -> list[str]:
        return list(dict.fromkeys(problem.code for problem in self.problems))


def _decode_line(line: bytes) -> tuple[dict[str, Any] | None, list[Problem]]:
    if len(line) > MAX_LINE_BYTES:
        return None, [Problem(OVERSIZE_LINE, "", f"{len(line)} bytes > {MAX_LINE_BYTES}")]
    body, problem = decode_json(line)
    if problem is not None:
        return None, [problem]
    if not isinstance(body, dict):
        return None, [Problem(SCHEMA, "", f"line is {type(body).__name__}, not object")]
    return body, []


def _check_fields(
    body: dict[str, Any], fields: dict[str, tuple[type, ...]], problems: list[Problem]
) -> None:
    # Fast path for a well-formed line (exact types; bool is not int here): one pass, no sets.
    if body.keys() == fields.keys():
        for name, types in fields.items():
            value = body[name]
            kind = type(value)
            if kind not in types or (kind is str and len(value) > MAX_EVENT_STRING):
                break
            if kind is float and not math.isfinite(value):
                break
        else:
            return
    for name in sorted(fields.keys() - body.keys()):
        problems.append(Problem(MISSING_FIELD, name, "missing field"))
    for name in sorted(body.keys() - fields.keys()):
        problems.append(Problem(UNEXPECTED_FIELD, show_value(name)[1:-1], "unexpected field"))
    for name, types in fields.items():
        if name not in body:
            continue
        value = body[name]
        if isinstance(value, bool) or not isinstance(value, types):
            expected = "/".join(t.__name__ for t in types)
            problems.append(Problem(WRONG_TYPE, name, f"{show_value(value)} is not {expected}"))
        elif isinstance(value, str) and len(value) > MAX_EVENT_STRING:
            problems.append(Problem(BAD_VALUE, name, f"longer than {MAX_EVENT_STRING} chars"))
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(Problem(BAD_VALUE, name, "not finite"))


def validate_event_line(line: bytes, event_type: str) -> LineValidation:
    """Validate one JSON line of a raw event batch stored under ``event_type``."""
    body, problems = _decode_line(line)
    if body is None:
        return LineValidation(None, tuple(problems))
    fields: dict[str, tuple[type, ...]] = {k: (t,) for k, t in _COMMON_EVENT_FIELDS.items()}
    fields.update(EVENT_FIELDS.get(event_type, {}))
    _check_fields(body, fields, problems)
    if "event_type" in body and body["event_type"] != event_type:
        detail = f"{show_value(body['event_type'])} in a {event_type} batch"
        problems.append(Problem(EVENT_TYPE_MISMATCH, "event_type", detail))
    event_id = body.get("event_id")
    if isinstance(event_id, str) and not 0 < len(event_id) <= 128:
        problems.append(Problem(BAD_VALUE, "event_id", "must be 1-128 chars"))
    ts = parse_utc_ts(body.get("ts"))
    if "ts" in body and ts is None:
        problems.append(Problem(BAD_TS, "ts", f"{show_value(body['ts'])} is not ISO 8601 UTC (Z)"))
    if event_type == "purchase" and not problems:
        if body["quantity"] <= 0:
            problems.append(Problem(BAD_VALUE, "quantity", f"{body['quantity']} <= 0"))
        if body["unit_price"] < 0 or body["amount"] < 0:
            problems.append(Problem(BAD_VALUE, "amount", "negative price or amount"))
        if len(body["currency"]) != 3 or not body["currency"].isalpha():
            problems.append(Problem(BAD_VALUE, "currency", show_value(body["currency"])))
    if problems:
        return LineValidation(None, tuple(problems))
    return LineValidation({**body, "ts": ts}, ())


METRIC_FIELDS: dict[str, tuple[type, ...]] = {
    "ts": (str,),
    "host": (str,),
    "metric": (str,),
    "value": (int, float),
}


def validate_metric_line(line: bytes) -> LineValidation:
    """Validate one JSON line of a raw metrics batch: ``{ts, host, metric, value}``."""
    body, problems = _decode_line(line)
    if body is None:
        return LineValidation(None, tuple(problems))
    _check_fields(body, METRIC_FIELDS, problems)
    for name in ("host", "metric"):
        value = body.get(name)
        if isinstance(value, str) and not value:
            problems.append(Problem(BAD_VALUE, name, "empty"))
    ts = parse_utc_ts(body.get("ts"))
    if "ts" in body and ts is None:
        problems.append(Problem(BAD_TS, "ts", f"{show_value(body['ts'])} is not ISO 8601 UTC (Z)"))
    if problems:
        return LineValidation(None, tuple(problems))
    return LineValidation({**body, "ts": ts, "value": float(body["value"])}, ())
