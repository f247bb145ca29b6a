"""Deterministic, realistic sample data for the lake.

Three families of raw input, written through ``Lake.write_bytes`` only:

- screen-time uploads ``raw/screen_time/{customer_id}/{date}.json`` (one per customer-day),
- business events ``raw/events/{event_type}/{yyyy}/{mm}/{dd}/{hh}/gen-{seed}.jsonl``,
- host metrics ``raw/metrics/{yyyy}/{mm}/{dd}/{hh}/gen-{host}.jsonl``,

plus the product catalog ``raw/catalog/products.json`` and, on request, invalid uploads that
exercise the processor's quarantine path.

Every random choice comes from a named stream derived from the seed (per customer, customer-day,
event day, host-day), and time-dependent trends are measured from ``end_date``. So a given day's
output depends only on (seed, end_date, customers, hosts, that day): the same arguments give the
same bytes, and a shorter window reproduces the tail of a longer one.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import random
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from operator import itemgetter
from zoneinfo import ZoneInfo

from data_access.stores import Lake, UploadQueue
from pipeline.catalog import (
    AGENT_VERSIONS,
    APP_CATEGORIES,
    APPS,
    DEVICE_MODELS,
    PREINSTALLED_APP_IDS,
    PRODUCT_CATEGORIES,
    PRODUCTS,
    TIMEZONES,
    products_document,
)

SCHEMA_VERSION = 1
SECONDS_PER_DAY = 86_400
EVENT_TYPES: tuple[str, ...] = ("purchase", "pageview", "custom")
METRIC_NAMES: tuple[str, ...] = (
    "cpu_percent",
    "memory_percent",
    "disk_percent",
    "net_bytes_sent",
    "net_bytes_recv",
    "request_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "error_rate",
    "active_users",
)
METRIC_INTERVAL_SECONDS = 300
PRODUCTS_KEY = "raw/catalog/products.json"

# Invalid uploads use customer ids c9999000..c9999999, so they never replace a good file.
BAD_UPLOAD_FIRST_CUSTOMER = 9_999_000
MAX_BAD_UPLOADS = 1_000
MAX_CUSTOMERS = BAD_UPLOAD_FIRST_CUSTOMER
OVERSIZE_MIN_BYTES = 2 * 1024 * 1024 + 1
# Far enough ahead that the date stays in the future for any realistic end_date.
FUTURE_DATE_OFFSET_DAYS = 3_650
BAD_UPLOAD_CASES: tuple[str, ...] = (
    "not_json",
    "truncated_json",
    "missing_field",
    "wrong_type",
    "negative_duration",
    "overlapping_sessions",
    "future_date",
    "customer_mismatch",
    "oversize",
)

_JSON_SEPARATORS = (",", ":")


@dataclass(frozen=True)
class GenerateSummary:
    """What one ``generate`` call wrote."""

    start_date: dt.date
    end_date: dt.date
    customers: int
    uploads: int  # valid screen-time uploads, empty days included
    empty_uploads: int  # valid uploads with ``"sessions": []``
    missing_days: int  # customer-days with no upload (device off)
    sessions: int
    midnight_crossings: int
    raw_bytes: int  # bytes of the valid screen-time uploads
    events_by_type: dict[str, int]
    event_bytes: int
    visitors: int  # sum over days of distinct web users with a page view
    buyers: int  # sum over days of distinct web users with a purchase
    metric_points: int
    metric_bytes: int
    bad_uploads: int
    bad_upload_bytes: int
    objects_written: int

    @property
    def events(self) -> int:
        return sum(self.events_by_type.values())

    @property
    def conversion_rate(self) -> float:
        return self.buyers / self.visitors if self.visitors else 0.0

    def describe(self) -> str:
        """Human-readable totals, one per line."""
        mean_kib = self.raw_bytes / max(1, self.uploads) / 1024
        by_type = ", ".join(f"{name} {count:,}" for name, count in self.events_by_type.items())
        return "\n".join(
            [
                f"window: {self.start_date} .. {self.end_date}",
                f"screen time: {self.uploads:,} uploads ({self.empty_uploads:,} empty, "
                f"{self.missing_days:,} missing), {self.sessions:,} sessions, "
                f"{self.midnight_crossings:,} crossing midnight, {self.raw_bytes:,} bytes "
                f"({mean_kib:.1f} KiB per upload)",
                f"events: {self.events:,} ({by_type}), {self.event_bytes:,} bytes, "
                f"conversion {self.conversion_rate:.2%}",
                f"metrics: {self.metric_points:,} points, {self.metric_bytes:,} bytes",
                f"bad uploads: {self.bad_uploads:,}, {self.bad_upload_bytes:,} bytes",
                f"objects written: {self.objects_written:,}",
            ]
        )


def customer_id(number: int) -> str:
    return f"c{number:07d}"


def web_user_id(number: int) -> str:
    return f"u{number:07d}"


def web_user_pool_size(customers: int) -> int:
    """Web shop users on ``end_date``: about 20 per screen-time customer, at least 2,000."""
    return max(2_000, customers * 20)


def date_range(end_date: dt.date, days: int) -> list[dt.date]:
    """The ``days`` dates ending at ``end_date`` inclusive, oldest first."""
    return [end_date - dt.timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def _stream(seed: int, *labels: object) -> random.Random:
    """An independent random stream per label tuple; stable across processes and runs."""
    text = "|".join(str(part) for part in (seed, *labels))
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


@functools.cache
def _clock_strings() -> tuple[str, ...]:
    """``"HH:MM:SS"`` for every second of a day: formatting by lookup beats datetime per row."""
    return tuple(
        f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)
    )


def _weighted_index(cum_weights: Sequence[float], unit: float) -> int:
    """Index drawn from cumulative weights with one uniform number in [0, 1)."""
    return bisect_right(cum_weights, unit * cum_weights[-1])


def _json(value: object) -> str:
    return json.dumps(value, separators=_JSON_SEPARATORS, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Screen time
# ---------------------------------------------------------------------------------------------

# (tier, share of customers, mean sessions per day, mean screen time in hours)
USAGE_TIERS: tuple[tuple[str, float, float, float], ...] = (
    ("heavy", 0.20, 370.0, 7.0),
    ("medium", 0.55, 270.0, 4.5),
    ("light", 0.25, 140.0, 2.3),
)

# Relative phone use per local hour: quiet 01:00-06:00, peaks morning, lunch and evening.
_WEEKDAY_HOUR_WEIGHTS: tuple[float, ...] = (
    1.6, 0.6, 0.3, 0.2, 0.2, 0.5, 1.8, 4.5, 6.0, 4.6, 4.0, 4.4,
    6.5, 6.0, 4.0, 3.9, 4.4, 5.5, 6.5, 7.4, 8.4, 8.6, 6.6, 3.6,
)  # fmt: skip
# Weekends start later and spread through the afternoon.
_WEEKEND_HOUR_WEIGHTS: tuple[float, ...] = (
    2.4, 1.2, 0.6, 0.3, 0.2, 0.2, 0.6, 1.4, 3.0, 4.8, 5.8, 6.0,
    6.4, 6.2, 5.6, 5.4, 5.6, 5.9, 6.4, 7.2, 8.2, 8.4, 7.0, 4.4,
)  # fmt: skip

_SESSION_LENGTH_SIGMA = 0.9  # lognormal spread of one session around the app's typical length
_LOGNORMAL_MEAN = math.exp(_SESSION_LENGTH_SIGMA**2 / 2)
_MISSING_DAY_SHARE = 0.02
_EMPTY_DAY_SHARE = 0.03
_MIDNIGHT_CROSSING_SHARE = 0.02


@dataclass(frozen=True)
class CustomerProfile:
    customer_id: str
    usage_tier: str
    sessions_per_day: float
    weekend_factor: float  # weekend sessions relative to a weekday
    session_length_factor: float  # scales app typical lengths to the tier's screen time
    timezone: str
    device_id: str
    device_model: str
    os_version: str
    agent_version: str  # before the upgrade
    upgraded_agent_version: str
    agent_upgrade_date: dt.date | None
    app_cum_weights: tuple[float, ...]  # over APPS
    weekday_hour_cum_weights: tuple[float, ...]
    weekend_hour_cum_weights: tuple[float, ...]

    def agent_version_on(self, day: dt.date) -> str:
        if self.agent_upgrade_date is not None and day >= self.agent_upgrade_date:
            return self.upgraded_agent_version
        return self.agent_version


def customer_profile(seed: int, number: int, end_date: dt.date) -> CustomerProfile:
    """The stable traits of one customer: usage tier, favourite apps, rhythm, device, zone."""
    rng = _stream(seed, "customer", number)
    cid = customer_id(number)
    tier, _, sessions_per_day, screen_hours = rng.choices(
        USAGE_TIERS, weights=[share for _, share, _, _ in USAGE_TIERS]
    )[0]
    sessions_per_day *= rng.uniform(0.85, 1.15)
    screen_hours *= rng.uniform(0.8, 1.2)

    interest = rng.choice(APP_CATEGORIES)
    installed = [app.app_id in PREINSTALLED_APP_IDS or rng.random() < 0.55 for app in APPS]
    candidates = [i for i, ok in enumerate(installed) if ok]
    favourites = set(rng.choices(candidates, weights=[APPS[i].popularity for i in candidates], k=5))
    app_weights = []
    for index, app in enumerate(APPS):
        weight = app.popularity * rng.lognormvariate(0.0, 0.5) if installed[index] else 0.0
        if index in favourites:
            weight *= 6.0
        if app.category == interest:
            weight *= 2.5
        app_weights.append(weight)
    mean_typical = sum(
        w * app.typical_session_seconds for w, app in zip(app_weights, APPS, strict=True)
    ) / sum(app_weights)
    session_length_factor = (
        screen_hours * 3600 / (sessions_per_day * mean_typical * _LOGNORMAL_MEAN)
    )

    # Early birds and night owls: rotate the daily rhythm by up to an hour.
    shift = rng.choice((-1, 0, 0, 1))
    weekday = _WEEKDAY_HOUR_WEIGHTS[-shift:] + _WEEKDAY_HOUR_WEIGHTS[:-shift]
    weekend = _WEEKEND_HOUR_WEIGHTS[-shift:] + _WEEKEND_HOUR_WEIGHTS[:-shift]

    timezone = rng.choices([zone for zone, _ in TIMEZONES], [w for _, w in TIMEZONES])[0]
    device = rng.choices(DEVICE_MODELS, [model.popularity for model in DEVICE_MODELS])[0]
    old_agent, new_agent = rng.choice(AGENT_VERSIONS[:-1]), AGENT_VERSIONS[-1]
    # Most devices pick up the newest agent at some point in the last six weeks.
    upgrade = end_date - dt.timedelta(days=rng.randrange(42)) if rng.random() < 0.75 else None
    return CustomerProfile(
        customer_id=cid,
        usage_tier=tier,
        sessions_per_day=sessions_per_day,
        weekend_factor=rng.uniform(0.8, 1.35),
        session_length_factor=session_length_factor,
        timezone=timezone,
        device_id="d-"
        + hashlib.blake2b(f"{seed}|device|{cid}".encode(), digest_size=8).hexdigest(),
        device_model=device.model,
        os_version=rng.choice(device.os_versions),
        agent_version=old_agent,
        upgraded_agent_version=new_agent,
        agent_upgrade_date=upgrade,
        app_cum_weights=tuple(accumulate(app_weights)),
        weekday_hour_cum_weights=tuple(accumulate(weekday)),
        weekend_hour_cum_weights=tuple(accumulate(weekend)),
    )


@dataclass(frozen=True)
class _DayPlan:
    """Whether a customer-day is uploaded, and its midnight-crossing session if any."""

    status: str  # "missing" | "empty" | "normal"
    crossing_start: int = 0  # seconds after local midnight
    crossing_end: int = 0  # seconds after the next local midnight


def _day_plan(seed: int, cid: str, day: dt.date) -> _DayPlan:
    # A stream of its own, so the next day can learn where this day's last session ends.
    rng = _stream(seed, "plan", cid, day.isoformat())
    roll = rng.random()
    if roll < _MISSING_DAY_SHARE:
        return _DayPlan("missing")
    if roll < _MISSING_DAY_SHARE + _EMPTY_DAY_SHARE:
        return _DayPlan("empty")
    if rng.random() < _MIDNIGHT_CROSSING_SHARE:
        return _DayPlan(
            "normal",
            crossing_start=SECONDS_PER_DAY - rng.randint(30, 1_800),
            crossing_end=rng.randint(20, 2_400),
        )
    return _DayPlan("normal")


@functools.cache
def _skipped_local_hour(timezone: str, day: dt.date) -> int | None:
    """The wall-clock hour that does not exist on a spring-forward day, else None."""
    zone = ZoneInfo(timezone)
    for hour in range(24):
        local = dt.datetime(day.year, day.month, day.day, hour, 30, tzinfo=zone)
        back = local.astimezone(dt.UTC).astimezone(zone)
        if back.replace(tzinfo=None) != local.replace(tzinfo=None):
            return hour
    return None


@functools.cache
def _app_session_prefixes() -> tuple[str, ...]:
    """Each app's session object up to the start time, JSON-escaped once."""
    return tuple(
        '{"app_id":' + _json(app.app_id) + ',"app_name":' + _json(app.name)
        + ',"category":' + _json(app.category) + ',"start":"'
        for app in APPS
    )  # fmt: skip


