"""Typed, frozen queries: one per view, each knowing its data versions and how to load itself.

A query's ``load`` reads the lake only; the read-through tiers live in ``service``.
Fleet queries read per-date rollups, never the per-customer files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import ClassVar

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data_access import layout
from data_access.stores import ObjectMissing, Stores, UploadRecord

# Records kind holding the app dimension: app_id -> {"name", "category"}.
APP_DIMENSION = "app"


def app_names(stores: Stores) -> pd.DataFrame:
    """The app dimension as a frame: app_id, app_name, category."""
    rows = [
        {"app_id": key, "app_name": doc["name"], "category": doc["category"]}
        for key, doc in stores.records.scan(APP_DIMENSION, limit=1_000_000)
    ]
    return pd.DataFrame(rows, columns=["app_id", "app_name", "category"])


_DAY_COLUMNS = ["hour", "app_id", "seconds", "sessions", "pickups", "notifications"]


# The fields of a part's ``session_spans`` entries (offsets after the date's midnight).
SPAN_FIELDS = ("start", "end", "pickups", "notifications")


def _select(table: pa.Table, columns: list[str]) -> pa.Table:
    """``columns`` of the table; one written before a column existed has it as nulls."""
    for name in columns:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows))
    return table.select(columns)


def _rows_of(table: pa.Table | None, record: UploadRecord, columns: list[str]) -> pa.Table | None:
    """The rows of ``record``'s version in a part, or None when the part does not hold it."""
    if table is None:
        return None
    if "customer_id" not in table.column_names:
        return _select(table, columns)
    mask = pc.equal(table["customer_id"], record.customer_id)
    if record.content_hash:  # "": whichever version a compacted part holds
        mask = pc.and_(mask, pc.equal(table["content_hash"], layout.row_hash(record.content_hash)))
    rows = table.filter(mask)
    return _select(rows, columns) if rows.num_rows else None


def _read_by_key(
    stores: Stores, wanted: dict[str, list[int]], records: list[UploadRecord], columns: list[str]
) -> dict[int, pa.Table]:
    found: dict[int, pa.Table] = {}
    for key, positions in wanted.items():
        customers = sorted({records[i].customer_id for i in positions})
        if key.startswith(layout.SCREEN_TIME_PARTS):
            wanted_columns = ["customer_id", "content_hash", *columns]
            table = stores.lake.read_where(key, "customer_id", customers, wanted_columns)
        else:  # a file of one customer-day, from the layout before parts
            table = stores.lake.read_tables([key])[0]
        for i in positions:
            rows = _rows_of(table, records[i], columns)
            if rows is not None:
                found[i] = rows
    return found


def read_customer_days(
    stores: Stores, records: list[UploadRecord], columns: list[str] = _DAY_COLUMNS
) -> list[pa.Table | None]:
    """The processed rows of each customer-day version, wherever it lives now; None if gone.

    A version committed before its date was last compacted is looked for in the compacted
    part of its bucket first, a later one in the part its record names first; each falls
    back to the other, since compaction may merge a part between the index read and ours.
    A record without an object key (a replaced version the fold subtracts) is looked for in
    the compacted part, then in every part of its bucket. Each round reads a part once for
    all the customers wanted from it.
    """
    compacted = compaction_manifests(stores, {r.date for r in records})

    def candidates(record: UploadRecord) -> list[str]:
        manifest = compacted.get(record.date)
        merged = compacted_part(manifest, record.customer_id)
        if merged is not None and record.uploaded_at < manifest["at"]:  # type: ignore[index]
            keys = [merged, record.object_key]
        else:
            keys = [record.object_key, merged]
        if not record.object_key:
            bucket = layout.screen_time_bucket(record.customer_id)
            prefix = layout.screen_time_bucket_prefix(record.date, bucket)
            keys += [info.key for info in stores.lake.list(prefix)]
        return list(dict.fromkeys(key for key in keys if key))

    remaining = {i: candidates(record) for i, record in enumerate(records)}
    found: dict[int, pa.Table] = {}
    while remaining:
        wanted: dict[str, list[int]] = {}
        for i, keys in remaining.items():
            wanted.setdefault(keys.pop(0), []).append(i)
        found.update(_read_by_key(stores, wanted, records, columns))
        remaining = {i: keys for i, keys in remaining.items() if keys and i not in found}
    return [found.get(i) for i in range(len(records))]


