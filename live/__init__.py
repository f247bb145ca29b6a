"""The live-data plane the web tier serves and the workers share.

- ``live.ingest``: the HTTP ingest API (a Flask blueprint) and its OpenAPI document.
- ``live.event_schemas``: the published JSON Schemas of ingest bodies and their validator.
- ``live.apikeys``: machine API keys (created and revoked from the CLI, verified by the API).
- ``live.ratelimit``: a per-key token bucket shared by every worker and instance.
- ``live.alert_records``: alert documents as both the evaluator and the dashboard read them.

Imports run ``dashboard -> live``, ``pipeline -> live``, ``live -> data_access`` (and Flask
for the blueprint): both the web app and the CLI/scheduler need these pieces, and neither
may import the other.
"""
