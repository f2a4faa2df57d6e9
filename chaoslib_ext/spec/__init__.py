"""spec: YAML file -> validated, variable-substituted, frozen Experiment (or SpecErrors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import SpecError
from .builder import Builder
from .model import Experiment
from .schema import schema_errors
from .source import load_document
from .variables import parse_overrides, substitute

__all__ = ["Experiment", "SpecErrors", "load_experiment", "parse_overrides"]


class SpecErrors(SpecError):
    """Several problems found in one file; each is its own one-line SpecError."""

    def __init__(self, errors: list[SpecError]) -> None:
        super().__init__(str(errors[0]))
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)


def load_experiment(path: str | Path, overrides: dict[str, Any] | None = None) -> Experiment:
    """Load, substitute, validate and build; raise SpecErrors listing every problem found."""
    document = load_document(path)
    variables = substitute(document, overrides or {})
    errors = schema_errors(document)
    if errors:
        raise SpecErrors(errors)
    builder = Builder(document, variables)
    experiment = builder.build()
    if builder.errors:
        raise SpecErrors(builder.errors)
    return experiment