def compaction_manifests(stores: Stores, dates: Iterable[str]) -> dict[str, dict]:
    """The compaction manifests of those dates that have one, by date (one batched read)."""
    names = {d: layout.screen_time_compaction(d) for d in dates}
    found = stores.state.get_many(list(names.values())) if names else {}
    return {d: json.loads(found[n]) for d, n in names.items() if n in found}


def compacted_part(manifest: dict | None, customer_id: str) -> str | None:
    """The compacted part of the customer's bucket a date's manifest names, if any."""
    bucket = f"{layout.screen_time_bucket(customer_id):02d}"
    return manifest["parts"].get(bucket) if manifest else None


def compacted_version(stores: Stores, customer_id: str, date: str) -> tuple[str, str] | None:
    """(part key, row hash) of the version the date's compacted part holds for the
    customer; None when the date is not compacted or the part holds no rows of theirs."""
    part = compacted_part(compaction_manifests(stores, [date]).get(date), customer_id)
    rows = stores.lake.read_where(part, "customer_id", [customer_id]) if part else None
    if rows is None or not rows.num_rows:
        return None
    return part, rows.column("content_hash")[0].as_py()


def customer_versions(stores: Stores, customer_id: str, start: str, end: str) -> list[UploadRecord]:
    """A customer's days from ``start`` to ``end``: the index's records, and for compacted
    dates whose records have passed their retention, a stand-in naming the compacted part
    (content hash "": whichever version it holds)."""
    records = stores.index.customer_days(customer_id, start, end)
    have = {r.date for r in records}
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    missing = [d for d in layout.dates(first, last) if d not in have]
    for date, manifest in compaction_manifests(stores, missing).items():
        if part := compacted_part(manifest, customer_id):
            records.append(UploadRecord(customer_id, date, part, "", 0, 0, 0, 0.0, ""))
    return sorted(records, key=lambda r: r.date)


def customer_data_version(records: list[UploadRecord]) -> str:
    """A customer's data version over some dates, from their index records: every upload
    that changes one of those days writes a record with a new hash and upload time."""
    if not records:
        return "0"
    text = ";".join(f"{r.date}:{r.content_hash}:{r.uploaded_at!r}" for r in records)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _CustomerDays:
    """A view of one customer's days, versioned by their index records: the record each
    upload writes anyway is the version, so an upload writes no version of its own."""

    customer_id: str  # a field of each dataclass that mixes this in

    def _days(self) -> tuple[str, str]:
        raise NotImplementedError

    def versions(self) -> list[str]:
        return []

    def version_key(self) -> str:
        first, last = self._days()
        return f"customer\x1f{self.customer_id}\x1f{first}\x1f{last}"

    def read_version(self, stores: Stores) -> str:
        first, last = self._days()
        records = stores.index.customer_days(self.customer_id, first, last)
        return customer_data_version(records)


def customer_day_rows(stores: Stores, records: list[UploadRecord]) -> pd.DataFrame:
    """Processed rows of customer-days with customer_id, source_date and calendar day.

    Hours 24-47 of a customer-day are the next day's hours 0-23 (sessions past midnight).
    """
    tables = []
    for record, table in zip(records, read_customer_days(stores, records), strict=True):
        if table is not None and table.num_rows:
            n = table.num_rows
            table = table.append_column("customer_id", pa.array([record.customer_id] * n))
            tables.append(table.append_column("source_date", pa.array([record.date] * n)))
    if not tables:
        return pd.DataFrame(columns=[*_DAY_COLUMNS, "customer_id", "source_date", "day"])
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    hours = frame["hour"].astype("int64")
    day = pd.to_datetime(frame["source_date"]) + pd.to_timedelta(hours // 24, unit="D")
    frame["day"] = day.dt.strftime("%Y-%m-%d")
    frame["hour"] = hours % 24
    return frame


def _frame(table: pa.Table, columns: list[str]) -> pd.DataFrame:
    if table.num_columns == 0:
        return pd.DataFrame({name: pd.Series(dtype="float64") for name in columns})
    return table.to_pandas()


def _empty(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=kind) for name, kind in columns.items()})


