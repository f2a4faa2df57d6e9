"""A suite file (`kind: suite`, a game day) -> a validated Suite whose experiments are loaded too.

Every experiment a suite names is loaded and validated before anything runs, so that a typo in
the fifth experiment stops the day before the first fault, with the fifth file's line and column.
"""

from __future__ import annotations

import glob
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaoslib_ext.errors import SpecError
from chaoslib_ext.masking import Secrets, read_secrets
from chaoslib_ext.notify import Notification, notifications
from chaoslib_ext.spec import SpecErrors, load_experiment, masked
from chaoslib_ext.spec.model import Experiment
from chaoslib_ext.spec.schema import schema_errors
from chaoslib_ext.spec.source import Document, load_document
from chaoslib_ext.spec.variables import substitute
from chaoslib_ext.units import parse_duration

STOP_ON = ("violated", "aborted", "never")


@dataclass(frozen=True)
class Suite:
    """A game day: experiments in the order they run, and how the day goes on after each."""

    path: Path
    title: str
    description: str
    sha256: str
    experiments: tuple[Experiment, ...]
    stop_on: str  # violated (or worse), aborted, never
    pause: float  # seconds between two experiments
    deadline: float | None  # seconds the whole day may take
    seed: int | None  # the shuffle's, when order: shuffled
    secrets: Secrets
    notify: tuple[Notification, ...] = field(default=())


def is_suite(path: str | Path) -> bool:
    """Whether a YAML file says `kind: suite` (an unreadable file is left to the loaders to explain)."""
    try:
        data = load_document(path).data
    except SpecError:
        return False
    return isinstance(data, dict) and data.get("kind") == "suite"


def load_suite(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    load: Callable[[Path, dict[str, Any]], Experiment] = load_experiment,
) -> Suite:
    """Load, validate and expand a suite; every experiment it names is loaded by `load` (app.validate:
    also its blast radius) with the suite's variables (where the experiment declares them), then
    its own `vars`, then --var."""
    document = load_document(path)
    data = document.data
    declared = data.get("secrets") if isinstance(data, dict) else None
    secrets = read_secrets(declared, Path(document.file).resolve().parent, document.location)
    try:
        substitute(document, {}, secrets.values())
        errors = schema_errors(document, "suite")
        if errors:
            raise SpecErrors(errors)
        return _build(document, secrets, overrides or {}, load)
    except SpecErrors as problems:
        raise SpecErrors([masked(error, secrets) for error in problems.errors]) from None
    except SpecError as error:
        raise masked(error, secrets) from None


def _build(
    document: Document,
    secrets: Secrets,
    overrides: dict[str, Any],
    load: Callable[[Path, dict[str, Any]], Experiment],
) -> Suite:
    data = document.data
    base = Path(document.file).parent
    shared = dict(data.get("variables", {}))
    experiments: list[Experiment] = []
    errors: list[SpecError] = []
    for index, entry in enumerate(data["experiments"]):
        pattern, own = (entry, {}) if isinstance(entry, str) else (entry["path"], dict(entry.get("vars", {})))
        where = document.location(("experiments", index))
        files = _expand(base, pattern, where)
        for file in files:
            try:
                experiments.append(_experiment(file, shared, own, overrides, load))
            except SpecErrors as problems:
                errors += problems.errors
            except SpecError as error:
                errors.append(error)
    declared = {name for experiment in experiments for name in experiment.variables}
    errors += [
        SpecError(
            f"--var {name}: no experiment of the suite declares a variable {name!r}",
            where=document.file,
            hint="a --var reaches the experiments that declare it under variables:",
        )
        for name in overrides
        if name not in declared
    ]
    if errors:
        raise SpecErrors(errors)
    seed = data.get("seed")
    if data.get("order") == "shuffled":
        seed = random.SystemRandom().randrange(2**31) if seed is None else seed
        random.Random(seed).shuffle(experiments)
    return Suite(
        path=Path(document.file),
        title=data["title"],
        description=data.get("description", ""),
        sha256=document.sha256,
        experiments=tuple(experiments),
        stop_on=data.get("stop_on", "never"),
        pause=parse_duration(data.get("pause", 0)),
        deadline=parse_duration(data["deadline"]) if "deadline" in data else None,
        seed=seed if data.get("order") == "shuffled" else None,
        secrets=secrets,
        notify=notifications(data.get("notify", [])),
    )


def _expand(base: Path, pattern: str, where: Any) -> list[Path]:
    """A path or a glob, relative to the suite file, in sorted order; it must name something."""
    full = pattern if Path(pattern).is_absolute() else str(base / pattern)
    if glob.has_magic(pattern):  # a glob leaves out suites (the suite itself, say)
        files = sorted(Path(p) for p in glob.glob(full) if Path(p).is_file() and not is_suite(p))
        if not files:
            raise SpecErrors(
                [
                    SpecError(
                        f"{pattern!r} matches no file",
                        where=where,
                        hint="paths are relative to the suite file",
                    )
                ]
            )
        return files
    return [Path(full)]


def _experiment(
    file: Path,
    shared: dict[str, Any],
    own: dict[str, Any],
    overrides: dict[str, Any],
    load: Callable[[Path, dict[str, Any]], Experiment],
) -> Experiment:
    """An experiment with the suite's variables it declares, then its entry's vars (which it must
    declare, as with --var), then the command line's --var where it declares them."""
    declared = _declared_variables(file)

    def its(values: dict[str, Any]) -> dict[str, Any]:
        return {name: value for name, value in values.items() if name in declared}

    return load(file, {**its(shared), **own, **its(overrides)})


def _declared_variables(file: Path) -> set[str]:
    data = load_document(file).data
    variables = data.get("variables") if isinstance(data, dict) else None
    return set(variables) if isinstance(variables, dict) else set()