def _upload_header(profile: CustomerProfile, day: dt.date, body_customer_id: str) -> str:
    header = _json(
        {
            "schema_version": SCHEMA_VERSION,
            "customer_id": body_customer_id,
            "date": day.isoformat(),
            "timezone": profile.timezone,
            "device": {
                "device_id": profile.device_id,
                "model": profile.device_model,
                "os": profile.os_version,
                "agent_version": profile.agent_version_on(day),
            },
        }
    )
    return header[:-1] + ',"sessions":['


def _session_lines(
    rng: random.Random,
    profile: CustomerProfile,
    day: dt.date,
    count: int,
    first_start: int,
    last_end: int,
    skipped_hour: int | None,
) -> list[str]:
    """Sorted, non-overlapping sessions between ``first_start`` and ``last_end`` (seconds)."""
    clock = _clock_strings()
    prefixes = _app_session_prefixes()
    day_prefix = day.isoformat() + "T"
    rand = rng.random
    log = math.log
    lognormal = rng.lognormvariate
    hour_cum = (
        profile.weekend_hour_cum_weights if day.weekday() >= 5 else profile.weekday_hour_cum_weights
    )
    skip_start = skip_end = SECONDS_PER_DAY * 2
    if skipped_hour is not None:
        hour_weights = [b - a for a, b in zip((0.0, *hour_cum[:-1]), hour_cum, strict=True)]
        hour_weights[skipped_hour] = 0.0
        hour_cum = tuple(accumulate(hour_weights))
        skip_start, skip_end = skipped_hour * 3600, (skipped_hour + 1) * 3600
    hours = rng.choices(range(24), cum_weights=hour_cum, k=count)
    starts = sorted([hour * 3600 + int(rand() * 3600) for hour in hours])
    apps = rng.choices(range(len(APPS)), cum_weights=profile.app_cum_weights, k=count)
    typical = [app.typical_session_seconds * profile.session_length_factor for app in APPS]
    notify_mean = [app.notifications_per_session for app in APPS]

    lines: list[str] = []
    previous_end = first_start - 3_600
    for start, app in zip(starts, apps, strict=True):
        if start <= previous_end:
            # Busy hour: this session follows the previous one after a short pause.
            start = previous_end + 1 + int(rand() * 25)
        if skip_start <= start < skip_end:
            start = skip_end
        if start < first_start:
            start = first_start
        if start >= last_end:
            break
        end = start + 1 + int(typical[app] * lognormal(0.0, _SESSION_LENGTH_SIGMA))
        end = min(end, last_end)
        if start < skip_start <= end:
            end = skip_start - 1
            if end <= start:
                continue
        pause = start - previous_end
        # Back-to-back app switches need no new pickup; a long pause usually does.
        roll = rand()
        if pause < 20:
            pickups = 0
        elif pause < 180:
            pickups = 0 if roll < 0.5 else 1
        else:
            pickups = 1 if roll < 0.85 else (2 if roll < 0.97 else 3)
        notifications = min(10, int(-notify_mean[app] * log(1.0 - rand()) + 0.5))
        lines.append(
            f'{prefixes[app]}{day_prefix}{clock[start]}","end":"{day_prefix}{clock[end]}",'
            f'"pickups":{pickups},"notifications":{notifications}}}'
        )
        previous_end = end
    return lines