@dataclass(frozen=True)
class Query:
    """Base: subclasses are frozen dataclasses of plain values (hashable, reproducible keys)."""

    kind: ClassVar[str] = "query"

    def versions(self) -> list[str]:
        """Names of the data versions in the state store that the answer depends on."""
        raise NotImplementedError

    def version_key(self) -> str:
        """What the version depends on: queries with equal keys share one version lookup."""
        return "\x1f".join(self.versions())

    def read_version(self, stores: Stores) -> str:
        """The answer's data version now: one batched state read."""
        names = self.versions()
        values = stores.state.get_many(names)
        return "|".join(values.get(name, "0") for name in names)

    def load(self, stores: Stores) -> pd.DataFrame:
        raise NotImplementedError

    def describe(self) -> dict[str, str]:
        """The query's parameters as strings, for cache keys, logs and export file names."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class DateRange(Query):
    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"range ends before it starts: {self.start} > {self.end}")
        if (self.end - self.start).days > 800:
            raise ValueError("range longer than 800 days")

    @property
    def days(self) -> list[str]:
        return layout.dates(self.start, self.end)

    def previous(self) -> tuple[dt.date, dt.date]:
        span = self.end - self.start + dt.timedelta(days=1)
        return self.start - span, self.start - dt.timedelta(days=1)


# ---- screen time: fleet (per-date summaries) ----------------------------------------------

# A date's summary: rows (dim, key) with dim "day" (key ""), "app" (key app_id) or "hour"
# (key "00".."23"). Seconds and counts are by calendar day; ``customers`` counts the date's
# uploads with any usage (dim "day") or with usage of that app (dim "app"); ``uploads``
# counts the date's uploads, empty ones included.
SUMMARY_COUNTS = ["seconds", "sessions", "pickups", "notifications", "customers", "uploads"]


def summary_frame(table: pa.Table | None) -> pd.DataFrame:
    """A summary table as a frame with every column, empty when there is none."""
    if table is None or table.num_columns == 0:
        columns = {"dim": "object", "key": "object", **dict.fromkeys(SUMMARY_COUNTS, "int64")}
        return _empty(columns)
    return table.to_pandas()


def _summaries(stores: Stores, days: list[str], dims: tuple[str, ...]) -> pd.DataFrame:
    """The rows of each day's summary whose dim is in ``dims``, with a ``day`` column.

    Concatenated and filtered in Arrow, converted to pandas once: the fixed cost per date
    is what a 30-day view pays 30 times.
    """
    tables = stores.lake.read_tables([layout.screen_time_summary_key(d) for d in days])
    found = [
        table.append_column("day", pa.array([day] * table.num_rows, pa.string()))
        for day, table in zip(days, tables, strict=True)
        if table is not None and table.num_rows
    ]
    if not found:
        return summary_frame(None).assign(day=pd.Series(dtype="object"))
    table = pa.concat_tables(found, promote_options="permissive")
    return table.filter(pc.is_in(table["dim"], pa.array(dims))).to_pandas()


class FleetQuery(DateRange):
    """Fleet queries depend on the versions of their own dates only."""

    def versions(self) -> list[str]:
        return [layout.screen_time_date_version(d) for d in self.days]


@dataclass(frozen=True)
class FleetDailyQuery(FleetQuery):
    """Per day: active customers, total and average screen time, pickups."""

    kind: ClassVar[str] = "fleet_daily"

    def load(self, stores: Stores) -> pd.DataFrame:
        days = _summaries(stores, self.days, ("day",))
        days = days[days["customers"] > 0]
        active = days["customers"]
        return pd.DataFrame(
            {
                "day": days["day"],
                "active_customers": active.astype("int64"),
                "total_seconds": days["seconds"].astype("int64"),
                "avg_seconds": (days["seconds"] / active).astype("float64"),
                "avg_pickups": (days["pickups"] / active).astype("float64"),
            }
        ).reset_index(drop=True)


@dataclass(frozen=True)
class FleetAppsQuery(FleetQuery):
    """Per app over the range: seconds, customer-days, sessions (categories derive from it)."""

    kind: ClassVar[str] = "fleet_apps"

    def load(self, stores: Stores) -> pd.DataFrame:
        apps = _summaries(stores, self.days, ("app",))
        out = apps.groupby("key", as_index=False).agg(
            seconds=("seconds", "sum"),
            customer_days=("customers", "sum"),
            sessions=("sessions", "sum"),
        )
        out = out[out["seconds"] > 0].rename(columns={"key": "app_id"})
        out = out.merge(app_names(stores), on="app_id", how="left")
        out["app_name"] = out["app_name"].fillna(out["app_id"])
        out["category"] = out["category"].fillna("Other")
        out = out[["app_id", "app_name", "category", "seconds", "customer_days", "sessions"]]
        out = out.astype({"seconds": "int64", "customer_days": "int64", "sessions": "int64"})
        return out.sort_values("seconds", ascending=False).reset_index(drop=True)


@dataclass(frozen=True)
class FleetHoursQuery(FleetQuery):
    """Average screen time per active customer-day by local hour of day."""

    kind: ClassVar[str] = "fleet_hours"

    def load(self, stores: Stores) -> pd.DataFrame:
        rows = _summaries(stores, self.days, ("hour", "day"))
        hours = rows[rows["dim"] == "hour"]
        active_days = max(1, int(rows.loc[rows["dim"] == "day", "customers"].sum()))
        per_hour = hours.groupby(hours["key"].astype("int64"))["seconds"].sum() / active_days
        frame = pd.DataFrame({"hour": range(24)})
        frame["avg_seconds"] = frame["hour"].map(per_hour).fillna(0.0).astype("float64")
        return frame


@dataclass(frozen=True)
class CustomerSearchQuery(Query):
    """Customers whose id starts with ``prefix``, from the customer directory (a range read)."""

    kind: ClassVar[str] = "customer_search"
    prefix: str
    limit: int = 20

    def versions(self) -> list[str]:
        return [layout.VERSION_CUSTOMER_DIRECTORY]

    def load(self, stores: Stores) -> pd.DataFrame:
        found = stores.records.scan(layout.CUSTOMER_DIRECTORY, prefix=self.prefix, limit=self.limit)
        return pd.DataFrame({"customer_id": pd.Series([key for key, _ in found], dtype="object")})


# ---- screen time: one customer (per-customer files, found through the index) -------------


@dataclass(frozen=True)
class CustomerTrendQuery(_CustomerDays, DateRange):
    """One customer's daily totals. Days without an upload are absent; an empty upload is zero."""

    kind: ClassVar[str] = "customer_trend"
    customer_id: str = ""

    def _days(self) -> tuple[str, str]:
        # The day before the range can spill a session past midnight into it.
        return (self.start - dt.timedelta(days=1)).isoformat(), self.end.isoformat()

    def load(self, stores: Stores) -> pd.DataFrame:
        first, last = self._days()
        records = customer_versions(stores, self.customer_id, first, last)
        rows = customer_day_rows(stores, records)
        # A stand-in for a pruned record counts only if its part holds the customer's day.
        found = {r.date for r in records if r.content_hash} | set(rows["source_date"])
        in_range = {d for d in found if d >= self.start.isoformat()}
        # A customer with no upload in the range is a normal state: an empty, typed frame.
        frame = pd.DataFrame({"day": pd.Series(sorted(in_range), dtype="object")})
        totals = ["seconds", "sessions", "pickups", "notifications"]
        sums = rows.groupby("day")[totals].sum()
        frame = frame.merge(sums, left_on="day", right_index=True, how="left")
        for column in totals:
            frame[column] = frame[column].fillna(0).astype("int64")
        return frame


