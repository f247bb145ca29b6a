"""``mission-control simulate``: realistic shop traffic sent through the real ingest API.

Visitors browse (page views), search and add to cart (custom events) and sometimes buy
(purchases), timestamped now. Events go over HTTP to ``/api/ingest/*`` with an API key, at
a set rate, until a count or a duration is reached. Only loopback targets are allowed unless
``allow_remote`` is set, so a demo can never flood a real service by accident.

Retries reuse the event's id, so a retry after a lost answer is accepted once.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

from configuration.base import EnvSettings, setting
from pipeline.catalog import PRODUCTS

log = logging.getLogger(__name__)

ENDPOINTS = {"purchase": "purchase", "pageview": "pageview", "custom": "event"}
PAGES = ("/", "/search", "/cart", "/blog", "/account")
REFERRERS = (None, "https://www.google.com/", "https://t.co/", "newsletter")
MAX_ATTEMPTS = 5


class SimulatorSettings(EnvSettings):
    """What ``mission-control simulate`` reads from the environment (its options override)."""

    api_key: str | None = setting(
        None,
        "MC_API_KEY",
        description="the ingest API key `mission-control simulate` posts with (`--api-key` "
        "overrides it)",
        repr=False,
    )


@dataclass(frozen=True)
class SimulateOptions:
    base_url: str
    api_key: str
    rate: float = 5.0  # events per second
    count: int | None = None
    duration_seconds: float | None = None
    batch_size: int = 1  # > 1 sends NDJSON batches to /api/ingest/batch
    purchase_share: float = 0.04  # share of visits that end in a purchase
    users: int = 2000
    seed: int | None = None
    allow_remote: bool = False
    timeout_seconds: float = 5.0
    wait_seconds: float = 30.0  # for the service to come up (e.g. started alongside)

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError("rate must be > 0 events per second")
        if self.count is None and self.duration_seconds is None:
            raise ValueError("bound the run with a count or a duration")
        if self.batch_size < 1:
            raise ValueError("batch size must be >= 1")
        check_target(self.base_url, self.allow_remote)


@dataclass
class SimulateSummary:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0  # refused for good (4xx other than 429)
    failed: int = 0  # gave up after retries
    retries: int = 0
    statuses: Counter = field(default_factory=Counter)
    by_type: Counter = field(default_factory=Counter)
    elapsed_seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.accepted / self.elapsed_seconds if self.elapsed_seconds else 0.0


def check_target(base_url: str, allow_remote: bool) -> None:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {base_url!r}")
    if allow_remote:
        return
    host = parts.hostname
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(f"{host} is not a loopback address; pass --allow-remote to send there")


def _ts(now: float) -> str:
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def visits(
    rng: random.Random, options: SimulateOptions, clock: Callable[[], float]
) -> Iterator[dict]:
    """An endless stream of events, visit by visit."""
    weights = [product.popularity for product in PRODUCTS]
    while True:
        user = f"u{rng.randrange(options.users):07d}"
        session = uuid.UUID(int=rng.getrandbits(128)).hex[:16]
        product = rng.choices(PRODUCTS, weights)[0]

        def event(event_type: str, user: str = user, session: str = session, **fields) -> dict:
            return {
                "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "event_type": event_type,
                "ts": _ts(clock()),
                "user_id": user,
                "session_id": session,
                **fields,
            }

        referrer = rng.choice(REFERRERS)
        for page in rng.sample(PAGES, rng.randint(1, 3)):
            yield event("pageview", page=page, referrer=referrer)
            referrer = "https://shop.example.com/"
        yield event("pageview", page=f"/products/{product.product_id}", referrer=referrer)
        if rng.random() < 0.3:
            yield event("custom", name="search", properties={"query": product.category.lower()})
        if rng.random() < options.purchase_share * 3:
            yield event("custom", name="add_to_cart", properties={"product_id": product.product_id})
        if rng.random() < options.purchase_share:
            quantity = rng.choices((1, 2, 3), (80, 15, 5))[0]
            unit_price = product.unit_price_cents / 100
            yield event(
                "purchase",
                order_id=f"o-{uuid.UUID(int=rng.getrandbits(128)).hex[:20]}",
                product_id=product.product_id,
                product_name=product.name,
                category=product.category,
                quantity=quantity,
                unit_price=unit_price,
                amount=round(quantity * unit_price, 2),
                currency="USD",
            )


class _Sender:
    def __init__(self, options: SimulateOptions, summary: SimulateSummary, stop: threading.Event):
        self.options, self.summary, self.stop = options, summary, stop
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {options.api_key}"
        self.base = options.base_url.rstrip("/")

    def send(self, events: list[dict]) -> None:
        if len(events) == 1 and self.options.batch_size == 1:
            url = f"{self.base}/api/ingest/{ENDPOINTS[events[0]['event_type']]}"
            body = json.dumps(events[0]).encode()
            content_type = "application/json"
        else:
            url = f"{self.base}/api/ingest/batch"
            body = b"".join(json.dumps(e).encode() + b"\n" for e in events)
            content_type = "application/x-ndjson"
        self.summary.sent += len(events)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = self.session.post(
                    url,
                    data=body,
                    headers={"Content-Type": content_type},
                    timeout=self.options.timeout_seconds,
                )
            except requests.RequestException as exc:
                status, wait = "connection error", min(2.0 ** (attempt - 1), 10.0)
                log.debug("send failed: %s", exc)
            else:
                status = response.status_code
                if status in (200, 202):
                    self._accepted(response.json(), status)
                    return
                if status == 429:
                    wait = float(response.headers.get("Retry-After", "1"))
                elif status < 500:
                    self.summary.statuses[status] += 1
                    self.summary.rejected += len(events)
                    log.warning("rejected %s: %s", status, response.text[:300])
                    return
                else:
                    wait = min(2.0 ** (attempt - 1), 10.0)
            self.summary.statuses[status] += 1
            if attempt == MAX_ATTEMPTS or self.stop.wait(wait):
                break
            self.summary.retries += 1
        self.summary.failed += len(events)

    def _accepted(self, body: dict, status: int) -> None:
        self.summary.statuses[status] += 1
        self.summary.accepted += body["accepted"]
        self.summary.duplicates += body["duplicates"]  # stored by an earlier, unanswered try


def wait_for_service(
    session: requests.Session, base: str, seconds: float, stop: threading.Event
) -> bool:
    """Wait until ``/healthz`` answers, at most ``seconds``; True when it did."""
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        try:
            if session.get(f"{base}/healthz", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        if time.monotonic() >= deadline or stop.wait(0.5):
            break
    log.warning("%s/healthz did not answer; sending anyway", base)
    return False


def simulate(
    options: SimulateOptions,
    *,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
    progress: Callable[[SimulateSummary], None] | None = None,
) -> SimulateSummary:
    """Send events until the count or duration is reached, or ``stop`` is set."""
    stop = stop or threading.Event()
    rng = random.Random(options.seed)
    summary = SimulateSummary()
    sender = _Sender(options, summary, stop)
    wait_for_service(sender.session, sender.base, options.wait_seconds, stop)
    stream = visits(rng, options, clock)
    started = time.monotonic()
    deadline = started + options.duration_seconds if options.duration_seconds else None
    due = started
    last_report = started
    while not stop.is_set():
        remaining = None if options.count is None else options.count - summary.sent
        if remaining is not None and remaining <= 0:
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        size = options.batch_size if remaining is None else min(options.batch_size, remaining)
        events = [next(stream) for _ in range(size)]
        for event in events:
            summary.by_type[event["event_type"]] += 1
        sender.send(events)
        due += size / options.rate
        if stop.wait(max(0.0, due - time.monotonic())):
            break
        if progress is not None and time.monotonic() - last_report >= 5:
            last_report = time.monotonic()
            progress(summary)
    summary.elapsed_seconds = time.monotonic() - started
    return summary
