"""Secrets: values an experiment needs (a token in a URL, a password in a service's environment)
that must never appear in what gameday writes.

They are declared under `secrets:` as coming from the environment or from a file, used like
variables (`${name}`), and masked as `***` in everything gameday prints or writes: the progress
output, error messages, report.json, report.md, junit.xml and, once the run is over, the Locust
and service logs (which those programs write themselves while the run lasts).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from chaoslib_ext.errors import Location, SpecError

MASK = "***"
MIN_LENGTH = 6  # shorter values could not be told apart from ordinary text in the outputs
MAX_FILE_BYTES = 64 * 1024


class Secrets:
    """The secret values of one experiment, and the masking of text that may contain them."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values
        forms = {form for value in values.values() for form in _written_forms(value)}
        self._forms = sorted(forms, key=len, reverse=True)  # the longest first: no partial masking

    @property
    def names(self) -> list[str]:
        return sorted(self._values)

    def values(self) -> dict[str, str]:
        return dict(self._values)

    def mask(self, text: str) -> str:
        """Every written form of every secret, and the fragments that shortening text leaves: a
        secret's start just before "..." or "…" or at the very end, its end at the very start."""
        for form in self._forms:
            text = text.replace(form, MASK)
        cuts = [cut for cut in ("...", "…") if cut in text]  # most text was never shortened
        for form in self._forms:
            for size in range(len(form) - 1, FRAGMENT - 1, -1):
                head, tail = form[:size], form[-size:]
                for cut in cuts:
                    text = text.replace(head + cut, MASK + cut)
                if text.endswith(head):
                    text = text[: -len(head)] + MASK
                if text.startswith(tail):
                    text = MASK + text[len(tail) :]
        return text

    def mask_data(self, value: Any) -> Any:
        """The same, on every string of a JSON-like value (before it is written, and escaped)."""
        if not self._forms:
            return value
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {self.mask_data(key): self.mask_data(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask_data(item) for item in value]
        return value

    def __repr__(self) -> str:  # never the values, wherever an Experiment gets printed
        return f"Secrets({', '.join(self.names)})"


NO_SECRETS = Secrets({})
FRAGMENT = 4  # the shortest piece of a secret masked where text was cut


def _written_forms(value: str) -> set[str]:
    """How a value may appear in text gameday writes: as it is, URL-encoded, escaped by JSON,
    by repr() and by XML."""
    return {
        value,
        quote(value, safe=""),
        quote(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        escape(value),
        escape(value, {'"': "&quot;", "'": "&apos;"}),
    }


def read_secrets(declared: Any, base: Path, where: Any) -> Secrets:
    """Resolve `secrets:` ({name: {env: VAR} | {file: PATH}}); `where(path)` locates an entry."""
    if not isinstance(declared, dict):
        return NO_SECRETS  # the schema says what is wrong with it
    values = {}
    for name, source in declared.items():
        if not isinstance(source, dict) or len(source) != 1:
            continue  # the schema says what is wrong with it
        [(kind, reference)] = source.items()
        location: Location = where(("secrets", name, kind))
        if kind == "env":
            value = os.environ.get(str(reference))
            if value is None:
                raise SpecError(
                    f"secret {name}: the environment variable {reference} is not set",
                    where=location,
                    hint=f"export {reference}=... before running gameday",
                )
        else:
            value = _read_secret_file(name, str(reference), base, location)
        if len(value) < MIN_LENGTH:
            raise SpecError(
                f"secret {name} is shorter than {MIN_LENGTH} characters",
                where=location,
                hint="a value that short cannot be masked reliably in the outputs",
            )
        values[str(name)] = value
    return Secrets(values)


def _read_secret_file(name: str, reference: str, base: Path, location: Location) -> str:
    """A regular file's text, one trailing newline dropped; never a device or a pipe, which
    could be endless or block."""
    try:
        path = Path(reference).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise OSError(f"{path} is not a regular file")
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise OSError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
        return data.decode("utf-8").rstrip("\r\n")
    except (OSError, ValueError) as error:  # ValueError: a NUL in the path, bytes that are not UTF-8
        raise SpecError(
            f"secret {name}: cannot read {reference}: {getattr(error, 'strerror', None) or error}",
            where=location,
            hint="a regular file of UTF-8 text, at most 64 KiB",
        ) from None