@dataclass(frozen=True)
class CustomerDayQuery(_CustomerDays, Query):
    """One customer-day by app and hour (the processed rows)."""

    kind: ClassVar[str] = "customer_day"
    customer_id: str
    day: dt.date

    def _days(self) -> tuple[str, str]:
        return (self.day - dt.timedelta(days=1)).isoformat(), self.day.isoformat()

    def load(self, stores: Stores) -> pd.DataFrame:
        before, day = self._days()
        records = customer_versions(stores, self.customer_id, before, day)
        rows = customer_day_rows(stores, records)
        rows = rows[rows["day"] == day].drop(columns=["day"])
        counts = ["seconds", "sessions", "pickups", "notifications"]
        rows = rows.groupby(["hour", "app_id"], as_index=False)[counts].sum()
        rows = rows.merge(app_names(stores), on="app_id", how="left")
        rows["app_name"] = rows["app_name"].fillna(rows["app_id"])
        rows["category"] = rows["category"].fillna("Other")
        rows = rows[["hour", "app_id", "app_name", "category", *counts]]
        return rows.astype({"hour": "int64", **dict.fromkeys(counts, "int64")})


@dataclass(frozen=True)
class CustomerSessionsQuery(_CustomerDays, Query):
    """One customer-day's sessions, from the processed version (validated data only)."""

    kind: ClassVar[str] = "customer_sessions"
    customer_id: str
    day: dt.date

    _COLUMNS: ClassVar[dict[str, str]] = {
        "start": "object",
        "end": "object",
        "app_name": "object",
        "category": "object",
        "minutes": "float64",
        "pickups": "int64",
        "notifications": "int64",
    }

    def _days(self) -> tuple[str, str]:
        return self.day.isoformat(), self.day.isoformat()

    def load(self, stores: Stores) -> pd.DataFrame:
        records = customer_versions(stores, self.customer_id, *self._days())
        tables = read_customer_days(stores, records, ["app_id", "session_spans"])
        table = tables[0] if tables else None
        if table is None or not table.num_rows:
            return _empty(self._COLUMNS)
        if table["session_spans"].null_count:
            # Processed before sessions were kept with the counts: only the raw upload has them.
            return self._from_raw(stores)
        spans = pc.list_flatten(table["session_spans"]).combine_chunks()
        if not len(spans):
            return _empty(self._COLUMNS)
        owners = pc.list_parent_indices(table["session_spans"])
        frame = pd.DataFrame(
            {
                "app_id": pc.take(table["app_id"], owners).to_pylist(),
                **{name: spans.field(name).to_numpy() for name in SPAN_FIELDS},
            }
        ).sort_values("start", kind="stable")
        frame["minutes"] = ((frame["end"] - frame["start"]) / 60).round(1)
        midnight = pd.Timestamp(self.day)
        for column in ("start", "end"):
            times = midnight + pd.to_timedelta(frame[column], unit="s")
            frame[column] = times.dt.strftime("%Y-%m-%dT%H:%M:%S")
        frame = frame.merge(app_names(stores), on="app_id", how="left")
        frame["app_name"] = frame["app_name"].fillna(frame["app_id"])
        frame["category"] = frame["category"].fillna("Other")
        frame = frame[list(self._COLUMNS)].reset_index(drop=True)
        return frame.astype({"pickups": "int64", "notifications": "int64"})

    def _from_raw(self, stores: Stores) -> pd.DataFrame:
        """The raw upload's sessions, only when its bytes are the processed version (a rejected
        re-upload leaves its bytes in place, and they are not shown)."""
        date = self.day.isoformat()
        try:
            raw = stores.lake.read_bytes(layout.raw_upload_key(self.customer_id, date))
        except ObjectMissing:
            return _empty(self._COLUMNS)
        record = stores.index.get(self.customer_id, date)
        held = record.content_hash if record is not None else None
        if held is None and (found := compacted_version(stores, self.customer_id, date)):
            held = found[1]
        if held is None or layout.row_hash(held) != layout.row_hash(
            hashlib.sha256(raw).hexdigest()
        ):
            return _empty(self._COLUMNS)
        rows = []
        for session in json.loads(raw).get("sessions", []):
            start = dt.datetime.fromisoformat(session["start"])
            end = dt.datetime.fromisoformat(session["end"])
            rows.append(
                {
                    "start": session["start"],
                    "end": session["end"],
                    "app_name": session["app_name"],
                    "category": session["category"],
                    "minutes": round((end - start).total_seconds() / 60, 1),
                    "pickups": session["pickups"],
                    "notifications": session["notifications"],
                }
            )
        return pd.DataFrame(rows) if rows else _empty(self._COLUMNS)


