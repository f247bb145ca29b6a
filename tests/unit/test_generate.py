"""The sample-data generator: determinism, upload schema, realism ranges, events, metrics."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from data_access.local import LocalLake
from pipeline.catalog import APP_CATEGORIES, APPS, PRODUCTS
from pipeline.generate import (
    BAD_UPLOAD_CASES,
    BAD_UPLOAD_FIRST_CUSTOMER,
    EVENT_TYPES,
    METRIC_INTERVAL_SECONDS,
    METRIC_NAMES,
    PRODUCTS_KEY,
    GenerateSummary,
    customer_profile,
    generate,
    web_user_pool_on,
)

END_DATE = dt.date(2026, 11, 21)
SEED = 11
CUSTOMERS = 30
DAYS = 8
HOSTS = 2
BAD_UPLOADS = 2 * len(BAD_UPLOAD_CASES)

UPLOAD_KEYS = ["schema_version", "customer_id", "date", "timezone", "device", "sessions"]
DEVICE_KEYS = {"device_id", "model", "os", "agent_version"}
SESSION_KEYS = ["app_id", "app_name", "category", "start", "end", "pickups", "notifications"]
APPS_BY_ID = {app.app_id: app for app in APPS}
PRODUCTS_BY_ID = {product.product_id: product for product in PRODUCTS}
LOCAL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
UTC_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
HEX32 = re.compile(r"[0-9a-f]{32}")
EVENT_FIELDS = {
    "pageview": {"page": str, "referrer": str},
    "purchase": {
        "order_id": str,
        "product_id": str,
        "product_name": str,
        "category": str,
        "quantity": int,
        "unit_price": float,
        "amount": float,
        "currency": str,
    },
    "custom": {"name": str, "properties": dict},
}


def read_lake(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def upload_problems(data: bytes, key: str) -> set[str]:
    """An independent reading of the upload schema: the set of reasons the upload is invalid."""
    if len(data) > 2 * 1024 * 1024:
        return {"oversize"}
    try:
        document = json.loads(data)
    except ValueError:
        return {"not_json"}
    _, _, key_customer, file_name = key.split("/")
    problems = set()
    if not isinstance(document, dict) or list(document) != UPLOAD_KEYS:
        return {"missing_field"}
    if document["schema_version"] != 1:
        problems.add("wrong_type")
    if document["customer_id"] != key_customer:
        problems.add("customer_mismatch")
    if document["date"] != file_name.removesuffix(".json"):
        problems.add("key_date")
    device = document["device"]
    if not isinstance(device, dict) or set(device) != DEVICE_KEYS:
        problems.add("missing_field")
    elif not all(isinstance(value, str) and value for value in device.values()):
        problems.add("wrong_type")
    ZoneInfo(document["timezone"])  # raises for an unknown zone
    sessions = document["sessions"]
    if not isinstance(sessions, list):
        return problems | {"wrong_type"}
    day = dt.date.fromisoformat(document["date"])
    next_day = (day + dt.timedelta(days=1)).isoformat()
    previous_end = ""
    for index, session in enumerate(sessions):
        if list(session) != SESSION_KEYS:
            problems.add("missing_field")
            continue
        if not all(isinstance(session[name], str) for name in SESSION_KEYS[:5]) or not all(
            type(session[name]) is int for name in SESSION_KEYS[5:]
        ):
            problems.add("wrong_type")
            continue
        start, end = session["start"], session["end"]
        if not (LOCAL_TIME.fullmatch(start) and LOCAL_TIME.fullmatch(end)):
            problems.add("wrong_type")
            continue
        if end <= start:
            problems.add("negative_duration")
        if start < previous_end:
            problems.add("overlapping_sessions")
        if not start.startswith(document["date"]):
            problems.add("start_outside_day")
        # Only the last session may end on the next date.
        last = index == len(sessions) - 1
        if not (end.startswith(document["date"]) or (last and end.startswith(next_day))):
            problems.add("end_outside_day")
        app = APPS_BY_ID.get(session["app_id"])
        if app is None or (app.name, app.category) != (session["app_name"], session["category"]):
            problems.add("unknown_app")
        if not (0 <= session["pickups"] <= 3 and 0 <= session["notifications"] <= 10):
            problems.add("count_range")
        previous_end = max(previous_end, end)
    return problems


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[GenerateSummary, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("lake")
    messages: list[str] = []
    summary = generate(
        LocalLake(root),
        customers=CUSTOMERS,
        days=DAYS,
        seed=SEED,
        end_date=END_DATE,
        bad_uploads=BAD_UPLOADS,
        hosts=HOSTS,
        progress=messages.append,
    )
    assert messages, "progress callback was never called"
    return summary, read_lake(root)


@pytest.fixture(scope="module")
def good_uploads(generated: tuple[GenerateSummary, dict[str, bytes]]) -> dict[str, bytes]:
    _, objects = generated
    return {
        key: data
        for key, data in objects.items()
        if key.startswith("raw/screen_time/") and not key.startswith("raw/screen_time/c9999")
    }


@pytest.fixture(scope="module")
def events(generated: tuple[GenerateSummary, dict[str, bytes]]) -> list[tuple[str, dict]]:
    """(key, event) for every event line, in file order."""
    _, objects = generated
    return [
        (key, json.loads(line))
        for key, data in objects.items()
        if key.startswith("raw/events/")
        for line in data.decode().splitlines()
    ]


def window() -> list[dt.date]:
    return [END_DATE - dt.timedelta(days=offset) for offset in range(DAYS)]


# ---- determinism -----------------------------------------------------------------------------


class WriteOnlyLake:
    """Keeps objects in memory and has no other method: the generator may only write."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def write_bytes(self, key: str, data: bytes) -> None:
        assert key not in self.objects, f"{key} written twice"
        self.objects[key] = bytes(data)


