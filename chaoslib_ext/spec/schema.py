"""Validate parsed experiments against the JSON Schema shipped in the package, in plain words.

jsonschema's messages speak about the schema ("'x' does not match '^(\\d+...'"); users need
to hear about their file: where, which field, what was expected, and a hint.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from chaoslib_ext.errors import SpecError
from chaoslib_ext.faults.base import Scope
from chaoslib_ext.spec.source import Document

MAX_ERRORS = 20
REFERENCE_HINT = "see the experiment reference in the README"


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A schema shipped in chaoslib_ext/schemas, by file stem ("experiment", "report"). The
    experiment's gets its fault kinds and drivers from their registries (faults/, drivers/)."""
    text = resources.files("chaoslib_ext.schemas").joinpath(f"{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    if name == "experiment":
        _add_faults_and_drivers(schema)
    if name == "suite":  # one definition of notify:, for experiments and suites alike
        schema["$defs"]["notify"] = load_schema("experiment")["$defs"]["notify"]
    return schema


def _add_faults_and_drivers(schema: dict[str, Any]) -> None:
    """Each fault kind declares its own fields; each driver, the fields its faults select with."""
    from chaoslib_ext.drivers import DRIVERS, driver_class
    from chaoslib_ext.faults.registry import kind_schemas

    drivers = [driver_class(name) for name in DRIVERS]

    def selecting(scope: Scope) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for driver in drivers:
            for key, field in driver.selection_properties[scope].items():
                if key in merged and "properties" in field:  # one selector object, every driver's fields
                    merged[key] = {
                        **merged[key],
                        "properties": {**merged[key]["properties"], **field["properties"]},
                    }
                else:
                    merged[key] = {**field}
        for field in merged.values():
            if field.get("type") == "object":
                field.update(additionalProperties=False, minProperties=1)
                field.pop("description", None)
        return merged

    kinds = kind_schemas(selecting)
    names = sorted(kinds)
    schema["$defs"].update(kinds)
    schema["$defs"]["fault"] = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "propertyNames": {"enum": names, "x-expected": "a fault kind: " + ", ".join(names)},
        "properties": {name: {"$ref": f"#/$defs/{name}"} for name in names},
    }
    schema["properties"]["target"]["properties"]["driver"] = {
        "enum": list(DRIVERS),
        "x-expected": "driver: " + " or ".join(DRIVERS),
    }


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema(name))


def schema_errors(document: Document, schema_name: str = "experiment") -> list[SpecError]:
    """Every schema violation in the document, most specific first, as user-facing errors."""
    validator = _validator(schema_name)
    errors = sorted(validator.iter_errors(document.data), key=lambda e: list(map(str, e.path)))
    return [_describe(document, error) for error in _leaves(errors)][:MAX_ERRORS]


def _leaves(errors: list[ValidationError]) -> list[ValidationError]:
    """Replace umbrella errors (anyOf/oneOf/$ref) by their most relevant sub-error."""
    result = []
    for error in errors:
        while error.context and error.validator in ("anyOf", "oneOf"):
            if _subschema(error).get("x-expected"):
                break
            error = jsonschema.exceptions.best_match(error.context)
        result.append(error)
    return result


def _subschema(error: ValidationError) -> Mapping[str, Any]:
    """The schema object whose keyword failed; empty for a true/false schema, which has no keywords
    (jsonschema's stubs also allow it to be unset, as on errors made by hand)."""
    return error.schema if isinstance(error.schema, Mapping) else {}


