"""${name} placeholders: defaults from the experiment's `variables:`, overrides from --var."""

from __future__ import annotations

import difflib
import re
from typing import Any

import yaml

from chaoslib_ext.errors import SpecError
from chaoslib_ext.spec.source import Document

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SAFETY_SECTIONS = ("target", "guards")  # what limits a run: --var must not move it unless allowed
SAFETY_OPT_IN = "safety_variables"


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ["users=50", "host=http://x"] into typed values (50 stays an integer)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SpecError(f"--var {pair!r}: expected name=value", hint="for example --var users=50")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        values[name] = value if isinstance(value, str | int | float | bool) else raw
    return values


def substitute(document: Document, overrides: dict[str, Any], secrets: dict[str, str]) -> dict[str, Any]:
    """Replace placeholders in place in document.data (secrets too); return the variables in force
    (never the secrets)."""
    data = document.data
    declared = data.get("variables", {}) if isinstance(data, dict) else {}
    if not isinstance(declared, dict):
        return {}
    for name in declared:
        if name in secrets:
            raise SpecError(
                f"{name} is both a variable and a secret",
                where=document.location(("variables", name), prefer_key=True),
                hint="give one of them another name",
            )
    for name in overrides:
        if name in secrets:
            raise SpecError(
                f"--var {name}: {name} is a secret",
                where=document.location(("secrets", name), prefer_key=True),
                hint="set it where secrets.{name} says it comes from, never on the command line",
            )
        if name not in declared:
            raise SpecError(
                f"--var {name}: the experiment declares no variable {name!r}",
                where=document.location(("variables",), prefer_key=True),
                hint=_suggest(name, list(declared)) or f"declare it under variables: ({name}: default)",
            )
    values = {**declared, **overrides}
    allowed = data.get(SAFETY_OPT_IN, []) if isinstance(data, dict) else []
    fixed = set(declared) - set(allowed if isinstance(allowed, list) else [])
    document.data = _replace(document, data, (), {**values, **secrets}, fixed)
    return values


def _replace(
    document: Document, value: Any, path: tuple[str | int, ...], values: dict[str, Any], fixed: set[str]
) -> Any:
    if isinstance(value, dict):
        return {
            key: item
            if path == () and key in ("variables", "secrets", SAFETY_OPT_IN)
            else _replace(document, item, (*path, key), values, fixed)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_replace(document, item, (*path, i), values, fixed) for i, item in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    for name in PLACEHOLDER.findall(value):
        if name not in values:
            raise SpecError(
                f"unknown variable ${{{name}}}",
                where=document.location(path),
                hint=_suggest(name, list(values)) or "declare it under variables: or pass --var",
            )
        if path and path[0] in SAFETY_SECTIONS and name in fixed:
            raise SpecError(
                f"${{{name}}} in {path[0]}: a variable there lets --var change what limits the run",
                where=document.location(path),
                hint=f"write the value itself, or allow it on purpose: {SAFETY_OPT_IN}: [{name}]",
            )
    document.templates[path] = value
    whole = PLACEHOLDER.fullmatch(value)
    if whole:
        return values[whole.group(1)]
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), value)


def _suggest(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    return f"did you mean {close[0]!r}?" if close else ""
