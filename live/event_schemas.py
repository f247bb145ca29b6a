"""The published JSON Schemas of ingest bodies, and a validator that reports every problem.

The schemas are the HTTP contract (served in ``/api/openapi.json``). They are a strict subset
of what the compactor accepts (``pipeline/schema.py``): ``tests/live/test_schemas.py`` proves
that every event these schemas accept, once the API has filled in ``event_type``,
``event_id`` and ``referrer``, is a valid raw event line.

The validator covers the JSON Schema keywords used here (type, const, enum, required,
properties, additionalProperties, min/maxLength, pattern, minimum, maximum, maxProperties);
it is small, has no dependency, and lists every bad field rather than the first.
Optional fields the lake needs are filled in by the API: ``referrer`` (null) and
``properties`` ({}).
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from typing import Any

EVENT_TYPES = ("purchase", "pageview", "custom")
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
TS_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$"
MAX_TEXT = 512
MAX_AMOUNT = 1_000_000_000
MAX_QUANTITY = 1_000_000
MAX_PROPERTIES = 50
MAX_NESTING = 32

_TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
_COMMON_PROPERTIES: dict[str, Any] = {
    "event_id": {
        "type": "string",
        "pattern": ID_PATTERN,
        "description": "Unique id of the event; a repeat is accepted once. Required unless an"
        " Idempotency-Key header is sent, from which the id is then derived.",
    },
    "ts": {
        "type": "string",
        "pattern": TS_PATTERN,
        "description": "When the event happened, UTC with a Z, e.g. 2026-11-01T08:15:03Z.",
    },
    "user_id": _TEXT,
    "session_id": _TEXT,
}
_COMMON_REQUIRED = ["ts", "user_id", "session_id"]


def _event_schema(event_type: str, properties: dict[str, Any], required: list[str]) -> dict:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [*_COMMON_REQUIRED, *required],
        "properties": {
            "event_type": {"type": "string", "const": event_type},
            **_COMMON_PROPERTIES,
            **properties,
        },
    }


PURCHASE_SCHEMA = _event_schema(
    "purchase",
    {
        "order_id": _TEXT,
        "product_id": _TEXT,
        "product_name": _TEXT,
        "category": _TEXT,
        "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY},
        "unit_price": {"type": "number", "minimum": 0, "maximum": MAX_AMOUNT},
        "amount": {"type": "number", "minimum": 0, "maximum": MAX_AMOUNT},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
    },
    [
        "order_id",
        "product_id",
        "product_name",
        "category",
        "quantity",
        "unit_price",
        "amount",
        "currency",
    ],
)
PAGEVIEW_SCHEMA = _event_schema(
    "pageview",
    {"page": _TEXT, "referrer": {"type": ["string", "null"], "maxLength": MAX_TEXT}},
    ["page"],
)
CUSTOM_SCHEMA = _event_schema(
    "custom",
    {
        "name": {"type": "string", "minLength": 1, "maxLength": 128},
        "properties": {
            "type": "object",
            "maxProperties": MAX_PROPERTIES,
            "description": "Free-form JSON object, at most 50 keys and 32 levels deep;"
            " {} when left out.",
        },
    },
    ["name"],
)
SCHEMAS: dict[str, dict] = {
    "purchase": PURCHASE_SCHEMA,
    "pageview": PAGEVIEW_SCHEMA,
    "custom": CUSTOM_SCHEMA,
}
# A batch line names its type; the line's schema is then the type's schema.
BATCH_LINE_SCHEMA = {
    "oneOf": [
        {**schema, "required": ["event_type", *schema["required"]]} for schema in SCHEMAS.values()
    ],
    "discriminator": {"propertyName": "event_type"},
}


@dataclass(frozen=True)
class FieldError:
    path: str  # e.g. "amount", "properties.size", "lines[3].ts"
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "code": self.code, "message": self.message}


class BodyNotJson(ValueError):
    """The body is not UTF-8 JSON (or uses NaN/Infinity, which JSON does not have)."""


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(data: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity constants, bounded nesting (no RecursionError)."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BodyNotJson(str(exc)[:200]) from None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        # JSON Schema counts 2.0 as an integer; the caller normalises it to 2.
        if isinstance(value, float):
            return math.isfinite(value) and value.is_integer()
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    raise ValueError(f"unsupported schema type {kind!r}")


def _is_unicode(text: str) -> bool:
    """False for lone surrogates, which JSON escapes allow but UTF-8 and Parquet do not."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _free_json_errors(value: Any, path: str) -> list[FieldError]:
    """Depth and Unicode checks for free-form JSON, walked without recursion."""
    errors: list[FieldError] = []
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack and len(errors) < 20:
        item, where, depth = stack.pop()
        if depth > MAX_NESTING:
            errors.append(FieldError(where, "too_deep", f"nested deeper than {MAX_NESTING}"))
            continue
        if isinstance(item, str) and not _is_unicode(item):
            errors.append(FieldError(where, "invalid_unicode", "not valid Unicode"))
        elif isinstance(item, float) and not math.isfinite(item):
            errors.append(FieldError(where, "out_of_range", "number out of range"))
        elif isinstance(item, dict):
            for key, child in item.items():
                if not _is_unicode(key):
                    errors.append(FieldError(where, "invalid_unicode", "key not valid Unicode"))
                stack.append((child, _join(where, key), depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{n}]", depth + 1) for n, child in enumerate(item))
    return errors


def validate(value: Any, schema: dict, path: str = "") -> list[FieldError]:
    """Every way ``value`` breaks ``schema``, each with the path of the offending field."""
    errors: list[FieldError] = []
    kinds = schema.get("type")
    if kinds is not None:
        allowed = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_type_ok(value, kind) for kind in allowed):
            shown = " or ".join(allowed)
            return [FieldError(path, "type", f"must be {shown}, not {_json_type(value)}")]
    if "const" in schema and value != schema["const"]:
        errors.append(FieldError(path, "const", f"must be {json.dumps(schema['const'])}"))
    if "enum" in schema and value not in schema["enum"]:
        errors.append(FieldError(path, "enum", f"must be one of {schema['enum']}"))
    if isinstance(value, str):
        errors.extend(_string_errors(value, schema, path))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        errors.extend(_number_errors(value, schema, path))
    elif isinstance(value, dict):
        errors.extend(_object_errors(value, schema, path))
    return errors


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