def small_run(seed: int, days: int = 3) -> dict[str, bytes]:
    lake = WriteOnlyLake()
    options = {"customers": 4, "days": days, "seed": seed, "end_date": END_DATE}
    generate(lake, bad_uploads=9, **options)  # type: ignore[arg-type]
    return lake.objects


def test_same_arguments_write_the_same_bytes_and_another_seed_does_not() -> None:
    first = small_run(seed=5)
    again = small_run(seed=5)
    other = small_run(seed=6)

    assert first == again
    for family in ("raw/screen_time/c0000", "raw/events/", "raw/metrics/"):
        # Event files carry the seed in their name: compare them by folder.
        mine = {k.replace("gen-5", "gen-S"): v for k, v in first.items() if k.startswith(family)}
        theirs = {k.replace("gen-6", "gen-S"): v for k, v in other.items() if k.startswith(family)}
        shared = mine.keys() & theirs.keys()
        assert shared, family
        assert all(mine[key] != theirs[key] for key in shared), family


def test_a_shorter_window_reproduces_the_tail_of_a_longer_one() -> None:
    longer = small_run(seed=5, days=3)
    shorter = small_run(seed=5, days=2)
    good = {key: data for key, data in shorter.items() if "/c9999" not in key}
    assert good
    assert all(longer[key] == data for key, data in good.items())
    oldest = (END_DATE - dt.timedelta(days=2)).isoformat()
    assert not any(oldest in key for key in shorter)


# ---- screen time -----------------------------------------------------------------------------


def test_uploads_cover_exactly_the_window_for_every_customer(
    generated: tuple[GenerateSummary, dict[str, bytes]], good_uploads: dict[str, bytes]
) -> None:
    summary, _ = generated
    dates = {key.rsplit("/", 1)[1].removesuffix(".json") for key in good_uploads}
    customers = {key.split("/")[2] for key in good_uploads}
    assert dates == {day.isoformat() for day in window()}
    assert customers == {f"c{number:07d}" for number in range(CUSTOMERS)}
    assert (summary.start_date, summary.end_date) == (min(window()), END_DATE)
    assert summary.uploads == len(good_uploads)
    assert summary.uploads + summary.missing_days == CUSTOMERS * DAYS
    assert summary.raw_bytes == sum(len(data) for data in good_uploads.values())


