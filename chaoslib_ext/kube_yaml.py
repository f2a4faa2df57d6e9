"""Kubernetes objects as YAML a person would write (and kubectl applies): multi-line text as a
literal block, and no anchors or aliases where two objects share a part."""

from __future__ import annotations

from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _text)


def render(objects: list[dict[str, Any]]) -> str:
    """Every object as one YAML document, in order."""
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False)
