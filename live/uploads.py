"""Device uploads: ``POST /api/uploads`` says where to PUT one customer-day.

On S3 the answer is a presigned PUT URL for ``raw/screen_time/{customerId}/{date}.json``, so
the bytes never pass through this service; S3's ObjectCreated event then runs the same
processing as ``mission-control process``. The embedded lake cannot presign, so there the
URL is ``PUT /api/uploads/{customerId}/{date}.json`` on this service, which writes the raw
object durably before answering. Both need an API key with the ``upload`` scope.

Uploads are not validated here: whatever arrives is processed or quarantined with a reason
by the pipeline, so a device's bad upload is kept and explained rather than refused.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable

from flask import Blueprint, Flask, Response, jsonify, request

from data_access import layout
from data_access.apikeys import ApiKeyVerifier, InvalidKey, ScopeRefused
from data_access.ratelimit import RateLimiter
from data_access.stores import Stores, StoreUnavailable
from live.settings import IngestSettings

PRESIGN_SECONDS = 900
# Twice the processor's limit: an oversize upload is still stored, then quarantined with a
# reason; anything bigger than this is refused outright.
MAX_PUT_BYTES = 4 * 1024 * 1024
# How far past today (UTC) a device's date may be: time zones run up to 14 h ahead.
FUTURE_DAYS = 1


def _error(status: int, message: str, **headers: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    response.headers.update(headers)
    return response


class UploadApi:
    def __init__(
        self, stores: Stores, settings: IngestSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.stores = stores
        self.settings = settings
        self._clock = clock
        self.verifier = ApiKeyVerifier(
            stores.records, stores.state, cache_seconds=settings.api_key_cache_seconds, clock=clock
        )
        self.limiter = RateLimiter(stores.records, clock=clock)

    def authorise(self) -> Response | None:
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        token = token or request.headers.get("X-Api-Key")
        try:
            key = self.verifier.verify(token, "upload")
        except InvalidKey as exc:
            return _error(401, str(exc), **{"WWW-Authenticate": 'Bearer realm="upload"'})
        except ScopeRefused as exc:
            return _error(403, str(exc))
        rate = key.rate_per_second or self.settings.rate_per_second
        burst = key.rate_burst or self.settings.rate_burst
        decision = self.limiter.check(f"upload-{key.key_id}", rate, burst)
        if not decision.allowed:
            return _error(
                429, "upload rate exceeded", **{"Retry-After": str(decision.retry_after_seconds)}
            )
        return None

    def raw_key(self, customer_id: object, date: object) -> str | Response:
        if not layout.is_safe_customer_id(customer_id):
            return _error(400, "customer_id must match [A-Za-z0-9][A-Za-z0-9_-]{0,63}")
        try:
            day = dt.date.fromisoformat(date) if isinstance(date, str) and len(date) == 10 else None
        except ValueError:
            day = None
        if day is None:
            return _error(400, "date must be YYYY-MM-DD")
        today = dt.datetime.fromtimestamp(self._clock(), dt.UTC).date()
        if day > today + dt.timedelta(days=FUTURE_DAYS):
            return _error(400, f"date {day} is in the future")
        return layout.raw_upload_key(customer_id, day.isoformat())  # type: ignore[arg-type]

    def target(self, key: str) -> dict:
        presign = getattr(self.stores.lake, "presign_put", None)
        if presign is not None:
            url = presign(key, PRESIGN_SECONDS, content_type="application/json")
        else:
            url = (
                request.host_url.rstrip("/")
                + "/api/uploads/"
                + key.removeprefix(layout.RAW_SCREEN_TIME)
            )
        return {
            "method": "PUT",
            "url": url,
            "key": key,
            "headers": {"Content-Type": "application/json"},
            "expires_in": PRESIGN_SECONDS,
        }


def create_upload_blueprint(api: UploadApi) -> Blueprint:
    uploads = Blueprint("uploads", __name__)

    @uploads.post("/api/uploads")
    def start_upload() -> Response:
        refused = api.authorise()
        if refused is not None:
            return refused
        try:
            body = json.loads(request.get_data(cache=False)[:4096] or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error(400, 'send {"customer_id": ..., "date": "YYYY-MM-DD"} as JSON')
        key = api.raw_key(body.get("customer_id"), body.get("date"))
        if isinstance(key, Response):
            return key
        try:
            target = api.target(key)
        except StoreUnavailable:
            return _error(503, "the lake is unreachable; try again", **{"Retry-After": "5"})
        response = jsonify(target)
        response.status_code = 201
        return response

    @uploads.put("/api/uploads/<customer_id>/<date>.json")
    def put_upload(customer_id: str, date: str) -> Response:
        if hasattr(api.stores.lake, "presign_put"):
            return _error(404, "uploads go straight to S3: POST /api/uploads for the URL")
        refused = api.authorise()
        if refused is not None:
            return refused
        key = api.raw_key(customer_id, date)
        if isinstance(key, Response):
            return key
        if (request.content_length or 0) > MAX_PUT_BYTES:
            return _error(413, f"uploads are limited to {MAX_PUT_BYTES} bytes")
        data = request.stream.read(MAX_PUT_BYTES + 1)
        if len(data) > MAX_PUT_BYTES:
            return _error(413, f"uploads are limited to {MAX_PUT_BYTES} bytes")
        try:
            api.stores.lake.write_bytes(key, data)
            # Queued as S3 would notify: a device whose PUT fails here sends it again.
            api.stores.queue.send([key])
        except StoreUnavailable:
            return _error(503, "the lake is unreachable; try again", **{"Retry-After": "5"})
        response = jsonify(key=key, bytes=len(data))
        response.status_code = 201
        return response

    return uploads


def register_uploads(server: Flask, stores: Stores, settings: IngestSettings) -> UploadApi:
    api = UploadApi(stores, settings)
    server.register_blueprint(create_upload_blueprint(api))
    return api