def test_every_upload_matches_the_schema(good_uploads: dict[str, bytes]) -> None:
    for key, data in good_uploads.items():
        assert upload_problems(data, key) == set(), key
        assert data.decode("utf-8").startswith('{"schema_version":1,"customer_id":')
    categories = {
        session["category"]
        for data in good_uploads.values()
        for session in json.loads(data)["sessions"]
    }
    assert categories == set(APP_CATEGORIES)


def test_midnight_crossings_are_rare_last_sessions_and_the_next_day_starts_after_them(
    generated: tuple[GenerateSummary, dict[str, bytes]], good_uploads: dict[str, bytes]
) -> None:
    summary, _ = generated
    crossings = {}
    for data in good_uploads.values():
        document = json.loads(data)
        sessions = document["sessions"]
        if sessions and not sessions[-1]["end"].startswith(document["date"]):
            crossings[(document["customer_id"], document["date"])] = sessions[-1]["end"]
    non_empty = sum(1 for data in good_uploads.values() if b'"sessions":[]' not in data)
    assert crossings
    assert len(crossings) == summary.midnight_crossings
    assert len(crossings) / non_empty < 0.06
    for (customer, date), crossing_end in crossings.items():
        next_day = (dt.date.fromisoformat(date) + dt.timedelta(days=1)).isoformat()
        following = good_uploads.get(f"raw/screen_time/{customer}/{next_day}.json")
        if following is not None and json.loads(following)["sessions"]:
            assert json.loads(following)["sessions"][0]["start"] > crossing_end


def test_medium_users_upload_30_to_60_kb_with_200_to_350_sessions(
    good_uploads: dict[str, bytes],
) -> None:
    sizes, counts = [], []
    for key, data in good_uploads.items():
        number = int(key.split("/")[2][1:])
        if customer_profile(SEED, number, END_DATE).usage_tier != "medium":
            continue
        sessions = json.loads(data)["sessions"]
        if sessions:
            sizes.append(len(data))
            counts.append(len(sessions))
    assert len(sizes) >= 20
    assert 30_000 <= sum(sizes) / len(sizes) <= 60_000
    assert 200 <= sum(counts) / len(counts) <= 350


def test_users_differ_by_tier(good_uploads: dict[str, bytes]) -> None:
    sessions_by_tier: dict[str, list[int]] = defaultdict(list)
    for key, data in good_uploads.items():
        tier = customer_profile(SEED, int(key.split("/")[2][1:]), END_DATE).usage_tier
        count = len(json.loads(data)["sessions"])
        if count:
            sessions_by_tier[tier].append(count)
    mean = {tier: sum(counts) / len(counts) for tier, counts in sessions_by_tier.items()}
    assert mean["heavy"] > mean["medium"] > mean["light"]


def test_empty_and_missing_days_exist_but_are_rare(
    generated: tuple[GenerateSummary, dict[str, bytes]], good_uploads: dict[str, bytes]
) -> None:
    summary, _ = generated
    empty = [key for key, data in good_uploads.items() if not json.loads(data)["sessions"]]
    assert len(empty) == summary.empty_uploads
    assert 0 < len(empty) < 0.1 * CUSTOMERS * DAYS
    assert 0 < summary.missing_days < 0.1 * CUSTOMERS * DAYS


def test_usage_follows_a_daily_rhythm(good_uploads: dict[str, bytes]) -> None:
    starts_by_hour: Counter[int] = Counter()
    for data in good_uploads.values():
        for session in json.loads(data)["sessions"]:
            starts_by_hour[int(session["start"][11:13])] += 1
    total = sum(starts_by_hour.values())
    night = sum(starts_by_hour[hour] for hour in range(1, 6)) / total
    evening = sum(starts_by_hour[hour] for hour in range(18, 23)) / total
    assert night < 0.05
    assert evening > 0.25
    assert starts_by_hour[12] > starts_by_hour[15]  # lunch peak


# ---- bad uploads -----------------------------------------------------------------------------


