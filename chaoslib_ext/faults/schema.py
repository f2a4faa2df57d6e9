"""JSON Schema fragments the fault kinds declare their fields with (spec/schema.py adds the rest)."""

from __future__ import annotations

from typing import Any

DURATION: dict[str, Any] = {"$ref": "#/$defs/duration"}
PERCENT: dict[str, Any] = {"$ref": "#/$defs/percent"}
COMMON: dict[str, Any] = {"after": DURATION, "seed": {"type": "integer"}}  # every fault
SHARE: dict[str, Any] = {"count": {"type": "integer", "minimum": 1}, "percent": PERCENT}  # faults that choose
DIRECTION: dict[str, Any] = {
    "enum": ["upstream", "downstream", "both"],
    "x-expected": "upstream (requests, to the service), downstream (responses, from it) or both",
}
NAMES: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string", "minLength": 1},
    "description": "glob patterns such as *.payments.internal",
}
