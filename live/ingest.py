"""The ingest API: ``POST /api/ingest/{purchase,pageview,event,batch}`` and ``/api/openapi.json``.

Order of checks, cheapest refusal first: API key (401/403) -> per-key rate (429 with
Retry-After) -> content type (415) -> size (413) -> JSON and schema (400 listing every bad
field) -> duplicates -> durable write -> 202.

Durability: each accepted request becomes one raw object per (event type, UTC hour) it
touches, ``raw/events/{type}/{yyyy}/{mm}/{dd}/{hh}/{uuid}.jsonl``, written through
``Lake.write_bytes`` (the local lake fsyncs and renames; S3 acknowledges a PUT only once it
is stored). The 202 is sent only after every object is written, so a process killed at any
instant has either stored the events or not answered 202.

Duplicates: an event is identified by (UTC date of ``ts``, type, ``event_id``). Before the
write, ids already seen are answered as duplicates and not written again; after the write
they are recorded (records kinds ``idempotency:{date}:{shard}``, pruned daily). Two
identical requests racing each other may both be written: the compactor keeps the first of
each ``event_id``, so a repeat is still counted once. An ``Idempotency-Key`` header supplies
ids for events that carry none.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request

from data_access import layout
from data_access.apikeys import ApiKey, ApiKeyVerifier, InvalidKey, ScopeRefused
from data_access.factory import build_stores
from data_access.idempotency import idempotency_kind
from data_access.ratelimit import RateLimiter
from data_access.settings import DataSettings
from data_access.stores import Stores, StoreUnavailable
from live.event_schemas import (
    BATCH_LINE_SCHEMA,
    EVENT_TYPES,
    SCHEMAS,
    BodyNotJson,
    FieldError,
    parse_json,
    validate,
)
from live.settings import IngestSettings

log = logging.getLogger(__name__)

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/ndjson")
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
# Route name -> event type; "batch" lines name their own type.
ROUTES = {"purchase": "purchase", "pageview": "pageview", "event": "custom"}
FUTURE_SLACK = dt.timedelta(days=1)


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def _problem(status: int, title: str, errors: list[FieldError] | None = None, **extra) -> Answer:
    body: dict[str, Any] = {"status": status, "title": title, **extra}
    if errors is not None:
        body["errors"] = [error.as_dict() for error in errors]
    return Answer(status, body)


@dataclass(frozen=True)
class _Event:
    event_type: str
    event_id: str
    ts: dt.datetime
    line: bytes

    @property
    def dedupe_record(self) -> tuple[str, str]:
        """(kind, key) of the record that marks this event as stored."""
        return idempotency_kind(self.ts.date(), self.event_type, self.event_id), (
            f"{self.event_type}/{self.event_id}"
        )


def raw_event_key(event_type: str, hour: dt.datetime, batch_id: str) -> str:
    return f"{layout.RAW_EVENTS}{event_type}/{hour:%Y/%m/%d/%H}/{batch_id}.jsonl"


def _parse_ts(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text[:-1]).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


class IngestApi:
    """The ingest logic without Flask: headers and body in, an ``Answer`` out."""

    def __init__(
        self,
        stores: Stores,
        settings: IngestSettings,
        *,
        clock: Callable[[], float] = time.time,
        new_batch_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self.stores = stores
        self.settings = settings
        self._clock = clock
        self._new_batch_id = new_batch_id
        self.verifier = ApiKeyVerifier(
            stores.records, stores.state, cache_seconds=settings.api_key_cache_seconds, clock=clock
        )
        self.limiter = RateLimiter(stores.records, clock=clock)

    # -- steps -------------------------------------------------------------------------------

    def authenticate(self, headers: dict[str, str]) -> ApiKey | Answer:
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else headers.get("x-api-key")
        try:
            return self.verifier.verify(token, "ingest")
        except InvalidKey as exc:
            answer = _problem(401, str(exc))
            answer.headers["WWW-Authenticate"] = 'Bearer realm="ingest"'
            return answer
        except ScopeRefused as exc:
            return _problem(403, str(exc))

    def rate_limit(self, key: ApiKey) -> Answer | None:
        rate = key.rate_per_second or self.settings.rate_per_second
        burst = key.rate_burst or self.settings.rate_burst
        decision = self.limiter.check(key.key_id, rate, burst)
        if decision.allowed:
            return None
        answer = _problem(
            429, f"rate limit of {rate:g}/s (burst {burst}) exceeded for this API key"
        )
        answer.headers["Retry-After"] = str(decision.retry_after_seconds)
        return answer

    def handle(
        self, route: str, headers: dict[str, str], read_body: Callable[[int], bytes]
    ) -> Answer:
        """``route`` is purchase, pageview, event or batch; ``read_body(n)`` reads up to n bytes."""
        try:
            return self._handle(route, headers, read_body)
        except StoreUnavailable as exc:
            log.error("ingest store unavailable, nothing acknowledged: %s", exc)
            answer = _problem(503, "storage unavailable, retry the same request")
            answer.headers["Retry-After"] = "1"
            return answer

    def _handle(
        self, route: str, headers: dict[str, str], read_body: Callable[[int], bytes]
    ) -> Answer:
        key = self.authenticate(headers)
        if isinstance(key, Answer):
            return key
        limited = self.rate_limit(key)
        if limited is not None:
            return limited

        batch = route == "batch"
        refused = _content_type_problem(headers, NDJSON_TYPES if batch else JSON_TYPES)
        if refused is not None:
            return refused
        limit = self.settings.max_batch_bytes if batch else self.settings.max_event_bytes
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return _problem(413, f"body larger than {limit} bytes", limit=limit)
        body = read_body(limit + 1)
        if len(body) > limit:
            return _problem(413, f"body larger than {limit} bytes", limit=limit)

        idempotency_key = headers.get("idempotency-key")
        if idempotency_key is not None and not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            error = FieldError("Idempotency-Key", "pattern", "1-255 visible ASCII characters")
            return _problem(400, "invalid Idempotency-Key header", [error])
        id_seed = (
            hashlib.sha256(f"{key.key_id}\x1f{idempotency_key}".encode()).hexdigest()[:32]
            if idempotency_key
            else None
        )

        if batch:
            events, errors = self._parse_batch(body, id_seed)
        else:
            events, errors = self._parse_single(body, ROUTES[route], id_seed)
        if errors:
            return _problem(400, "invalid event", errors)
        return self._store(events)

    # -- parsing -----------------------------------------------------------------------------

    def _parse_single(
        self, body: bytes, event_type: str, id_seed: str | None
    ) -> tuple[list[_Event], list[FieldError]]:
        try:
            value = parse_json(body)
        except BodyNotJson as exc:
            return [], [FieldError("", "not_json", str(exc))]
        event, errors = self._check_event(value, event_type, "", id_seed)
        return ([event] if event else []), errors

    def _parse_batch(
        self, body: bytes, id_seed: str | None
    ) -> tuple[list[_Event], list[FieldError]]:
        lines = [(n, line) for n, line in enumerate(body.split(b"\n")) if line.strip()]
        if not lines:
            return [], [FieldError("", "empty", "a batch needs at least one event line")]
        if len(lines) > self.settings.max_batch_events:
            limit = self.settings.max_batch_events
            return [], [FieldError("", "too_many", f"{len(lines)} events > {limit}")]
        events: list[_Event] = []
        errors: list[FieldError] = []
        for n, line in lines:
            path = f"lines[{n}]"
            try:
                value = parse_json(line)
            except BodyNotJson as exc:
                errors.append(FieldError(path, "not_json", str(exc)))
                continue
            event_type = value.get("event_type") if isinstance(value, dict) else None
            if event_type not in EVENT_TYPES:
                if not isinstance(value, dict):
                    errors.append(FieldError(path, "type", "must be object"))
                else:
                    message = f"must be one of {list(EVENT_TYPES)}"
                    errors.append(FieldError(f"{path}.event_type", "enum", message))
                continue
            seed = f"{id_seed}-{n}" if id_seed else None
            event, line_errors = self._check_event(value, event_type, path, seed)
            errors.extend(line_errors)
            if event:
                events.append(event)
        return events, errors

    def _check_event(
        self, value: Any, event_type: str, path: str, id_seed: str | None
    ) -> tuple[_Event | None, list[FieldError]]:
        def at(name: str) -> str:
            return f"{path}.{name}" if path else name

        errors = validate(value, SCHEMAS[event_type], path)
        if not isinstance(value, dict):
            return None, errors
        if "event_id" not in value and id_seed is None:
            message = "required unless an Idempotency-Key header is sent"
            errors.append(FieldError(at("event_id"), "required", message))
        ts = None
        if isinstance(value.get("ts"), str) and not any(e.path == at("ts") for e in errors):
            ts = _parse_ts(value["ts"])
            now = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
            oldest = now - dt.timedelta(days=self.settings.max_event_age_days)
            if ts is None:
                errors.append(FieldError(at("ts"), "invalid_date", "not a real date and time"))
            elif ts > now + FUTURE_SLACK:
                errors.append(FieldError(at("ts"), "in_future", "more than a day ahead"))
            elif ts < oldest:
                days = self.settings.max_event_age_days
                errors.append(FieldError(at("ts"), "too_old", f"older than {days} days"))
        if errors or ts is None:
            return None, errors

        event = dict(value)
        event["event_type"] = event_type
        event.setdefault("event_id", id_seed)
        if event_type == "pageview":
            event.setdefault("referrer", None)
        if event_type == "custom":
            event.setdefault("properties", {})
        if event_type == "purchase":
            event["quantity"] = int(event["quantity"])  # 2.0 is a JSON Schema integer
        ordered = {"event_id": event.pop("event_id"), "event_type": event.pop("event_type")}
        ordered.update(event)
        line = json.dumps(ordered, ensure_ascii=False, separators=(",", ":")).encode()
        if len(line) > self.settings.max_event_bytes:
            limit = self.settings.max_event_bytes
            return None, [FieldError(path, "too_large", f"stored event exceeds {limit} bytes")]
        return _Event(event_type, ordered["event_id"], ts, line), []

    # -- storing -----------------------------------------------------------------------------

    def _store(self, events: list[_Event]) -> Answer:
        records = self.stores.records
        fresh: list[_Event] = []
        duplicates: list[str] = []
        seen: set[tuple[str, str]] = set()
        for event in events:
            kind, key = event.dedupe_record
            if (kind, key) in seen or records.get(kind, key) is not None:
                duplicates.append(event.event_id)
            else:
                seen.add((kind, key))
                fresh.append(event)

        groups: dict[tuple[str, dt.datetime], list[bytes]] = {}
        for event in fresh:
            hour = event.ts.replace(minute=0, second=0, microsecond=0)
            groups.setdefault((event.event_type, hour), []).append(event.line)
        for (event_type, hour), lines in sorted(groups.items()):
            object_key = raw_event_key(event_type, hour, self._new_batch_id())
            self.stores.lake.write_bytes(object_key, b"\n".join(lines) + b"\n")

        now = self._clock()
        for event in fresh:
            try:
                records.put_new(*event.dedupe_record, {"at": now})
            except StoreUnavailable as exc:  # the events are durable; compaction dedups
                log.warning("could not record event id %s: %s", event.event_id, exc)
                break

        body = {
            "accepted": len(fresh),
            "duplicates": len(duplicates),
            "event_ids": [event.event_id for event in fresh],
            "duplicate_ids": duplicates,
        }
        return Answer(202 if fresh else 200, body)


def _content_type_problem(headers: dict[str, str], allowed: tuple[str, ...]) -> Answer | None:
    value = headers.get("content-type", "")
    mimetype, _, params = value.partition(";")
    charset = re.search(r"charset\s*=\s*\"?([A-Za-z0-9_-]+)", params)
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if (
        mimetype.strip().lower() not in allowed
        or (charset and charset.group(1).lower() not in ("utf-8", "utf8"))
        or encoding not in ("", "identity")
    ):
        shown = value[:100] or "none"
        return _problem(415, f"content type must be {' or '.join(allowed)} (got {shown})")
    return None


# ---- OpenAPI -----------------------------------------------------------------------------


def _error_response(description: str, retry_after: bool = False) -> dict:
    response: dict[str, Any] = {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["status", "title"],
                    "properties": {
                        "status": {"type": "integer"},
                        "title": {"type": "string"},
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["path", "code", "message"],
                                "properties": {
                                    "path": {"type": "string"},
                                    "code": {"type": "string"},
                                    "message": {"type": "string"},
                                },
                            },
                        },
                    },
                }
            }
        },
    }
    if retry_after:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before retrying",
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return response


_ACCEPTED_SCHEMA = {
    "type": "object",
    "required": ["accepted", "duplicates", "event_ids", "duplicate_ids"],
    "properties": {
        "accepted": {"type": "integer", "minimum": 0},
        "duplicates": {"type": "integer", "minimum": 0},
        "event_ids": {"type": "array", "items": {"type": "string"}},
        "duplicate_ids": {"type": "array", "items": {"type": "string"}},
    },
}


def openapi_document(settings: IngestSettings) -> dict:
    """The OpenAPI 3.1 description of the ingest API, schemas included."""
    responses = {
        "202": {
            "description": "Stored durably: at least one event was new",
            "content": {"application/json": {"schema": _ACCEPTED_SCHEMA}},
        },
        "200": {
            "description": "Every event was a repeat of one already accepted; nothing stored",
            "content": {"application/json": {"schema": _ACCEPTED_SCHEMA}},
        },
        "400": _error_response("Invalid body: every bad field is listed"),
        "401": _error_response("Missing, unknown or revoked API key"),
        "403": _error_response("The API key lacks the ingest scope"),
        "413": _error_response("Body above the size limit"),
        "415": _error_response("Wrong content type or encoding"),
        "429": _error_response("Rate limit exceeded for this API key", retry_after=True),
        "503": _error_response("Storage unavailable; nothing stored", retry_after=True),
    }
    idempotency = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Supplies event ids for events without one: retries with the same key"
        " are accepted once.",
        "schema": {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$"},
    }

    def operation(summary: str, media: str, schema: dict, limit: int) -> dict:
        return {
            "summary": summary,
            "parameters": [idempotency],
            "requestBody": {
                "required": True,
                "description": f"At most {limit} bytes.",
                "content": {media: {"schema": schema}},
            },
            "responses": responses,
        }

    single = settings.max_event_bytes
    paths = {
        "/api/ingest/purchase": {
            "post": operation("Record a purchase", "application/json", SCHEMAS["purchase"], single)
        },
        "/api/ingest/pageview": {
            "post": operation("Record a page view", "application/json", SCHEMAS["pageview"], single)
        },
        "/api/ingest/event": {
            "post": operation(
                "Record a custom event", "application/json", SCHEMAS["custom"], single
            )
        },
        "/api/ingest/batch": {
            "post": operation(
                "Record many events, one JSON object per line (NDJSON)",
                "application/x-ndjson",
                {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": settings.max_batch_events,
                    "items": BATCH_LINE_SCHEMA,
                    "description": "Sent as newline-delimited JSON: one array item per line.",
                },
                settings.max_batch_bytes,
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Mission Control ingest API",
            "version": "1",
            "description": "Business events in. A 202 means the events are durably stored.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
        },
        "security": [{"bearer": []}, {"apiKeyHeader": []}],
    }


# ---- Flask -------------------------------------------------------------------------------


def create_ingest_blueprint(api: IngestApi) -> Blueprint:
    blueprint = Blueprint("ingest", __name__)
    document = openapi_document(api.settings)

    def reply(answer: Answer) -> Response:
        response = jsonify(answer.body)
        response.status_code = answer.status
        response.headers.update(answer.headers)
        return response

    @blueprint.post("/api/ingest/<route>")
    def ingest(route: str) -> Response:
        if route not in ROUTES and route != "batch":
            return reply(_problem(404, f"no ingest endpoint {route[:50]!r}"))
        headers = {name.lower(): value for name, value in request.headers.items()}
        return reply(api.handle(route, headers, request.stream.read))

    @blueprint.get("/api/openapi.json")
    def openapi() -> Response:
        return jsonify(document)

    return blueprint


def register_ingest(
    server: Flask,
    stores: Stores,
    settings: IngestSettings,
    *,
    clock: Callable[[], float] = time.time,
) -> IngestApi:
    """Mount the ingest API on ``server``; returns the API object."""
    api = IngestApi(stores, settings, clock=clock)
    server.register_blueprint(create_ingest_blueprint(api))
    server.extensions["ingest_api"] = api
    return api


def create_ingest_app(env: dict[str, str] | None = None) -> Flask:
    """The ingest API alone, e.g. ``gunicorn 'live.ingest:create_ingest_app()'``."""
    env = dict(os.environ) if env is None else env
    server = Flask(__name__)
    register_ingest(server, build_stores(DataSettings.from_env(env)), IngestSettings.from_env(env))

    @server.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    return server
