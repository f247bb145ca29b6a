"""Cost: every S3 and DynamoDB request counted while the AWS backend (on the local servers)
processes uploads, folds and compacts them, and answers operator polls; and the monthly bill
at 5M customers computed from those counts.

Method:

- DynamoDB Local and SeaweedFS, bootstrapped as ``mission-control bootstrap`` does. Every
  request of the pipeline's and the dashboard's clients is counted with a botocore
  ``after-call`` hook, by service and operation; DynamoDB request units are estimated from
  each call's items (a write: one unit per KB of item, at least 1; a read: one unit per 4 KB
  returned, halved for an eventually consistent read).
- Devices: ``CUSTOMERS`` x ``DAYS`` generated uploads (``pipeline.generate``) are written to
  ``raw/`` and queued, a day at a time (devices upload a day's usage the next day). Their
  PUTs are counted apart: the devices make them whatever the pipeline does.
- Processing: ``pipeline.process.drain`` with ``BATCH`` messages a receive, as the upload
  Lambda gets them (the stack's ``UploadBatchSize``). The queue is the local one here; SQS
  requests are computed (one SendMessage per upload from the S3 notification, and the event
  source's ReceiveMessage and DeleteMessageBatch, 10 messages each).
- Rollup: ``pipeline.rollup.rollup_screen_time``, which folds the uploads and compacts the
  closed dates (the window ends two days ago, so all are closed).
- Polls: ``POLLS`` panel refreshes by an operator on the fleet views and one customer's view,
  through a ``DataService`` per worker as the dashboard runs it (memo off, to count what
  reaches the stores).

The monthly figure multiplies the per-upload counts by 5M uploads a day and the per-poll
counts by the polls a day of ``OPERATORS`` operators with 4 panels at 5 s, at the list
prices in ``PRICES``. The compaction's per-date requests are counted per upload at this
sample's size, which overstates them at 5M a date (conservative).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.report import Report
from data_access import aws as aws_backend
from data_access.queries import (
    CustomerDayQuery,
    CustomerTrendQuery,
    FleetAppsQuery,
    FleetDailyQuery,
    FleetHoursQuery,
)
from data_access.service import DataService
from pipeline.bootstrap import RAW_NONCURRENT_DAYS, RAW_SCREEN_TIME_DAYS

SECTION = "cost"
SEED = 31
CUSTOMERS = 1000
DAYS = 3
BATCH = 500
POLLS = 400
# Operators watching at once, each page 4 panels polled every 5 s, 12 hours a day.
OPERATORS = 100
POLLS_PER_DAY = OPERATORS * 4 * (12 * 3600 // 5)
UPLOADS_PER_DAY = 5_000_000
DAYS_PER_MONTH = 30
# us-east-1 list prices, USD, as published by AWS in November 2025 (S3 Standard, DynamoDB
# on-demand, SQS standard, Lambda x86). Check them before quoting the bill elsewhere.
PRICES: dict[str, float] = {
    "s3_put_list_per_1k": 0.005,
    "s3_get_per_1k": 0.0004,
    "s3_standard_gb_month": 0.023,
    "dynamodb_write_unit_per_m": 0.625,
    "dynamodb_read_unit_per_m": 0.125,
    "dynamodb_gb_month": 0.25,
    "sqs_request_per_m": 0.40,
    "lambda_gb_second": 0.0000166667,
    "lambda_request_per_m": 0.20,
}
PRICES_AS_OF = "2025-11"
LAMBDA_GB = 1.0  # the upload function's MemorySize
_S3_WRITES = {"PutObject", "CopyObject", "ListObjectsV2", "ListObjects", "DeleteObjects"}


class RequestCounter:
    """Counts every request of the clients it is attached to, by service and operation."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.read_units = 0.0
        self.write_units = 0.0

    def attach(self, client: Any) -> None:
        client.meta.events.register("provide-client-params.*.*", self._params)
        client.meta.events.register("after-call.*.*", self._seen)

    @staticmethod
    def _params(params: dict, context: dict, **_: Any) -> None:
        context["counted_params"] = dict(params)  # the API parameters, for after-call

    def reset(self) -> None:
        self.calls.clear()
        self.read_units = self.write_units = 0.0

    def _seen(self, http_response: Any, parsed: dict, model: Any, **kwargs: Any) -> None:
        service = model.service_model.service_name
        self.calls[f"{service}.{model.name}"] += 1
        if service != "dynamodb":
            return
        params = kwargs.get("context", {}).get("counted_params") or {}
        if model.name in ("PutItem", "UpdateItem", "DeleteItem"):
            self.write_units += max(1, math.ceil(_size(params.get("Item", {})) / 1024))
        elif model.name == "BatchWriteItem":
            for requests in params.get("RequestItems", {}).values():
                self.write_units += len(requests)
        elif model.name in ("GetItem", "Query", "Scan", "BatchGetItem"):
            items = parsed.get("Items") or ([parsed["Item"]] if "Item" in parsed else [])
            for found in parsed.get("Responses", {}).values():
                items = [*items, *found]
            units = max(1, math.ceil(sum(_size(i) for i in items) / 4096))
            consistent = params.get("ConsistentRead", False)
            self.read_units += units if consistent else units / 2

    def snapshot(self) -> dict[str, Any]:
        s3 = {k.split(".", 1)[1]: v for k, v in self.calls.items() if k.startswith("s3.")}
        return {
            "s3_put_list": sum(v for k, v in s3.items() if k in _S3_WRITES),
            "s3_get_head": sum(v for k, v in s3.items() if k not in _S3_WRITES),
            "s3_delete": s3.get("DeleteObject", 0),
            "dynamodb_requests": sum(v for k, v in self.calls.items() if k.startswith("dyn")),
            "dynamodb_read_units": round(self.read_units, 2),
            "dynamodb_write_units": round(self.write_units, 2),
            "calls": dict(sorted(self.calls.items())),
        }


