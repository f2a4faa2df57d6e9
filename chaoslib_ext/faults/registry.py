"""Every fault kind, by the names experiments use, and the JSON Schema of each.

A kind registers itself (`@register`) in its own module; `faults/__init__.py` imports them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from chaoslib_ext.faults.base import FaultKind, Scope
from chaoslib_ext.faults.schema import COMMON, DURATION, SHARE

K = TypeVar("K", bound=type[FaultKind])
KINDS: dict[str, type[FaultKind]] = {}


def register(kind: K) -> K:
    """Make a fault kind known under its name and aliases."""
    for name in (kind.kind, *kind.aliases):
        if name in KINDS:
            raise ValueError(f"fault kind {name!r} is registered twice")
        KINDS[name] = kind
    return kind


def kind_schemas(selection_properties: Callable[[Scope], dict[str, Any]]) -> dict[str, Any]:
    """The JSON Schema of each fault kind by name: its own fields, when it acts, and the fields
    that select its targets (`selection_properties`: every driver's, for the kind's scope)."""
    schemas: dict[str, Any] = {}
    for name, kind in sorted(KINDS.items()):
        selecting = selection_properties(kind.scope)
        properties = {
            **COMMON,
            **({"duration": DURATION} if kind.lasting else {}),
            **(SHARE if selecting else {}),
            **selecting,
            **kind.properties,
        }
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "required": list(kind.required),
            "properties": properties,
        }
        if selecting:
            schema["not"] = {"required": ["count", "percent"]}
        schemas[name] = schema
    return schemas
