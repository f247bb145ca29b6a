"""Settings for the ingest API, built once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# One event line may not exceed what the compactor accepts (pipeline/schema.py MAX_LINE_BYTES).
MAX_EVENT_BYTES = 64 * 1024


@dataclass(frozen=True)
class IngestSettings:
    """Limits of the ingest API.

    | variable | default | meaning |
    |---|---|---|
    | INGEST_MAX_BATCH_BYTES | 1048576 | body limit of ``/api/ingest/batch`` (413 above) |
    | INGEST_MAX_BATCH_EVENTS | 1000 | events per batch (400 above) |
    | INGEST_RATE_PER_SECOND | 50 | sustained requests per second per API key |
    | INGEST_RATE_BURST | 100 | requests a key may send at once after being idle |
    | INGEST_MAX_EVENT_AGE_DAYS | 30 | oldest event time accepted |
    | API_KEY_CACHE_SECONDS | 5 | how long a worker trusts a verified key (revocation delay) |
    """

    max_event_bytes: int = MAX_EVENT_BYTES
    max_batch_bytes: int = 1024 * 1024
    max_batch_events: int = 1000
    rate_per_second: float = 50.0
    rate_burst: int = 100
    max_event_age_days: int = 30
    api_key_cache_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IngestSettings:
        env = os.environ if env is None else env
        settings = cls(
            max_batch_bytes=int(env.get("INGEST_MAX_BATCH_BYTES", cls.max_batch_bytes)),
            max_batch_events=int(env.get("INGEST_MAX_BATCH_EVENTS", cls.max_batch_events)),
            rate_per_second=float(env.get("INGEST_RATE_PER_SECOND", cls.rate_per_second)),
            rate_burst=int(env.get("INGEST_RATE_BURST", cls.rate_burst)),
            max_event_age_days=int(env.get("INGEST_MAX_EVENT_AGE_DAYS", cls.max_event_age_days)),
            api_key_cache_seconds=float(
                env.get("API_KEY_CACHE_SECONDS", cls.api_key_cache_seconds)
            ),
        )
        if settings.rate_per_second <= 0 or settings.rate_burst < 1:
            raise ValueError("INGEST_RATE_PER_SECOND must be > 0 and INGEST_RATE_BURST >= 1")
        return settings