def test_bad_uploads_are_written_under_reserved_ids_and_each_is_invalid_for_its_reason(
    generated: tuple[GenerateSummary, dict[str, bytes]],
) -> None:
    summary, objects = generated
    bad = {key: data for key, data in objects.items() if key.startswith("raw/screen_time/c9999")}
    assert summary.bad_uploads == len(bad) == BAD_UPLOADS
    expected_reason = {
        "not_json": "not_json",
        "truncated_json": "not_json",
        "missing_field": "missing_field",
        "wrong_type": "wrong_type",
        "negative_duration": "negative_duration",
        "overlapping_sessions": "overlapping_sessions",
        "customer_mismatch": "customer_mismatch",
        "oversize": "oversize",
    }
    seen = set()
    for key, data in bad.items():
        index = int(key.split("/")[2][1:]) - BAD_UPLOAD_FIRST_CUSTOMER
        case = BAD_UPLOAD_CASES[index % len(BAD_UPLOAD_CASES)]
        seen.add(case)
        problems = upload_problems(data, key)
        if case == "future_date":
            assert problems == set(), key  # well-formed: only its date is wrong
            date = json.loads(data)["date"]
            assert key.endswith(f"/{date}.json")
            assert dt.date.fromisoformat(date) > END_DATE + dt.timedelta(days=365)
        else:
            assert expected_reason[case] in problems, (key, problems)
        if case == "not_json":
            with pytest.raises(ValueError):
                json.loads(data)
        if case == "oversize":
            assert len(data) > 2 * 1024 * 1024
            json.loads(data)  # too big, but otherwise well-formed
    assert seen == set(BAD_UPLOAD_CASES)


# ---- events ----------------------------------------------------------------------------------


def test_events_parse_and_match_their_path_and_schema(
    generated: tuple[GenerateSummary, dict[str, bytes]], events: list[tuple[str, dict]]
) -> None:
    summary, _ = generated
    counts: Counter[str] = Counter()
    ids = set()
    last_ts_by_key: dict[str, str] = {}
    for key, event in events:
        _, _, event_type, year, month, day, hour, file_name = key.split("/")
        assert file_name == f"gen-{SEED}.jsonl"
        assert event["event_type"] == event_type
        assert UTC_TIME.fullmatch(event["ts"])
        assert event["ts"].startswith(f"{year}-{month}-{day}T{hour}:")
        assert event["ts"] >= last_ts_by_key.get(key, "")  # time-ordered within a file
        last_ts_by_key[key] = event["ts"]
        assert HEX32.fullmatch(event["event_id"])
        ids.add(event["event_id"])
        assert re.fullmatch(r"u\d{7}", event["user_id"]) and event["session_id"]
        for name, kind in EVENT_FIELDS[event_type].items():
            assert isinstance(event[name], kind), (name, event)
        assert set(event) == {"event_id", "event_type", "ts", "user_id", "session_id"} | set(
            EVENT_FIELDS[event_type]
        )
        counts[event_type] += 1
    assert len(ids) == len(events)
    assert dict(counts) == summary.events_by_type
    assert set(counts) == set(EVENT_TYPES)
    dates = {event["ts"][:10] for _, event in events}
    assert dates == {day.isoformat() for day in window()}


def test_purchases_price_catalog_products_and_the_catalog_is_written(
    generated: tuple[GenerateSummary, dict[str, bytes]], events: list[tuple[str, dict]]
) -> None:
    _, objects = generated
    catalog = {item["product_id"]: item for item in json.loads(objects[PRODUCTS_KEY])["products"]}
    assert len(catalog) >= 30
    assert len({item["category"] for item in catalog.values()}) >= 5
    purchases = [event for _, event in events if event["event_type"] == "purchase"]
    assert purchases
    assert len({event["order_id"] for event in purchases}) == len(purchases)
    for event in purchases:
        product = catalog[event["product_id"]]
        assert (event["product_name"], event["category"]) == (product["name"], product["category"])
        assert event["unit_price"] == product["unit_price"]
        assert 1 <= event["quantity"] <= 4
        assert event["amount"] == round(event["quantity"] * event["unit_price"], 2)
        assert event["currency"] == "USD"