# ---- business (daily rollups of events) --------------------------------------------------

_KPI_LABELS = {
    "revenue": "Revenue",
    "orders": "Orders",
    "aov": "Average order value",
    "conversion": "Conversion",
    "dau": "Daily active users",
    "mau": "Monthly active users",
}


def _business_totals(stores: Stores, start: dt.date, end: dt.date) -> dict[str, float]:
    days = layout.dates(start, end)
    stats = stores.lake.read_table([layout.business_rollup_key(d, "stats") for d in days])
    totals = dict.fromkeys(_KPI_LABELS, 0.0)
    if stats.num_rows:
        df = stats.to_pandas()
        revenue, orders = float(df["revenue"].sum()), int(df["orders"].sum())
        visitors = float(df["visitors"].sum())
        totals.update(
            revenue=revenue,
            orders=orders,
            aov=revenue / orders if orders else 0.0,
            conversion=float(df["buyers"].sum()) / visitors if visitors else 0.0,
            dau=float(df["dau"].mean()),
        )
    # MAU: distinct users over the 30 days ending at ``end``.
    month = layout.dates(end - dt.timedelta(days=29), end)
    users = stores.lake.read_table([layout.business_rollup_key(d, "users") for d in month])
    if users.num_rows:
        totals["mau"] = float(pc.count_distinct(users["user_id"]).as_py())
    return totals