@dataclass(frozen=True)
class _Upload:
    data: bytes
    sessions: int
    crosses_midnight: bool


def screen_time_upload(
    seed: int, profile: CustomerProfile, day: dt.date, *, body_customer_id: str | None = None
) -> bytes | None:
    """One customer-day's upload as the device sends it, or None when the device was off."""
    upload = _screen_time_upload(seed, profile, day, body_customer_id)
    return None if upload is None else upload.data


def _screen_time_upload(
    seed: int, profile: CustomerProfile, day: dt.date, body_customer_id: str | None
) -> _Upload | None:
    cid = profile.customer_id
    plan = _day_plan(seed, cid, day)
    if plan.status == "missing":
        return None
    header = _upload_header(profile, day, body_customer_id or cid)
    if plan.status == "empty":
        return _Upload((header + "]}").encode(), 0, False)

    rng = _stream(seed, "day", cid, day.isoformat())
    weekend = day.weekday() >= 5
    day_factor = (profile.weekend_factor if weekend else 1.0) * rng.lognormvariate(0.0, 0.18)
    count = max(1, round(profile.sessions_per_day * day_factor))
    # Yesterday's last session may run past midnight: today starts after it.
    yesterday = _day_plan(seed, cid, day - dt.timedelta(days=1))
    first_start = yesterday.crossing_end + 1 + rng.randrange(600) if yesterday.crossing_end else 0
    last_end = plan.crossing_start - 1 if plan.crossing_start else SECONDS_PER_DAY - 1
    lines = _session_lines(
        rng,
        profile,
        day,
        count,
        first_start,
        last_end,
        _skipped_local_hour(profile.timezone, day),
    )
    if plan.crossing_start:
        app = _weighted_index(profile.app_cum_weights, rng.random())
        next_day = (day + dt.timedelta(days=1)).isoformat()
        lines.append(
            f"{_app_session_prefixes()[app]}{day.isoformat()}T{_clock_strings()[plan.crossing_start]}"
            f'","end":"{next_day}T{_clock_strings()[plan.crossing_end]}",'
            f'"pickups":1,"notifications":{rng.randrange(3)}}}'
        )
    data = (header + ",".join(lines) + "]}").encode()
    return _Upload(data, len(lines), bool(plan.crossing_start))


