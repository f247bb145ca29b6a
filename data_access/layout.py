"""Where every kind of object lives in the lake. One place, so writers and readers agree."""

from __future__ import annotations

import datetime as dt
import re

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


def processed_upload_key(customer_id: str, date: str, content_hash: str) -> str:
    """One object per version of a customer-day, named by its content.

    Racing workers never overwrite each other's object (the index's conditional write picks
    the winner), and the version the rollup summaries hold stays readable until the rollup
    has subtracted it.
    """
    return f"{PROCESSED_SCREEN_TIME}{customer_id}/{date}/{content_hash[:16]}.parquet"


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
def customer_version(customer_id: str) -> str:
    return f"version:customer:{customer_id}"


def screen_time_date_version(date: str) -> str:
    """Changes only when that date's fleet numbers change."""
    return f"version:rollup:screen_time:{date}"


def folded_version(customer_id: str, date: str) -> str:
    """The content hash of the customer-day version the fleet summaries hold."""
    return f"folded:screen_time:{customer_id}:{date}"


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