@dataclass(frozen=True)
class KpiSummaryQuery(DateRange):
    """Revenue, orders, AOV, conversion, DAU, MAU with the change against the previous period."""

    kind: ClassVar[str] = "kpi_summary"

    def versions(self) -> list[str]:
        return [layout.VERSION_BUSINESS_ROLLUP]

    def load(self, stores: Stores) -> pd.DataFrame:
        current = _business_totals(stores, self.start, self.end)
        previous = _business_totals(stores, *self.previous())
        rows = []
        for metric, label in _KPI_LABELS.items():
            now, before = current[metric], previous[metric]
            change = (now - before) / before if before else None
            rows.append(
                {
                    "metric": metric,
                    "label": label,
                    "value": now,
                    "previous": before,
                    "change": change,
                }
            )
        return pd.DataFrame(rows)


@dataclass(frozen=True)
class DailyBusinessQuery(DateRange):
    """Per day: revenue, orders, visitors, buyers, DAU, page views."""

    kind: ClassVar[str] = "business_daily"

    def versions(self) -> list[str]:
        return [layout.VERSION_BUSINESS_ROLLUP]

    def load(self, stores: Stores) -> pd.DataFrame:
        table = stores.lake.read_table([layout.business_rollup_key(d, "stats") for d in self.days])
        columns = ["day", "revenue", "orders", "visitors", "buyers", "dau", "pageviews"]
        return _frame(table, columns).reset_index(drop=True)


@dataclass(frozen=True)
class TopProductsQuery(DateRange):
    kind: ClassVar[str] = "top_products"
    limit: int = 5

    def versions(self) -> list[str]:
        return [layout.VERSION_BUSINESS_ROLLUP]

    def load(self, stores: Stores) -> pd.DataFrame:
        table = stores.lake.read_table(
            [layout.business_rollup_key(d, "products") for d in self.days]
        )
        if table.num_rows == 0:
            return _empty(
                {
                    "product_id": "object",
                    "product_name": "object",
                    "category": "object",
                    "revenue": "float64",
                    "orders": "int64",
                    "quantity": "int64",
                }
            )
        df = table.to_pandas()
        out = df.groupby(["product_id", "product_name", "category"], as_index=False)[
            ["revenue", "orders", "quantity"]
        ].sum()
        out = out.sort_values("revenue", ascending=False)
        return (out.head(self.limit) if self.limit else out).reset_index(drop=True)


@dataclass(frozen=True)
class WeeklyRevenueQuery(DateRange):
    """Revenue and orders per ISO week (starting Monday) and category."""

    kind: ClassVar[str] = "weekly_revenue"

    def versions(self) -> list[str]:
        return [layout.VERSION_BUSINESS_ROLLUP]

    def load(self, stores: Stores) -> pd.DataFrame:
        keys = [layout.business_rollup_key(d, "products") for d in self.days]
        table = stores.lake.read_table(keys)
        if table.num_rows == 0:
            return _empty(
                {"week": "object", "category": "object", "revenue": "float64", "orders": "int64"}
            )
        df = table.to_pandas()
        day = pd.to_datetime(df["day"].astype(str))
        df["week"] = (day - pd.to_timedelta(day.dt.weekday, unit="D")).dt.date.astype(str)
        out = df.groupby(["week", "category"], as_index=False)[["revenue", "orders"]].sum()
        return out.sort_values(["week", "category"]).reset_index(drop=True)


@dataclass(frozen=True)
class OrdersQuery(DateRange):
    """The orders (purchase events) placed in the range, newest first."""

    kind: ClassVar[str] = "orders"
    category: str = ""

    def versions(self) -> list[str]:
        return [layout.VERSION_EVENTS]

    def load(self, stores: Stores) -> pd.DataFrame:
        keys = [layout.events_key("purchase", d, hour) for d in self.days for hour in range(24)]
        columns = [
            "ts",
            "order_id",
            "user_id",
            "product_id",
            "product_name",
            "category",
            "quantity",
            "unit_price",
            "amount",
            "currency",
        ]
        table = stores.lake.read_table(keys, columns)
        if table.num_rows == 0:
            return _empty(dict.fromkeys(columns, "object"))
        df = table.to_pandas()
        if self.category:
            df = df[df["category"] == self.category]
        df["ts"] = df["ts"].dt.strftime("%Y-%m-%d %H:%M:%S")
        return df.sort_values("ts", ascending=False).reset_index(drop=True)