def screen_time_key(cid: str, day: dt.date) -> str:
    return f"raw/screen_time/{cid}/{day.isoformat()}.json"


# ---------------------------------------------------------------------------------------------
# Invalid uploads
# ---------------------------------------------------------------------------------------------


def bad_upload(seed: int, index: int, end_date: dt.date, days: int) -> tuple[str, str, bytes]:
    """The ``index``-th invalid upload: (case, key, bytes). Cases cycle through BAD_UPLOAD_CASES."""
    case = BAD_UPLOAD_CASES[index % len(BAD_UPLOAD_CASES)]
    variant = index // len(BAD_UPLOAD_CASES)
    number = BAD_UPLOAD_FIRST_CUSTOMER + index
    cid = customer_id(number)
    day = end_date - dt.timedelta(days=index % days)
    if case == "future_date":
        day = end_date + dt.timedelta(days=FUTURE_DATE_OFFSET_DAYS + index)
    profile = customer_profile(seed, number, end_date)
    rng = _stream(seed, "bad", index)

    if case == "oversize":
        # Valid in every other way: thousands of three-second sessions.
        header = _upload_header(profile, day, cid)
        prefix, clock, day_t = _app_session_prefixes()[0], _clock_strings(), day.isoformat() + "T"
        lines = [
            f'{prefix}{day_t}{clock[s]}","end":"{day_t}{clock[s + 3]}","pickups":1,'
            f'"notifications":0}}'
            for s in range(0, SECONDS_PER_DAY - 10, 6)
        ]
        return case, screen_time_key(cid, day), (header + ",".join(lines) + "]}").encode()

    if case == "not_json":
        body = b"<html><body><h1>502 Bad Gateway</h1></body></html>\n"
        return case, screen_time_key(cid, day), body

    # The remaining cases start from a small valid document and break one thing.
    sessions = _session_lines(rng, profile, day, 24, 6 * 3600, SECONDS_PER_DAY - 1, None)
    document = json.loads(_upload_header(profile, day, cid) + ",".join(sessions) + "]}")
    victim = rng.randrange(1, len(document["sessions"]) - 1)
    session = document["sessions"][victim]
    if case == "truncated_json":
        data = _json(document).encode()
        return case, screen_time_key(cid, day), data[: len(data) // 2]
    if case == "missing_field":
        field_name = ("device", "sessions", "date", "timezone", "customer_id")[variant % 5]
        del document[field_name]
    elif case == "wrong_type":
        if variant % 3 == 0:
            session["pickups"] = "two"
        elif variant % 3 == 1:
            session["start"] = 1_700_000_000  # epoch seconds where a string belongs
        else:
            document["sessions"] = {"items": document["sessions"]}
    elif case == "negative_duration":
        session["start"], session["end"] = session["end"], session["start"]
    elif case == "overlapping_sessions":
        previous = document["sessions"][victim - 1]
        previous_start = dt.datetime.fromisoformat(previous["start"])
        previous_end = dt.datetime.fromisoformat(previous["end"])
        # Starts inside the previous session, which lasts at least one second.
        overlap_start = previous_start + (previous_end - previous_start) / 2
        session["start"] = overlap_start.replace(microsecond=0).isoformat()
    elif case == "customer_mismatch":
        document["customer_id"] = customer_id(index)
    # future_date: a well-formed document dated years ahead, under a key dated the same.
    return case, screen_time_key(cid, day), _json(document).encode()


# ---------------------------------------------------------------------------------------------
# Business events
# ---------------------------------------------------------------------------------------------

# Share of web traffic per UTC hour (Europe and the Americas).
_EVENT_HOUR_WEIGHTS: tuple[float, ...] = (
    3.2, 2.6, 2.0, 1.5, 1.2, 1.3, 2.0, 3.2, 4.4, 5.2, 5.6, 5.8,
    6.0, 6.4, 6.9, 7.2, 7.0, 6.6, 6.4, 6.6, 6.8, 6.2, 5.0, 4.0,
)  # fmt: skip
_EVENT_HOUR_CUM = tuple(accumulate(_EVENT_HOUR_WEIGHTS))
# Monday..Sunday: weekday evenings browse more, Saturday dips, Sunday recovers.
_WEEKDAY_ACTIVITY: tuple[float, ...] = (1.04, 1.02, 1.0, 1.0, 0.96, 0.88, 0.97)
_DAU_SHARE = 0.20  # of the pool, on end_date
_DAU_GROWTH_PER_DAY = 0.0015  # the share was this much lower per day before end_date
_BUYER_SHARE = 0.034  # buyers / visitors
_SESSIONS_PER_USER_CUM = tuple(accumulate((14, 13, 12, 11, 10, 9, 8, 7, 6, 4, 3, 3)))  # 1..12
_PAGEVIEWS_PER_SESSION_CUM = tuple(accumulate((5, 6, 7, 8, 9, 10, 10, 10, 10, 9, 8, 8)))  # 1..12
_SESSION_TIMEOUT_SECONDS = 1_800  # a user's next session starts after 30 min of quiet
_SITE = "https://shop.example.com"
_EXTERNAL_REFERRERS_CUM = tuple(accumulate((30, 28, 8, 6, 4, 3, 6, 5)))
_EXTERNAL_REFERRERS: tuple[str, ...] = (
    "(direct)",
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://www.facebook.com/",
    "https://t.co/",
    "https://www.reddit.com/",
    "https://www.instagram.com/",
    "newsletter",
)
_SEARCH_QUERIES: tuple[str, ...] = (
    "wireless earbuds",
    "coffee",
    "running vest",
    "sunscreen",
    "yoga mat",
    "gift ideas",
    "keyboard",
    "t-shirt",
    "water bottle",
    "books",
    "charger",
    "skillet",
    "socks",
    "air fryer",
)
_BLOG_SLUGS: tuple[str, ...] = (
    "how-to-choose-headphones",
    "summer-skincare-routine",
    "ten-kitchen-essentials",
    "trail-running-for-beginners",
    "books-for-engineers",
)
_SIGNUP_METHODS: tuple[str, ...] = ("email", "email", "google", "apple")
_SHARE_CHANNELS: tuple[str, ...] = ("copy_link", "whatsapp", "email", "facebook", "x")
_COUPONS: tuple[tuple[str, int], ...] = (("WELCOME10", 10), ("SPRING15", 15), ("FREESHIP", 5))
_QUANTITY_CUM = tuple(accumulate((70, 18, 8, 4)))  # 1..4


def _slug(text: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def web_user_pool_on(customers: int, end_date: dt.date, day: dt.date) -> int:
    """Registered web users on ``day``: the pool grows by a steady trickle of sign-ups."""
    pool = web_user_pool_size(customers)
    new_per_day = max(1, pool // 400)
    return max(pool // 2, pool - new_per_day * (end_date - day).days)


@dataclass
class _EventDay:
    lines: dict[str, list[tuple[int, str]]]  # event type -> (second of day, JSON line)
    visitors: int
    buyers: int


class _EventIds:
    """Deterministic 32-hex ids: a hash of the seed, the day and a counter."""

    def __init__(self, seed: int, day: dt.date, label: str, digest_size: int) -> None:
        self._base = hashlib.blake2b(
            f"{seed}|{day.isoformat()}|{label}|".encode(), digest_size=digest_size
        )
        self._counter = 0

    def next(self) -> str:
        self._counter += 1
        digest = self._base.copy()
        digest.update(str(self._counter).encode())
        return digest.hexdigest()


def _cents(amount_cents: int) -> str:
    return f"{amount_cents // 100}.{amount_cents % 100:02d}"


class _SessionEvents:
    """One web session's events as (offset in session, type, JSON before ts, JSON after ts)."""

    __slots__ = ("_common", "_event_ids", "rows")

    def __init__(self, event_ids: _EventIds, uid: str, sid: str) -> None:
        self._event_ids = event_ids
        self._common = f'Z","user_id":"{uid}","session_id":"{sid}"'
        self.rows: list[tuple[int, str, str, str]] = []

    def add(self, offset: int, event_type: str, fields: str) -> None:
        head = f'{{"event_id":"{self._event_ids.next()}","event_type":"{event_type}","ts":"'
        self.rows.append((offset, event_type, head, self._common + fields))

    def pageview(self, offset: int, page: str, referrer: str) -> None:
        self.add(offset, "pageview", f',"page":"{page}","referrer":"{referrer}"}}')

    def custom(self, offset: int, name: str, properties: dict[str, str | int]) -> None:
        # Flat objects of catalog strings and ints: cheaper to render than json.dumps.
        rendered = ",".join(
            f'"{key}":"{value}"' if isinstance(value, str) else f'"{key}":{value}'
            for key, value in properties.items()
        )
        self.add(offset, "custom", f',"name":"{name}","properties":{{{rendered}}}}}')


def _event_day(seed: int, customers: int, end_date: dt.date, day: dt.date) -> _EventDay:
    rng = _stream(seed, "events", day.isoformat())
    rand = rng.random
    event_ids = _EventIds(seed, day, "event", 16)
    session_ids = _EventIds(seed, day, "session", 8)
    order_ids = _EventIds(seed, day, "order", 6)
    age_days = (end_date - day).days

    pool = web_user_pool_on(customers, end_date, day)
    previous_pool = web_user_pool_on(customers, end_date, day - dt.timedelta(days=1))
    new_users = list(range(previous_pool, pool))
    share = _DAU_SHARE * _WEEKDAY_ACTIVITY[day.weekday()] * (1 - _DAU_GROWTH_PER_DAY * age_days)
    share = min(0.25, max(0.15, share * rng.lognormvariate(0.0, 0.03)))
    returning = max(0, round(share * pool) - len(new_users))
    active = rng.sample(range(previous_pool), min(returning, previous_pool)) + new_users
    buyer_share = _BUYER_SHARE * rng.lognormvariate(0.0, 0.08)

    product_cum = tuple(accumulate(product.popularity for product in PRODUCTS))
    product_names = [_json(product.name) for product in PRODUCTS]
    product_categories = [_json(product.category) for product in PRODUCTS]
    category_slugs = [_slug(category) for category in PRODUCT_CATEGORIES]
    day_prefix = day.isoformat() + "T"
    clock = _clock_strings()
    lines: dict[str, list[tuple[int, str]]] = {name: [] for name in EVENT_TYPES}
    buyers = 0

    for user_number in active:
        uid = web_user_id(user_number)
        is_new = user_number >= previous_pool
        session_count = _weighted_index(_SESSIONS_PER_USER_CUM, rand()) + 1
        buys = rand() < buyer_share
        # Purchases happen in one of the first visits, which always find room in the day.
        buying_session = int(rand() * min(3, session_count)) if buys else -1
        starts = sorted(
            _weighted_index(_EVENT_HOUR_CUM, rand()) * 3600 + int(rand() * 3600)
            for _ in range(session_count)
        )
        previous_end = -_SESSION_TIMEOUT_SECONDS
        bought = False
        for session_index, candidate_start in enumerate(starts):
            session = _SessionEvents(event_ids, uid, session_ids.next())
            page_count = _weighted_index(_PAGEVIEWS_PER_SESSION_CUM, rand()) + 1
            orders = 0
            if session_index == buying_session:
                orders = 2 if rand() < 0.12 else 1
                # Each order takes three page views (product, cart, checkout) of the 1..12.
                page_count = max(1, page_count - 3 * orders)
            referrer = _EXTERNAL_REFERRERS[_weighted_index(_EXTERNAL_REFERRERS_CUM, rand())]
            offset = 0
            for page_index in range(page_count):
                roll = rand()
                product_index = -1
                query = ""
                if page_index == 0 and roll < 0.35:
                    page = "/"
                elif roll < 0.5:
                    product_index = _weighted_index(product_cum, rand())
                    page = f"/products/{PRODUCTS[product_index].product_id}"
                elif roll < 0.68:
                    page = f"/category/{category_slugs[int(rand() * len(category_slugs))]}"
                elif roll < 0.8:
                    query = _SEARCH_QUERIES[int(rand() * len(_SEARCH_QUERIES))]
                    page = "/search?q=" + query.replace(" ", "+")
                elif roll < 0.88:
                    page = f"/blog/{_BLOG_SLUGS[int(rand() * len(_BLOG_SLUGS))]}"
                elif roll < 0.93:
                    page = "/"
                elif roll < 0.97:
                    page = "/account"
                else:
                    page = "/help"
                session.pageview(offset, page, referrer)
                if is_new and session_index == 0 and page_index == 0:
                    method = _SIGNUP_METHODS[int(rand() * len(_SIGNUP_METHODS))]
                    session.custom(offset + 20 + int(rand() * 60), "signup", {"method": method})
                if query:
                    results = int(rand() * 60)
                    session.custom(offset + 1, "search", {"query": query, "results": results})
                if rand() < 0.7:
                    percent = (25, 50, 75, 100)[int(rand() * 4)]
                    session.custom(
                        offset + 5 + int(rand() * 40), "scroll_depth", {"percent": percent}
                    )
                if product_index >= 0:
                    product_id = PRODUCTS[product_index].product_id
                    roll = rand()
                    if roll < 0.06:
                        session.custom(offset + 8, "video_play", {"product_id": product_id})
                    elif roll < 0.10:
                        session.custom(offset + 6, "wishlist_add", {"product_id": product_id})
                    elif roll < 0.16:
                        cart_line = {"product_id": product_id, "quantity": 1}
                        session.custom(offset + 7, "add_to_cart", cart_line)
                if page.startswith("/blog") and rand() < 0.05:
                    channel = _SHARE_CHANNELS[int(rand() * len(_SHARE_CHANNELS))]
                    session.custom(offset + 30, "share", {"channel": channel})
                if rand() < 0.004:
                    session.custom(offset + 3, "newsletter_subscribe", {"source": "footer"})
                referrer = _SITE + page
                offset += 8 + int(-45.0 * math.log(1.0 - rand()))

            for _ in range(orders):
                product_index = _weighted_index(product_cum, rand())
                product = PRODUCTS[product_index]
                quantity = _weighted_index(_QUANTITY_CUM, rand()) + 1
                page = f"/products/{product.product_id}"
                session.pageview(offset, page, referrer)
                cart_line = {"product_id": product.product_id, "quantity": quantity}
                session.custom(offset + 9, "add_to_cart", cart_line)
                offset += 20 + int(rand() * 60)
                session.pageview(offset, "/cart", _SITE + page)
                offset += 10 + int(rand() * 40)
                session.pageview(offset, "/checkout", _SITE + "/cart")
                if rand() < 0.15:
                    code, percent = _COUPONS[int(rand() * len(_COUPONS))]
                    session.custom(
                        offset + 12, "coupon_applied", {"code": code, "percent": percent}
                    )
                offset += 30 + int(rand() * 120)
                amount_cents = quantity * product.unit_price_cents
                session.add(
                    offset,
                    "purchase",
                    f',"order_id":"o-{order_ids.next()}","product_id":"{product.product_id}",'
                    f'"product_name":{product_names[product_index]},'
                    f'"category":{product_categories[product_index]},"quantity":{quantity},'
                    f'"unit_price":{product.unit_price},"amount":{_cents(amount_cents)},'
                    '"currency":"USD"}',
                )
                referrer = _SITE + "/checkout"
                offset += 15

            duration = max(row[0] for row in session.rows)
            start = max(candidate_start, previous_end + _SESSION_TIMEOUT_SECONDS)
            if start + duration >= SECONDS_PER_DAY:
                if session_index:
                    break  # no room left today for another visit
                start = SECONDS_PER_DAY - 1 - duration
            for offset, event_type, head, tail in session.rows:
                second = start + offset
                lines[event_type].append((second, f"{head}{day_prefix}{clock[second]}{tail}"))
            previous_end = start + duration
            bought = bought or orders > 0
        buyers += bought
    return _EventDay(lines, visitors=len(active), buyers=buyers)


def event_key(event_type: str, day: dt.date, hour: int, seed: int) -> str:
    return (
        f"raw/events/{event_type}/{day.year:04d}/{day.month:02d}/{day.day:02d}/{hour:02d}/"
        f"gen-{seed}.jsonl"
    )


def _hourly_files(rows: list[tuple[int, str]]) -> dict[int, bytes]:
    """JSON lines grouped by hour of day, in time order (creation order breaks ties)."""
    rows.sort(key=itemgetter(0))
    hours: dict[int, list[str]] = {}
    for second, line in rows:
        hours.setdefault(second // 3600, []).append(line)
    return {hour: ("\n".join(chunk) + "\n").encode() for hour, chunk in hours.items()}


# ---------------------------------------------------------------------------------------------
# Host metrics
# ---------------------------------------------------------------------------------------------

_METRIC_FORMATS: dict[str, str] = {
    "cpu_percent": "{:.1f}",
    "memory_percent": "{:.1f}",
    "disk_percent": "{:.2f}",
    "net_bytes_sent": "{:d}",
    "net_bytes_recv": "{:d}",
    "request_rate": "{:.2f}",
    "latency_p50_ms": "{:.1f}",
    "latency_p95_ms": "{:.1f}",
    "latency_p99_ms": "{:.1f}",
    "error_rate": "{:.4f}",
    "active_users": "{:d}",
}


def host_name(index: int) -> str:
    return f"web-{index + 1}"


def _traffic_shape(second: int) -> float:
    """Relative load by UTC time: trough around 05:00, peak in the European evening."""
    hours = second / 3600
    daily = 0.55 + 0.45 * math.cos(2 * math.pi * (hours - 17) / 24)
    lunch = 0.08 * math.cos(4 * math.pi * (hours - 13) / 24)
    return max(0.05, daily + lunch)


def _metric_hours(
    seed: int, customers: int, hosts: int, host_index: int, end_date: dt.date, day: dt.date
) -> dict[int, bytes]:
    host = host_name(host_index)
    rng = _stream(seed, "metrics", host, day.isoformat())
    gauss = rng.gauss
    age_days = (end_date - day).days
    host_share = (1.0 / hosts) * _stream(seed, "host", host).uniform(0.9, 1.1)
    # Peak requests per second across the fleet scale with the web user pool.
    peak_rps = web_user_pool_on(customers, end_date, day) * 0.04 * host_share
    peak_rps *= _WEEKDAY_ACTIVITY[day.weekday()] * (1 - 0.002 * age_days)
    disk_base = 38.0 + _stream(seed, "disk", host).uniform(0, 12) + 0.15 * ((-age_days) % 60)
    spike_at, spike_len, spike_kind = -1, 0, ""
    if rng.random() < 0.3:  # an occasional incident: a few bad intervals on one host
        spike_at = rng.randrange(SECONDS_PER_DAY // METRIC_INTERVAL_SECONDS)
        spike_len = rng.randint(2, 9)
        spike_kind = rng.choice(("cpu", "errors", "traffic"))

    clock = _clock_strings()
    day_prefix = day.isoformat() + "T"
    formats = [(name, _METRIC_FORMATS[name].format) for name in METRIC_NAMES]
    hours: dict[int, list[str]] = {}
    for interval in range(SECONDS_PER_DAY // METRIC_INTERVAL_SECONDS):
        second = interval * METRIC_INTERVAL_SECONDS
        spiking = spike_at <= interval < spike_at + spike_len
        load = _traffic_shape(second)
        rps = peak_rps * load * math.exp(gauss(0.0, 0.06))
        if spiking and spike_kind == "traffic":
            rps *= 2.5
        cpu = 6.0 + 62.0 * rps / peak_rps + gauss(0.0, 2.5)
        if spiking and spike_kind == "cpu":
            cpu += 35.0
        cpu = min(100.0, max(0.5, cpu))
        # Workers restart with the nightly deploy at 03:00 UTC, then memory creeps up.
        since_deploy = (second - 3 * 3600) % SECONDS_PER_DAY
        memory = min(97.0, 36.0 + 28.0 * since_deploy / SECONDS_PER_DAY + gauss(0.0, 0.8))
        disk = min(99.0, disk_base + 0.4 * second / SECONDS_PER_DAY + gauss(0.0, 0.03))
        p50 = max(4.0, 22.0 + 0.35 * cpu + gauss(0.0, 1.5))
        if spiking:
            p50 *= 2.5 if spike_kind != "traffic" else 1.6
        p95 = p50 * rng.uniform(2.0, 2.6)
        p99 = p95 * rng.uniform(1.4, 2.0)
        error_rate = 0.0015 + 0.002 * load + abs(gauss(0.0, 0.0008))
        if spiking and spike_kind == "errors":
            error_rate += rng.uniform(0.03, 0.15)
        error_rate = min(1.0, error_rate)
        requests = rps * METRIC_INTERVAL_SECONDS
        values = (
            cpu,
            memory,
            disk,
            int(requests * 24_000 * rng.uniform(0.85, 1.15)),
            int(requests * 3_200 * rng.uniform(0.85, 1.15)),
            rps,
            p50,
            p95,
            p99,
            error_rate,
            int(rps * 7.5 * rng.uniform(0.9, 1.1)),
        )
        ts = f'{{"ts":"{day_prefix}{clock[second]}Z","host":"{host}","metric":"'
        chunk = hours.setdefault(second // 3600, [])
        for (name, fmt), value in zip(formats, values, strict=True):
            chunk.append(f'{ts}{name}","value":{fmt(value)}}}')
    return {hour: ("\n".join(chunk) + "\n").encode() for hour, chunk in hours.items()}


def metric_key(day: dt.date, hour: int, host: str) -> str:
    return f"raw/metrics/{day.year:04d}/{day.month:02d}/{day.day:02d}/{hour:02d}/gen-{host}.jsonl"


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def generate(
    lake: Lake,
    *,
    customers: int,
    days: int,
    seed: int,
    end_date: dt.date,
    bad_uploads: int = 0,
    hosts: int = 2,
    progress: Callable[[str], None] | None = None,
    queue: UploadQueue | None = None,
) -> GenerateSummary:
    """Write sample screen-time uploads, events and metrics for the ``days`` ending at end_date.

    Each screen-time upload written is also sent to ``queue``, as a device's upload is.
    """
    if not 0 <= customers <= MAX_CUSTOMERS:
        raise ValueError(f"customers must be between 0 and {MAX_CUSTOMERS}")
    if days < 1:
        raise ValueError("days must be at least 1")
    if not 0 <= bad_uploads <= MAX_BAD_UPLOADS:
        raise ValueError(f"bad_uploads must be between 0 and {MAX_BAD_UPLOADS}")
    if hosts < 0:
        raise ValueError("hosts must not be negative")
    report = progress or (lambda message: None)
    dates = date_range(end_date, days)
    objects = 0

    lake.write_bytes(PRODUCTS_KEY, _json(products_document()).encode())
    written: list[str] = []
    objects += 1

    uploads = empty = missing = sessions = crossings = raw_bytes = 0
    for number in range(customers):
        profile = customer_profile(seed, number, end_date)
        for day in dates:
            upload = _screen_time_upload(seed, profile, day, None)
            if upload is None:
                missing += 1
                continue
            key = screen_time_key(profile.customer_id, day)
            lake.write_bytes(key, upload.data)
            written.append(key)
            uploads += 1
            empty += upload.sessions == 0
            sessions += upload.sessions
            crossings += upload.crosses_midnight
            raw_bytes += len(upload.data)
        if (number + 1) % max(1, customers // 10) == 0 or number + 1 == customers:
            report(f"screen time: {number + 1}/{customers} customers, {raw_bytes:,} bytes")
    objects += uploads

    bad_bytes = 0
    for index in range(bad_uploads):
        _, key, data = bad_upload(seed, index, end_date, days)
        lake.write_bytes(key, data)
        written.append(key)
        bad_bytes += len(data)
    objects += bad_uploads
    if queue is not None:
        for start in range(0, len(written), 1000):
            queue.send(written[start : start + 1000])
    if bad_uploads:
        report(f"bad uploads: {bad_uploads}")

    events_by_type = dict.fromkeys(EVENT_TYPES, 0)
    event_bytes = visitors = buyers = 0
    for day in dates:
        event_day = _event_day(seed, customers, end_date, day)
        visitors += event_day.visitors
        buyers += event_day.buyers
        for event_type, rows in event_day.lines.items():
            events_by_type[event_type] += len(rows)
            for hour, data in _hourly_files(rows).items():
                lake.write_bytes(event_key(event_type, day, hour, seed), data)
                event_bytes += len(data)
                objects += 1
        report(f"events: {day.isoformat()} done, {sum(events_by_type.values()):,} so far")

    metric_points = metric_bytes = 0
    for day in dates:
        for host_index in range(hosts):
            for hour, data in _metric_hours(
                seed, customers, hosts, host_index, end_date, day
            ).items():
                lake.write_bytes(metric_key(day, hour, host_name(host_index)), data)
                metric_points += data.count(b"\n")
                metric_bytes += len(data)
                objects += 1
    report(f"metrics: {metric_points:,} points")

    return GenerateSummary(
        start_date=dates[0],
        end_date=end_date,
        customers=customers,
        uploads=uploads,
        empty_uploads=empty,
        missing_days=missing,
        sessions=sessions,
        midnight_crossings=crossings,
        raw_bytes=raw_bytes,
        events_by_type=events_by_type,
        event_bytes=event_bytes,
        visitors=visitors,
        buyers=buyers,
        metric_points=metric_points,
        metric_bytes=metric_bytes,
        bad_uploads=bad_uploads,
        bad_upload_bytes=bad_bytes,
        objects_written=objects,
    )
