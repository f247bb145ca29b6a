"""Structured JSON logs, and a request id that follows a request through every log line.

The request id lives in a ``contextvars.ContextVar``: the filter installed by
``configure_logging`` copies it onto every log record, so ``data_access`` log lines carry it
without importing Flask. ``request_id_hooks`` set it per request, put it on ``flask.g`` and
echo it in the ``X-Request-Id`` response header, where gunicorn's access log reads it.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
import uuid
from typing import Any

from flask import Response, g, request

from dashboard.request_hooks import RequestHooks

REQUEST_ID_HEADER = "X-Request-Id"
TRACE_ID_HEADER = "X-Amzn-Trace-Id"
# Ids from clients end up in logs and response headers: accept only short, plain tokens.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:;=/+-]{0,199}$")
_MAX_TRACE_CHARS = 256

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
trace_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)

# LogRecord attributes every record has; anything else was passed with ``extra=``.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "request_id", "trace_id"}
)


def _safe_id(value: str | None) -> str | None:
    return value if value and _SAFE_ID.match(value) else None


def _trace_root(trace_header: str) -> str | None:
    """The ``Root=1-...`` part of an ALB trace header: the same for every hop of one request."""
    for part in trace_header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "Root" and value:
            return value
    return None


def choose_request_id(request_id_header: str | None, trace_header: str | None) -> str:
    """X-Request-Id if it is a plain token, else the ALB trace root, else a new id."""
    chosen = _safe_id(request_id_header)
    if chosen is None and trace_header:
        chosen = _safe_id(_trace_root(trace_header))
    return chosen or uuid.uuid4().hex


class RequestContextFilter(logging.Filter):
    """Copies the current request and trace ids onto each record (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        if not hasattr(record, "trace_id"):
            record.trace_id = trace_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for name in ("request_id", "trace_id"):
            value = getattr(record, name, None)
            if value:
                entry[name] = value
        for name, value in record.__dict__.items():
            if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def json_handler(stream: Any = None) -> logging.Handler:
    """A stream handler that writes JSON lines with request ids (stderr by default)."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter())
    # On the handler, not a logger: records propagated from any logger pass through it.
    handler.addFilter(RequestContextFilter())
    return handler


def configure_logging(level: str | int = "INFO", stream: Any = None) -> None:
    """Route every logger through one JSON handler on the root logger.

    Replaces the root logger's handlers, so calling it twice leaves one handler.
    gunicorn's own loggers keep their handlers (gunicorn.conf.py formats them alike).
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(json_handler(stream))
    root.setLevel(level.upper() if isinstance(level, str) else level)


def current_request_id() -> str | None:
    return request_id_var.get()


def bind_request_id() -> None:
    """Before a request: pick its id (the caller's, if a plain token) and bind it."""
    trace = request.headers.get(TRACE_ID_HEADER, "")[:_MAX_TRACE_CHARS] or None
    request_id = choose_request_id(request.headers.get(REQUEST_ID_HEADER), trace)
    g.request_id = request_id
    g.trace_id = trace
    # Tokens let teardown restore the previous values: gthread reuses threads.
    g._request_id_tokens = (request_id_var.set(request_id), trace_id_var.set(trace))


def echo_request_id(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


def unbind_request_id(_exc: BaseException | None) -> None:
    tokens = g.pop("_request_id_tokens", None)
    if tokens is None:
        return
    try:
        request_id_var.reset(tokens[0])
        trace_id_var.reset(tokens[1])
    except ValueError:  # torn down in another context: clear instead of restoring
        request_id_var.set(None)
        trace_id_var.set(None)


def request_id_hooks() -> RequestHooks:
    """Every request gets an id: on ``flask.g``, on every log record, on the response.

    ``bind_request_id`` must run before any hook that can refuse, so refusals carry an id.
    """
    return RequestHooks(
        before=(bind_request_id,), after=(echo_request_id,), teardown=(unbind_request_id,)
    )