def _size(item: dict) -> int:
    return len(json.dumps(item, default=str))


def _sum(*phases: dict[str, Any]) -> dict[str, float]:
    keys = [k for k, v in phases[0].items() if isinstance(v, int | float)]
    return {k: sum(phase[k] for phase in phases) for k in keys}


def _per(counts: dict[str, Any], n: int) -> dict[str, float]:
    return {k: round(v / n, 4) for k, v in counts.items() if isinstance(v, int | float)}


def measure(folder: Path) -> dict[str, Any]:
    """Counts per phase on the local AWS servers (see the module doc)."""
    from bench.local_aws import local_aws
    from pipeline.generate import customer_profile, screen_time_key, screen_time_upload
    from pipeline.process import drain
    from pipeline.rollup import rollup_screen_time

    with ExitStack() as cleanup:
        local = cleanup.enter_context(local_aws("mc-cost", folder))
        settings = local.settings
        s3, ddb = local.s3(), local.dynamodb()
        counter = RequestCounter()
        counter.attach(s3)
        counter.attach(ddb)
        stores = aws_backend.build_aws_stores(settings, s3=s3, dynamodb=ddb)
        cleanup.callback(stores.lake.close)  # type: ignore[attr-defined]

        end = dt.date.today() - dt.timedelta(days=2)
        keys = []
        raw_bytes = 0
        profiles = [customer_profile(SEED, number, end) for number in range(CUSTOMERS)]
        # Day by day, as devices upload each day's usage the next day: a batch is one date.
        for offset in reversed(range(DAYS)):
            day = end - dt.timedelta(days=offset)
            for profile in profiles:
                body = screen_time_upload(SEED, profile, day)
                if body is not None:
                    key = screen_time_key(profile.customer_id, day)
                    stores.lake.write_bytes(key, body)
                    keys.append(key)
                    raw_bytes += len(body)
        stores.queue.send(keys)
        devices = counter.snapshot()
        counter.reset()

        started = time.perf_counter()
        summary = drain(stores, batch=BATCH)
        processing_seconds = time.perf_counter() - started
        processing = counter.snapshot()
        counter.reset()
        if summary.processed != len(keys):
            raise RuntimeError(f"processed {summary.processed} of {len(keys)} uploads")

        started = time.perf_counter()
        rolled = rollup_screen_time(stores, settle_seconds=0)
        rollup_seconds = time.perf_counter() - started
        rollup = counter.snapshot()
        counter.reset()
        if len(rolled.compaction.dates) != DAYS:
            raise RuntimeError(f"compacted {rolled.compaction.dates}, expected {DAYS} dates")
        stored = sum(i.size for i in stores.lake.list("processed/screen_time/"))

        start = end - dt.timedelta(days=DAYS - 1)
        customer = customer_profile(SEED, 0, end).customer_id
        panels = [
            FleetDailyQuery(start, end),
            FleetAppsQuery(start, end),
            FleetHoursQuery(start, end),
            CustomerTrendQuery(start, end, customer_id=customer),
            CustomerDayQuery(customer, end),
        ]
        service = DataService(stores, settings.model_copy(update={"memo_seconds": 0}))
        for panel in panels:
            service.fetch(panel)  # warm: the cache table holds each answer
        counter.reset()
        for poll in range(POLLS):
            service.fetch(panels[poll % len(panels)])
        polls = counter.snapshot()

    uploads = len(keys)
    return {
        "uploads": uploads,
        "batch": BATCH,
        "raw_bytes_per_upload": raw_bytes / uploads,
        "processed_bytes_per_upload": stored / uploads,
        "processing_seconds_per_upload": processing_seconds / uploads,
        "rollup_seconds_per_upload": rollup_seconds / uploads,
        "devices": _per(devices, uploads),
        "processing": _per(processing, uploads),
        "rollup": _per(rollup, uploads),
        "per_upload": _per(_sum(processing, rollup), uploads),
        "per_poll": _per(polls, POLLS),
        "calls": {
            "processing": processing["calls"],
            "rollup": rollup["calls"],
            "polls": polls["calls"],
        },
    }


