"""Settings for the ingest API, built once from the environment."""

from __future__ import annotations

from configuration.base import EnvSettings, setting

# One event line may not exceed what the compactor accepts (pipeline/schema.py MAX_LINE_BYTES).
MAX_EVENT_BYTES = 64 * 1024


class IngestSettings(EnvSettings):
    """Limits of the ingest API."""

    # Not a setting: the compactor's limit.
    max_event_bytes: int = MAX_EVENT_BYTES
    max_batch_bytes: int = setting(
        1024 * 1024,
        "INGEST_MAX_BATCH_BYTES",
        description="body limit of `/api/ingest/batch` (413 above)",
        ge=1,
    )
    max_batch_events: int = setting(
        1000, "INGEST_MAX_BATCH_EVENTS", description="events per batch (400 above)", ge=1
    )
    rate_per_second: float = setting(
        50.0,
        "INGEST_RATE_PER_SECOND",
        description="sustained requests per second per API key (429 with `Retry-After` above)",
        gt=0,
    )
    rate_burst: int = setting(
        100,
        "INGEST_RATE_BURST",
        description="requests a key may send at once after being idle",
        ge=1,
    )
    max_event_age_days: int = setting(
        30, "INGEST_MAX_EVENT_AGE_DAYS", description="oldest event time accepted", ge=1
    )
    api_key_cache_seconds: float = setting(
        5.0,
        "API_KEY_CACHE_SECONDS",
        description="how long a worker trusts a verified key (the revocation delay)",
        ge=0,
    )
