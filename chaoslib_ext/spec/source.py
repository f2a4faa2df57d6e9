"""Load YAML into plain data while remembering where every key and value came from.

PyYAML's safe constructor forgets line numbers, so the node graph is walked here instead.
The walk also refuses what a runner should never swallow: duplicate keys, alias bombs,
absurd nesting, huge files and bytes that are not UTF-8.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chaoslib_ext.errors import Location, SpecError

Path_ = tuple[str | int, ...]

MAX_FILE_BYTES = 1 << 20
MAX_NODES = 100_000
MAX_DEPTH = 64


@dataclass
class Document:
    """Parsed data plus the position of each value and each mapping key, by data path."""

    file: str
    data: Any
    sha256: str = ""  # of the bytes read, so that nothing reads the file twice
    templates: dict[Path_, str] = field(default_factory=dict)  # values that held ${...}, as written
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def location(self, path: Path_, *, prefer_key: bool = False) -> Location:
        """Where the value at `path` (or its nearest ancestor that has a position) stands."""
        for depth in range(len(path), -1, -1):
            prefix = tuple(path[:depth])
            tables = (self.keys, self.values) if prefer_key else (self.values, self.keys)
            for table in tables:
                if prefix in table:
                    line, column = table[prefix]
                    return Location(self.file, line, column)
        return Location(self.file)


def load_document(path: str | Path) -> Document:
    """Read and parse one YAML file; every failure is a one-line SpecError."""
    file = str(path)
    try:
        raw = _read_regular(Path(path))
    except FileNotFoundError:
        raise SpecError("file not found", where=file, hint="check the path") from None
    except IsADirectoryError:
        raise SpecError("is a directory, not an experiment file", where=file) from None
    except OSError as error:
        raise SpecError(f"cannot read: {error.strerror or error}", where=file) from None
    document = parse_document(raw, file)
    document.sha256 = hashlib.sha256(raw).hexdigest()
    return document


def _read_regular(path: Path) -> bytes:
    """The bytes of a regular file, at most one more than MAX_FILE_BYTES (parse_document says
    it is too big): a FIFO or a device such as /dev/zero is refused, never read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(info.st_mode):
            raise OSError("not a regular file (a pipe, a device?)")
        chunks, total = [], 0
        while total <= MAX_FILE_BYTES and (chunk := os.read(fd, 1 << 16)):
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def parse_document(raw: bytes, file: str) -> Document:
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(
            f"file is {len(raw)} bytes, more than the {MAX_FILE_BYTES} an experiment may have",
            where=file,
            hint="an experiment is a short declaration; move data out of it",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError(
            f"not UTF-8 text (byte {error.start})", where=file, hint="save the file as UTF-8"
        ) from None
    try:
        loader = yaml.SafeLoader(text)  # reads the first characters: may already refuse them
    except yaml.YAMLError as error:
        raise SpecError(f"invalid YAML: {error}".replace("\n", " "), where=file) from None
    try:
        node = loader.get_single_node()
        document = Document(file, None)
        if node is not None:
            document.data = _Walker(loader, document).build(node, (), 0)
        return document
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        problem = error.problem or error.context or "invalid YAML"
        raise SpecError(f"invalid YAML: {problem}", where=where, hint=_yaml_hint(problem)) from None
    except yaml.YAMLError as error:
        raise SpecError(f"invalid YAML: {error}".replace("\n", " "), where=file) from None
    except RecursionError:  # PyYAML's composer recurses before our own depth check can run
        raise SpecError(f"nested deeper than {MAX_DEPTH} levels", where=file) from None
    finally:
        loader.dispose()


def _yaml_hint(problem: str) -> str:
    if "tab" in problem or "'\\t'" in problem:
        return "indent with spaces, not tabs"
    if "'{'" in problem or "'}'" in problem:
        return 'quote values that contain braces, for example "${users}"'
    if "mapping values are not allowed" in problem:
        return "a value containing ': ' must be quoted"
    return "check indentation and quoting around this place"


class _Walker:
    def __init__(self, loader: yaml.SafeLoader, document: Document) -> None:
        self.loader = loader
        self.document = document
        self.visited = 0

    def build(self, node: yaml.Node, path: Path_, depth: int) -> Any:
        self.visited += 1
        mark = node.start_mark
        where = Location(self.document.file, mark.line + 1, mark.column + 1)
        if self.visited > MAX_NODES:
            raise SpecError(
                f"document expands to more than {MAX_NODES} values",
                where=where,
                hint="YAML aliases that multiply (an 'alias bomb') are refused",
            )
        if depth > MAX_DEPTH:
            raise SpecError(f"nested deeper than {MAX_DEPTH} levels", where=where)
        self.document.values.setdefault(path, (mark.line + 1, mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: Path_, depth: int) -> dict[str, Any]:
        self.loader.flatten_mapping(node)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_mark = key_node.start_mark
            where = Location(self.document.file, key_mark.line + 1, key_mark.column + 1)
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError("a mapping key must be a plain value", where=where)
            key = key_node.value  # as written: YAML 1.1 would make `on:` (as in notify:) the boolean True
            if key in result:
                raise SpecError(
                    f"duplicate key {key!r}", where=where, hint="each key may appear once per mapping"
                )
            child = (*path, key)
            self.document.keys[child] = (key_mark.line + 1, key_mark.column + 1)
            result[key] = self.build(value_node, child, depth + 1)
        return result
