"""Duplicate detection of ingested events: which records mark an event as stored, and their
daily pruning.

The ingest API writes one record per stored event (kinds ``idempotency:{date}:{shard}``);
the scheduler prunes the dates the age limit already refuses.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from data_access.stores import RecordStore, StateStore

IDEMPOTENCY_KIND = "idempotency"
IDEMPOTENCY_SHARDS = 16
PRUNED_THROUGH = "ingest:idempotency:pruned_through"


def idempotency_kind(day: dt.date, event_type: str, event_id: str) -> str:
    """One kind per event date and shard: DynamoDB keeps a kind in one partition, and a
    partition takes about 1,000 writes per second; sharding spreads a busy day over 16."""
    shard = hashlib.blake2s(f"{event_type}/{event_id}".encode(), digest_size=1).digest()[0]
    return f"{IDEMPOTENCY_KIND}:{day.isoformat()}:{shard % IDEMPOTENCY_SHARDS:x}"


def prune_idempotency(
    records: RecordStore, state: StateStore, before: dt.date, *, first: dt.date | None = None
) -> int:
    """Delete the duplicate-detection records of event dates before ``before``; returns how
    many. Events that old are refused by the age limit, so their ids cannot come back.

    Dates are pruned in order from the day after the last pruned one (or ``first``, by
    default 60 days before ``before``), and the progress is kept in the state store.
    """
    done = state.get(PRUNED_THROUGH)
    day = dt.date.fromisoformat(done) + dt.timedelta(days=1) if done else None
    day = day or first or before - dt.timedelta(days=60)
    deleted = 0
    while day < before:
        for shard in range(IDEMPOTENCY_SHARDS):
            kind = f"{IDEMPOTENCY_KIND}:{day.isoformat()}:{shard:x}"
            while batch := records.scan(kind, limit=500):
                for key, _ in batch:
                    records.delete(kind, key)
                deleted += len(batch)
        state.put(PRUNED_THROUGH, day.isoformat())
        day += dt.timedelta(days=1)
    return deleted