def test_conversion_and_daily_actives_are_in_range(
    generated: tuple[GenerateSummary, dict[str, bytes]], events: list[tuple[str, dict]]
) -> None:
    summary, _ = generated
    visitors: dict[str, set[str]] = defaultdict(set)
    buyers: dict[str, set[str]] = defaultdict(set)
    pages_per_session: Counter[str] = Counter()
    events_per_day: Counter[str] = Counter()
    for _, event in events:
        date = event["ts"][:10]
        events_per_day[date] += 1
        if event["event_type"] == "pageview":
            visitors[date].add(event["user_id"])
            pages_per_session[event["session_id"]] += 1
        elif event["event_type"] == "purchase":
            buyers[date].add(event["user_id"])
    total_visitors = sum(len(users) for users in visitors.values())
    total_buyers = sum(len(users) for users in buyers.values())
    assert (total_visitors, total_buyers) == (summary.visitors, summary.buyers)
    assert 0.02 <= total_buyers / total_visitors <= 0.05
    assert all(buyers[date] <= visitors[date] for date in buyers)
    for day in window():
        pool = web_user_pool_on(CUSTOMERS, END_DATE, day)
        assert 0.15 <= len(visitors[day.isoformat()]) / pool <= 0.25
        assert 20_000 <= events_per_day[day.isoformat()] <= 60_000
    assert max(pages_per_session.values()) <= 12
    assert min(pages_per_session.values()) >= 1


# ---- metrics ---------------------------------------------------------------------------------


def test_metrics_cover_every_interval_host_and_metric_with_plausible_values(
    generated: tuple[GenerateSummary, dict[str, bytes]],
) -> None:
    summary, objects = generated
    points: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for key, data in objects.items():
        if not key.startswith("raw/metrics/"):
            continue
        _, _, year, month, day, hour, file_name = key.split("/")
        for line in data.decode().splitlines():
            point = json.loads(line)
            assert list(point) == ["ts", "host", "metric", "value"]
            assert file_name == f"gen-{point['host']}.jsonl"
            assert point["ts"].startswith(f"{year}-{month}-{day}T{hour}:")
            assert point["metric"] not in points[(point["ts"], point["host"])]
            points[(point["ts"], point["host"])][point["metric"]] = point["value"]
    intervals_per_day = 86_400 // METRIC_INTERVAL_SECONDS
    assert len(points) == DAYS * HOSTS * intervals_per_day
    assert summary.metric_points == len(points) * len(METRIC_NAMES)
    cpu_by_hour: dict[int, list[float]] = defaultdict(list)
    for (ts, _), values in points.items():
        assert set(values) == set(METRIC_NAMES)
        for name in ("cpu_percent", "memory_percent", "disk_percent"):
            assert 0 <= values[name] <= 100
        assert 0 <= values["error_rate"] <= 1
        assert 0 < values["latency_p50_ms"] <= values["latency_p95_ms"] <= values["latency_p99_ms"]
        for name in ("net_bytes_sent", "net_bytes_recv", "active_users"):
            assert isinstance(values[name], int) and values[name] >= 0
        cpu_by_hour[int(ts[11:13])].append(values["cpu_percent"])
    mean_cpu = {hour: sum(values) / len(values) for hour, values in cpu_by_hour.items()}
    assert mean_cpu[17] > 1.5 * mean_cpu[5]  # daily rhythm


# ---- the whole run ---------------------------------------------------------------------------


def test_summary_counts_every_object_written(
    generated: tuple[GenerateSummary, dict[str, bytes]],
) -> None:
    summary, objects = generated
    assert summary.objects_written == len(objects)
    assert summary.events == sum(summary.events_by_type.values())
    assert str(summary.uploads) in summary.describe().replace(",", "")


@pytest.mark.parametrize(
    "arguments",
    [{"days": 0}, {"customers": -1}, {"bad_uploads": 1_001}, {"customers": 9_999_001}],
)
def test_rejects_arguments_outside_the_supported_ranges(
    tmp_path: Path, arguments: dict[str, int]
) -> None:
    options = {"customers": 1, "days": 1, "seed": 1, "end_date": END_DATE} | arguments
    with pytest.raises(ValueError):
        generate(LocalLake(tmp_path), **options)
    assert not any(tmp_path.iterdir())
