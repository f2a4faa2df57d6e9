"""spec: YAML file -> validated, variable-substituted, frozen Experiment (or SpecErrors)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from chaoslib_ext.errors import SpecError
from chaoslib_ext.masking import Secrets, read_secrets
from chaoslib_ext.spec.builder import Builder
from chaoslib_ext.spec.model import Experiment
from chaoslib_ext.spec.schema import schema_errors
from chaoslib_ext.spec.source import Document, load_document
from chaoslib_ext.spec.variables import parse_overrides, substitute

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
    _looks_like_an_experiment(document)
    declared = document.data.get("secrets") if isinstance(document.data, dict) else None
    secrets = read_secrets(declared, Path(document.file).resolve().parent, document.location)
    try:
        variables = substitute(document, overrides or {}, secrets.values())
        errors = schema_errors(document)
        if errors:
            raise SpecErrors(errors)
        builder = Builder(document, variables, secrets)
        experiment = replace(builder.build(), overrides=dict(overrides or {}))
        if builder.errors:
            raise SpecErrors(builder.errors)
    except SpecErrors as problems:  # an error may quote a value that holds a secret
        raise SpecErrors([masked(error, secrets) for error in problems.errors]) from None
    except SpecError as error:
        raise masked(error, secrets) from None
    return experiment


EXPERIMENT_KEYS = {"title", "load", "slo", "phases", "faults"}


def _looks_like_an_experiment(document: Document) -> None:
    """One line for a YAML file that is something else (a Compose file, say), not a list of
    schema errors about everything an experiment would have."""
    data = document.data
    if not isinstance(data, dict) or EXPERIMENT_KEYS & set(data) or data.get("version") == 1:
        return  # an experiment, or not even a mapping (the schema says so)
    found = ", ".join(f"{key}:" for key in list(data)[:3])
    raise SpecError(
        f"not a gameday experiment (it has {found})",
        where=document.location(()),
        hint="an experiment starts with version: 1, title:, load:, slo: and phases:",
    )


def masked(error: SpecError, secrets: Secrets) -> SpecError:
    """The error with every secret's value in it masked."""
    return SpecError(secrets.mask(error.message), where=error.where, hint=secrets.mask(error.hint))