# ---- system -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsQuery(Query):
    """Host and application metric points from ``since`` to ``until`` (UTC), one per point."""

    kind: ClassVar[str] = "metrics"
    since: dt.datetime
    until: dt.datetime

    def versions(self) -> list[str]:
        return [layout.VERSION_METRICS]

    def load(self, stores: Stores) -> pd.DataFrame:
        keys = []
        hour = self.since.replace(minute=0, second=0, microsecond=0)
        while hour <= self.until:
            keys.append(layout.metrics_key(hour.date().isoformat(), hour.hour))
            hour += dt.timedelta(hours=1)
        table = stores.lake.read_table(keys, ["ts", "host", "metric", "value"])
        if table.num_rows == 0:
            return _empty(
                {
                    "ts": "datetime64[ms, UTC]",
                    "host": "object",
                    "metric": "object",
                    "value": "float64",
                }
            )
        df = table.to_pandas()
        since, until = (
            pd.Timestamp(t).tz_convert("UTC") if t.tzinfo else pd.Timestamp(t, tz="UTC")
            for t in (self.since, self.until)
        )
        # Points past ``until`` (a sample's, written ahead) are not in the window asked for.
        in_window = (df["ts"] >= since) & (df["ts"] <= until)
        return df[in_window].sort_values("ts").reset_index(drop=True)


@dataclass(frozen=True)
class PipelineStatsQuery(Query):
    """Uploads processed and quarantined, and their bytes, in the UTC hours since ``since``.

    Read from the hourly counters processing keeps (one item per hour), never from the index.
    """

    kind: ClassVar[str] = "pipeline_stats"
    since: dt.datetime

    def versions(self) -> list[str]:
        return [layout.VERSION_LATEST_UPLOAD, layout.VERSION_QUARANTINE]

    def load(self, stores: Stores) -> pd.DataFrame:
        hour = self.since.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
        now = dt.datetime.now(dt.UTC)
        names = []
        while hour <= now:
            names.append(layout.pipeline_counters(hour.strftime("%Y-%m-%dT%H")))
            hour += dt.timedelta(hours=1)
        totals: dict[str, int] = {}
        for counters in stores.state.counters(names).values():
            for name, value in counters.items():
                totals[name] = totals.get(name, 0) + value
        latest = stores.state.get(layout.VERSION_LATEST_UPLOAD)
        latest_at = float(latest.split("-", 1)[0]) if latest else float("nan")
        return pd.DataFrame(
            [
                {"metric": "uploads_processed", "value": float(totals.get("processed", 0))},
                {"metric": "uploads_quarantined", "value": float(totals.get("quarantined", 0))},
                {"metric": "parquet_bytes", "value": float(totals.get("parquet_bytes", 0))},
                {"metric": "raw_bytes", "value": float(totals.get("raw_bytes", 0))},
                {"metric": "latest_upload_at", "value": latest_at},
            ]
        )


@dataclass(frozen=True)
class LakeSummaryQuery(Query):
    """Objects and bytes under each top-level prefix of the lake."""

    kind: ClassVar[str] = "lake_summary"
    prefixes: tuple[str, ...] = (
        layout.RAW_SCREEN_TIME,
        layout.PROCESSED_SCREEN_TIME,
        layout.QUARANTINE_SCREEN_TIME,
        layout.PROCESSED_EVENTS,
        layout.PROCESSED_METRICS,
        layout.ROLLUP_SCREEN_TIME,
        layout.ROLLUP_BUSINESS,
    )

    def versions(self) -> list[str]:
        return [
            layout.VERSION_LATEST_UPLOAD,
            layout.VERSION_QUARANTINE,
            layout.VERSION_EVENTS,
            layout.VERSION_METRICS,
            layout.VERSION_SCREEN_TIME_ROLLUP,
            layout.VERSION_BUSINESS_ROLLUP,
        ]

    def load(self, stores: Stores) -> pd.DataFrame:
        rows = []
        for prefix in self.prefixes:
            objects = size = 0
            for info in stores.lake.list(prefix):
                objects += 1
                size += info.size
            rows.append({"prefix": prefix, "objects": objects, "bytes": size})
        return pd.DataFrame(rows, columns=["prefix", "objects", "bytes"])
