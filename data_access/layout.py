"""Where every kind of object lives in the lake. One place, so writers and readers agree."""

from __future__ import annotations

import datetime as dt
import re
import zlib

# A customer id is part of every key: it must never be able to name another path.
CUSTOMER_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

RAW_SCREEN_TIME = "raw/screen_time/"
PROCESSED_SCREEN_TIME = "processed/screen_time/"
QUARANTINE_SCREEN_TIME = "quarantine/screen_time/"
RAW_EVENTS = "raw/events/"
PROCESSED_EVENTS = "processed/events/"
RAW_METRICS = "raw/metrics/"
PROCESSED_METRICS = "processed/metrics/"
ROLLUP_SCREEN_TIME = "rollups/screen_time/"
ROLLUP_BUSINESS = "rollups/business/"


def is_safe_customer_id(value: object) -> bool:
    return isinstance(value, str) and CUSTOMER_ID_PATTERN.fullmatch(value) is not None


def raw_upload_key(customer_id: str, date: str) -> str:
    return f"{RAW_SCREEN_TIME}{customer_id}/{date}.json"


# Processed screen time is a Hive-style table: a date's customers are spread over a fixed
# number of buckets by a hash of their id, each bucket holds Parquet parts sorted by
# customer_id. A worker writes one part per (date, bucket) per batch; compaction merges a
# closed date's parts into one per bucket. Fixed, so a customer's bucket never moves.
SCREEN_TIME_BUCKETS = 16
SCREEN_TIME_PARTS = f"{PROCESSED_SCREEN_TIME}date="


def screen_time_bucket(customer_id: str) -> int:
    """The bucket a customer's days live in: stable across processes and releases."""
    return zlib.crc32(customer_id.encode()) % SCREEN_TIME_BUCKETS


def screen_time_bucket_prefix(date: str, bucket: int) -> str:
    return f"{PROCESSED_SCREEN_TIME}date={date}/bucket={bucket:02d}/"


def screen_time_part_key(date: str, bucket: int, name: str) -> str:
    """A part of one (date, bucket); ``name`` is derived from its content, so a retried
    write of the same rows lands on the same key."""
    return f"{screen_time_bucket_prefix(date, bucket)}part-{name}.parquet"


def index_expires_at(date: str, uploaded_at: float, retention_days: int) -> float:
    """When a customer-day's index record may go (0: never).

    ``retention_days`` after its date, and never sooner than two days after it was written,
    so a late re-upload of an old day is folded and compacted first. By then its date is
    compacted, and readers find it through the date's compaction manifest.
    """
    if retention_days <= 0:
        return 0.0
    day = dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC).timestamp()
    return max(day + retention_days * 86_400, uploaded_at + 2 * 86_400)


def row_hash(content_hash: str) -> str:
    """The part of an upload's sha256 each processed row carries: enough to tell versions
    of one customer-day apart."""
    return content_hash[:16]


def screen_time_compaction(date: str) -> str:
    """State: the compacted part of each bucket of ``date`` (JSON), once it is compacted."""
    return f"compacted:screen_time:{date}"


def screen_time_summary_key(date: str) -> str:
    """The date's fleet summary: O(apps + hours) rows, whatever the number of customers."""
    return f"{ROLLUP_SCREEN_TIME}date={date}/summary.parquet"


def business_rollup_key(date: str, table: str) -> str:
    """``table`` is one of stats, products, users."""
    return f"{ROLLUP_BUSINESS}date={date}/{table}.parquet"


def events_key(event_type: str, date: str, hour: int) -> str:
    return f"{PROCESSED_EVENTS}{event_type}/date={date}/hour={hour:02d}/part.parquet"


def metrics_key(date: str, hour: int) -> str:
    return f"{PROCESSED_METRICS}date={date}/hour={hour:02d}/part.parquet"


def dates(start: dt.date, end: dt.date) -> list[str]:
    """ISO dates from start to end inclusive."""
    return [(start + dt.timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


# Names of the data versions in the state store. A reader's cache key includes the
# versions it depends on, so a new write is visible at the next poll.
def screen_time_date_version(date: str) -> str:
    """Changes only when that date's fleet numbers change."""
    return f"version:rollup:screen_time:{date}"


# State: the upload time the screen-time fold has folded through. Workers read it to keep
# an index record's ``held`` list short; compaction to know what the fold still needs.
SCREEN_TIME_FOLD_WATERMARK = "rollup:screen_time:watermark"


def pipeline_counters(hour: str) -> str:
    """Processing counters of one UTC hour, ``YYYY-MM-DDTHH``."""
    return f"counters:screen_time:{hour}"


# Records kind of customer-day versions replaced or lost in a race, awaiting deletion.
SUPERSEDED = "superseded"

# Records kind of the customer directory: one entry per customer, searched by id prefix.
CUSTOMER_DIRECTORY = "customer"

VERSION_SCREEN_TIME_ROLLUP = "version:rollup:screen_time"
VERSION_CUSTOMER_DIRECTORY = "version:customer_directory"
VERSION_BUSINESS_ROLLUP = "version:rollup:business"
VERSION_LATEST_UPLOAD = "version:screen_time:latest_upload"
VERSION_EVENTS = "version:events"
VERSION_METRICS = "version:metrics"
VERSION_QUARANTINE = "version:quarantine"
