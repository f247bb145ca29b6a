"""The ingest web package: the HTTP ingest and upload APIs the web tier serves.

- ``live.ingest``: the HTTP ingest API (a Flask blueprint) and its OpenAPI document.
- ``live.uploads``: presigned device uploads.
- ``live.event_schemas``: the published JSON Schemas of ingest bodies and their validator.
- ``live.settings``: the ingest settings read from the environment.

Records the workers share with the web tier (API keys, rate-limit buckets, alerts, active
sessions, duplicate detection) live in ``data_access``. Imports run ``dashboard -> live ->
data_access``; ``pipeline`` never imports ``live``.
"""