@functools.lru_cache(maxsize=64)
def _pattern(pattern: str) -> re.Pattern[str]:
    """ECMA-262 semantics for ``$``: end of input. Python's ``$`` also matches before a
    final newline, which would let ``"USD\\n"`` pass ``^[A-Z]{3}$``."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _string_errors(value: str, schema: dict, path: str) -> list[FieldError]:
    errors = []
    if not _is_unicode(value):
        return [FieldError(path, "invalid_unicode", "not valid Unicode")]
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(FieldError(path, "min_length", f"shorter than {schema['minLength']}"))
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(FieldError(path, "max_length", f"longer than {schema['maxLength']}"))
    if "pattern" in schema and _pattern(schema["pattern"]).search(value) is None:
        errors.append(FieldError(path, "pattern", f"does not match {schema['pattern']}"))
    return errors


def _number_errors(value: float, schema: dict, path: str) -> list[FieldError]:
    if isinstance(value, float) and not math.isfinite(value):
        return [FieldError(path, "out_of_range", "number out of range")]
    errors = []
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(FieldError(path, "minimum", f"less than {schema['minimum']}"))
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(FieldError(path, "maximum", f"greater than {schema['maximum']}"))
    return errors


def _object_errors(value: dict, schema: dict, path: str) -> list[FieldError]:
    errors = []
    properties = schema.get("properties")
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(
            FieldError(path, "max_properties", f"more than {schema['maxProperties']} keys")
        )
    errors.extend(
        FieldError(_join(path, name), "required", "missing field")
        for name in schema.get("required", [])
        if name not in value
    )
    for name, item in value.items():
        where = _join(path, name)
        if properties is not None and name in properties:
            errors.extend(validate(item, properties[name], where))
        elif schema.get("additionalProperties") is False:
            shown = where if _is_unicode(where) else _join(path, "?")
            errors.append(FieldError(shown[:200], "unexpected", "unexpected field"))
    if properties is None:
        errors.extend(_free_json_errors(value, path))
    return errors
