"""The per-key token bucket: burst then rate, Retry-After, and one bucket across processes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from data_access.local import SqliteRecordStore
from data_access.ratelimit import KIND, RateLimiter
from tests.live.conftest import FakeClock


def test_burst_then_steady_rate(local_stores):
    clock = FakeClock(1_800_000_000.0)
    limiter = RateLimiter(local_stores.records, clock=clock)
    first = [limiter.check("k", 2.0, 5) for _ in range(6)]
    assert [d.allowed for d in first] == [True] * 5 + [False]
    assert [d.remaining for d in first[:5]] == [4, 3, 2, 1, 0]
    assert first[5].retry_after_seconds == 1

    clock.advance(0.5)  # one token every half second
    assert limiter.check("k", 2.0, 5).allowed
    assert not limiter.check("k", 2.0, 5).allowed

    allowed = 0
    for _ in range(80):  # 10 s of 8 attempts per second (binary-exact steps)
        clock.advance(0.125)
        allowed += limiter.check("k", 2.0, 5).allowed
    assert allowed == 20


def test_retry_after_says_when_a_token_returns(local_stores):
    clock = FakeClock(1_800_000_000.0)
    limiter = RateLimiter(local_stores.records, clock=clock)
    assert limiter.check("slow", 0.1, 1).allowed  # one request per 10 s
    refused = limiter.check("slow", 0.1, 1)
    assert not refused.allowed and refused.retry_after_seconds == 10
    clock.advance(refused.retry_after_seconds)
    assert limiter.check("slow", 0.1, 1).allowed


def test_buckets_are_per_key_and_old_slots_are_swept(local_stores, monkeypatch):
    clock = FakeClock(1_800_000_000.0)
    limiter = RateLimiter(local_stores.records, clock=clock)
    assert limiter.check("a", 1.0, 1).allowed
    assert limiter.check("b", 1.0, 1).allowed
    monkeypatch.setattr("data_access.ratelimit.SWEEP_SHARE", 1.0)
    for _ in range(50):
        clock.advance(1.0)
        assert limiter.check("a", 1.0, 1).allowed
    slots = local_stores.records.scan(f"{KIND}:a")
    assert len(slots) <= 3  # swept as it goes: no record per request kept forever


def _hammer(db: str, attempts: int, start: multiprocessing.Event, out) -> None:
    limiter = RateLimiter(SqliteRecordStore(Path(db)))
    start.wait(10)
    # rate ~0: no token comes back during the test, so exactly the burst is allowed overall
    out.put(sum(limiter.check("shared", 1e-6, 30).allowed for _ in range(attempts)))


def test_one_bucket_across_processes(tmp_path):
    db = str(tmp_path / "records.sqlite")
    SqliteRecordStore(Path(db))  # create the schema once
    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    workers = [context.Process(target=_hammer, args=(db, 25, start, out)) for _ in range(3)]
    for worker in workers:
        worker.start()
    start.set()
    allowed = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert sum(allowed) == 30
    assert all(worker.exitcode == 0 for worker in workers)