def monthly_bill(counts: dict[str, Any]) -> dict[str, float]:
    """USD a month at UPLOADS_PER_DAY and POLLS_PER_DAY, from the counted requests."""
    uploads = UPLOADS_PER_DAY * DAYS_PER_MONTH
    polls = POLLS_PER_DAY * DAYS_PER_MONTH
    per_upload, per_poll = counts["per_upload"], counts["per_poll"]
    p = PRICES

    def requests(per: dict[str, float], n: float) -> float:
        return (
            per.get("s3_put_list", 0) * n / 1000 * p["s3_put_list_per_1k"]
            + per.get("s3_get_head", 0) * n / 1000 * p["s3_get_per_1k"]
            + per.get("dynamodb_write_units", 0) * n / 1e6 * p["dynamodb_write_unit_per_m"]
            + per.get("dynamodb_read_units", 0) * n / 1e6 * p["dynamodb_read_unit_per_m"]
        )

    # One SendMessage per upload (the S3 notification); the event source receives and
    # deletes 10 messages a request.
    sqs = uploads * (1 + 2 / 10) / 1e6 * p["sqs_request_per_m"]
    invocations = uploads / counts["batch"]
    seconds = counts["processing_seconds_per_upload"] + counts["rollup_seconds_per_upload"]
    compute = (
        uploads * seconds * LAMBDA_GB * p["lambda_gb_second"]
        + invocations / 1e6 * p["lambda_request_per_m"]
    )
    # Held at once: raw uploads for as long as the lifecycle keeps them (their expired
    # versions a day longer), processed data for the month (it grows by this every month;
    # older months move to cheaper tiers).
    raw_days = RAW_SCREEN_TIME_DAYS + RAW_NONCURRENT_DAYS
    raw_gb = UPLOADS_PER_DAY * raw_days * counts["raw_bytes_per_upload"] / 1e9
    processed_gb = uploads * counts["processed_bytes_per_upload"] / 1e9
    storage = (raw_gb + processed_gb) * p["s3_standard_gb_month"]
    bill = {
        "processing_requests": requests(per_upload, uploads),
        "poll_requests": requests(per_poll, polls),
        "sqs": sqs,
        "compute": compute,
        "storage": storage,
    }
    bill["total"] = sum(bill.values())
    bill["devices_raw_puts"] = (
        uploads * counts["devices"]["s3_put_list"] / 1000 * p["s3_put_list_per_1k"]
    )
    return {k: round(v, 2) for k, v in bill.items()}


def cost(report: Report, folder: Path, *, full: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    counts = measure(folder)
    bill = monthly_bill(counts)
    method = (
        f"{counts['uploads']} uploads ({CUSTOMERS} customers x {DAYS} days), batches of "
        f"{BATCH}, fold + compaction, {POLLS} polls; local DynamoDB and S3 servers"
    )
    per_upload, per_poll = counts["per_upload"], counts["per_poll"]
    for name, value, target in (
        ("S3 PUT+LIST per upload", per_upload["s3_put_list"], "<= 0.05"),
        ("S3 GET per upload", per_upload["s3_get_head"], ""),
        ("DynamoDB write units per upload", per_upload["dynamodb_write_units"], "<= 0.1"),
        ("DynamoDB read units per upload", per_upload["dynamodb_read_units"], ""),
        ("S3 GET per poll", per_poll["s3_get_head"], ""),
        ("DynamoDB read units per poll", per_poll["dynamodb_read_units"], ""),
    ):
        report.add(SECTION, name, value, target=target, note=method)
    for part in ("processing_requests", "poll_requests", "sqs", "compute", "storage"):
        report.add(SECTION, f"monthly {part} at 5M", bill[part], unit="USD")
    report.add(
        SECTION,
        "monthly total at 5M (without the devices' raw PUTs)",
        bill["total"],
        unit="USD",
        target="<= 500",
        note=f"list prices {PRICES_AS_OF}, {OPERATORS} operators x 4 panels / 5 s, 12 h a day",
    )
    report.add(SECTION, "monthly devices' raw PUTs at 5M", bill["devices_raw_puts"], unit="USD")
    report.details[SECTION] = {"counts": counts, "bill": bill, "prices": PRICES}
    report.tables[SECTION] = cost_table(counts, bill)


def cost_table(counts: dict[str, Any], bill: dict[str, float]) -> str:
    rows = [("phase", "S3 PUT/LIST", "S3 GET", "DynamoDB WRU", "DynamoDB RRU")]
    for phase, n in (("devices", "upload"), ("processing", "upload"), ("rollup", "upload")):
        c = counts[phase]
        rows.append(
            (
                f"{phase} per {n}",
                f"{c.get('s3_put_list', 0):.3f}",
                f"{c.get('s3_get_head', 0):.3f}",
                f"{c.get('dynamodb_write_units', 0):.3f}",
                f"{c.get('dynamodb_read_units', 0):.3f}",
            )
        )
    c = counts["per_poll"]
    rows.append(
        (
            "per poll",
            f"{c.get('s3_put_list', 0):.3f}",
            f"{c.get('s3_get_head', 0):.3f}",
            f"{c.get('dynamodb_write_units', 0):.3f}",
            f"{c.get('dynamodb_read_units', 0):.3f}",
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    lines.append("")
    lines += [f"{k:>22}: ${v:,.2f} a month" for k, v in bill.items()]
    return "\n".join(lines)
