"""Secrets: values an experiment needs (a token in a URL, a password in a service's environment)
that must never appear in what gameday writes.

They are declared under `secrets:` as coming from the environment or from a file, used like
variables (`${name}`), and masked as `***` in everything gameday prints or writes: the progress
output, error messages, report.json, report.md, junit.xml and, once the run is over, the Locust
and service logs (which those programs write themselves while the run lasts).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .errors import Location, SpecError

MASK = "***"
MIN_LENGTH = 6  # shorter values could not be told apart from ordinary text in the outputs


class Secrets:
    """The secret values of one experiment, and the masking of text that may contain them."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values
        forms = {form for value in values.values() for form in (value, quote(value, safe=""))}
        self._forms = sorted(forms, key=len, reverse=True)  # the longest first: no partial masking

    @property
    def names(self) -> list[str]:
        return sorted(self._values)

    def values(self) -> dict[str, str]:
        return dict(self._values)

    def mask(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, MASK)
        return text

    def mask_file(self, path: Path) -> None:
        """Rewrite a log file with its secrets masked (in place: it is gameday's own output)."""
        if not self._forms:
            return
        text = path.read_text(encoding="utf-8", errors="replace")
        masked = self.mask(text)
        if masked != text:
            path.write_text(masked, encoding="utf-8")

    def __repr__(self) -> str:  # never the values, wherever an Experiment gets printed
        return f"Secrets({', '.join(self.names)})"


NO_SECRETS = Secrets({})


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
            path = Path(str(reference)).expanduser()
            path = path if path.is_absolute() else base / path
            try:
                value = path.read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as error:
                raise SpecError(
                    f"secret {name}: cannot read {path}: {getattr(error, 'strerror', None) or error}",
                    where=location,
                    hint="the file must exist, be readable and hold UTF-8 text",
                ) from None
        if len(value) < MIN_LENGTH:
            raise SpecError(
                f"secret {name} is shorter than {MIN_LENGTH} characters",
                where=location,
                hint="a value that short cannot be masked reliably in the outputs",
            )
        values[str(name)] = value
    return Secrets(values)