def field_path(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _describe(document: Document, error: ValidationError) -> SpecError:
    path = tuple(error.absolute_path)
    field = field_path(path)
    expected = _subschema(error).get("x-expected")
    kind = error.validator
    if kind == "additionalProperties":
        allowed = sorted(_subschema(error).get("properties", {}))
        mapping: Any = error.instance  # the experiment's mapping that has the unknown field
        unknown = sorted(set(mapping) - set(allowed))[0]
        where = document.location((*path, unknown), prefer_key=True)
        return SpecError(
            f"{field_path((*path, unknown))}: unknown field {unknown!r}",
            where=where,
            hint=_did_you_mean(unknown, allowed),
        )
    if "propertyNames" in error.schema_path:
        return _bad_name(document, path, error)
    where = document.location(path)
    if kind == "required":
        missing = error.message.split("'")[1]
        return SpecError(
            f"{field}: missing required field {missing!r}",
            where=where,
            hint=f"add '{missing}:' under {field}" if path else f"add '{missing}:' at the top level",
        )
    if kind == "enum":
        values: Any = error.validator_value  # the schema's list of allowed values
        choices = ", ".join(map(str, values))
        return SpecError(
            f"{field}: {error.instance!r} is not one of {choices}",
            where=where,
            hint=expected or _did_you_mean(str(error.instance), list(map(str, values))),
        )
    if kind == "type" and error.validator_value == "object" and error.instance is None and not path:
        return SpecError("the file is empty", where=where, hint="an experiment starts with 'version: 1'")
    if expected:
        return SpecError(
            f"{field}: expected {expected}, got {_show(error.instance)}",
            where=where,
            hint=_hint_for(expected),
        )
    if kind == "not" and isinstance(error.instance, dict) and "count" in error.instance:
        return SpecError(
            f"{field}: give either count or percent, not both", where=where, hint="remove one of them"
        )
    return SpecError(f"{field}: {_plain(error)}", where=where, hint=_default_hint(kind))


def _bad_name(document: Document, path: tuple[str | int, ...], error: ValidationError) -> SpecError:
    names_schema = _subschema(error)
    allowed = [str(v) for v in names_schema.get("enum", [])]
    name = str(error.instance)
    expected = names_schema.get("x-expected")
    what = expected or "a known name"
    where = document.location((*path, name), prefer_key=True)
    hint = _did_you_mean(name, allowed) if allowed else REFERENCE_HINT
    return SpecError(f"{field_path(path)}: unknown name {name!r}, expected {what}", where=where, hint=hint)


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "allowed here: " + ", ".join(choices) if choices else REFERENCE_HINT


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _hint_for(expected: str) -> str:
    if "duration" in expected:
        return "a duration is a number and a unit, in lower case: us, ms, s, m or h (250ms, 10s, 1m30s)"
    if "percentage" in expected:
        return "write the % sign, e.g. 99.9%"
    if "URL" in expected:
        return "include the scheme, http:// or https://"
    if "version" in expected:
        return "this gameday reads experiment format version 1"
    return REFERENCE_HINT


def _plain(error: ValidationError) -> str:
    kind = error.validator
    value: Any = error.validator_value  # JSON from the schema
    instance: Any = error.instance  # JSON from the experiment
    messages: dict[str, Callable[[], str]] = {
        "type": lambda: f"expected {_article(value)}, got {_show(instance)}",
        "minimum": lambda: f"must be at least {value}, got {_show(instance)}",
        "maximum": lambda: f"must be at most {value}, got {_show(instance)}",
        "exclusiveMinimum": lambda: f"must be more than {value}, got {_show(instance)}",
        "minItems": lambda: f"needs at least {value} item(s)",
        "minLength": lambda: "must not be empty",
        "minProperties": lambda: f"needs at least {value} entry",
        "maxProperties": lambda: f"holds {len(instance)} entries where one is expected",
        "uniqueItems": lambda: "has duplicate items",
        "pattern": lambda: f"{_show(instance)} does not have the expected form",
        "const": lambda: f"must be {_show(value)}",
    }
    return messages[kind]() if kind in messages else error.message


def _article(types: Any) -> str:
    names = {
        "object": "a mapping",
        "array": "a list",
        "string": "a string",
        "integer": "a whole number",
        "number": "a number",
        "boolean": "true or false",
    }
    if isinstance(types, list):
        type_names: list[str] = types  # a JSON Schema "type" list names types by string
        return " or ".join(names.get(t, t) for t in type_names)
    return names.get(types, str(types))


def _default_hint(kind: object) -> str:  # the failed keyword (jsonschema types it str | Unset)
    if kind == "maxProperties":
        return "write each item as its own list entry ('- kind: {...}')"
    return REFERENCE_HINT
