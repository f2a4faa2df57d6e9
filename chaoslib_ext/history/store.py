"""The history of runs and suites: SQLite by default (one file), PostgreSQL for a team sharing one.

Both hold the same tables, created and upgraded by the numbered migrations below; a store
records the version it is at, so an older gameday refuses a newer store instead of misreading it.
A run is recorded from its report document (what it says is what the history says).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from chaoslib_ext.errors import SpecError
from chaoslib_ext.spec.model import Experiment
from chaoslib_ext.state.ledger import open_state_dir, state_dir

# each migration takes the store from the version before it to its own number; never edit one
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            suite_run_id TEXT,
            experiment_key TEXT NOT NULL,
            experiment_title TEXT NOT NULL,
            experiment_file TEXT NOT NULL,
            experiment_sha256 TEXT NOT NULL,
            git_commit TEXT,
            started_at TEXT NOT NULL,
            ended_at TEXT NOT NULL,
            verdict TEXT NOT NULL,
            exit_code INTEGER NOT NULL,
            status TEXT NOT NULL,
            dry_run INTEGER NOT NULL,
            time_to_recover_s DOUBLE PRECISION,
            error_budget_consumed DOUBLE PRECISION,
            reasons TEXT NOT NULL,
            report_path TEXT
        )""",
        "CREATE INDEX runs_by_experiment ON runs (experiment_key, started_at)",
        """CREATE TABLE phases (
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            name TEXT NOT NULL,
            judged INTEGER NOT NULL,
            held INTEGER,
            sent INTEGER NOT NULL,
            failures INTEGER NOT NULL,
            availability DOUBLE PRECISION,
            throughput_rps DOUBLE PRECISION,
            p50_ms DOUBLE PRECISION,
            p95_ms DOUBLE PRECISION,
            p99_ms DOUBLE PRECISION,
            PRIMARY KEY (run_id, name)
        )""",
        """CREATE TABLE suites (
            run_id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            file TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            started_at TEXT NOT NULL,
            ended_at TEXT NOT NULL,
            verdict TEXT NOT NULL,
            exit_code INTEGER NOT NULL,
            report_path TEXT
        )""",
    ),
)
RUN_COLUMNS = [
    "run_id",
    "suite_run_id",
    "experiment_key",
    "experiment_title",
    "experiment_file",
    "experiment_sha256",
    "git_commit",
    "started_at",
    "ended_at",
    "verdict",
    "exit_code",
    "status",
    "dry_run",
    "time_to_recover_s",
    "error_budget_consumed",
    "reasons",
    "report_path",
]
PHASE_COLUMNS = [
    "run_id",
    "name",
    "judged",
    "held",
    "sent",
    "failures",
    "availability",
    "throughput_rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
]


class Connection(Protocol):  # what sqlite3 and psycopg connections (in autocommit mode) both offer
    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Phase:
    name: str
    judged: bool
    held: bool | None
    sent: int
    failures: int
    availability: float | None
    throughput_rps: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class Run:
    """One recorded run, as its report told it."""

    run_id: str
    suite_run_id: str | None
    experiment_key: str
    experiment_title: str
    experiment_file: str
    experiment_sha256: str
    git_commit: str | None
    started_at: str
    ended_at: str
    verdict: str
    exit_code: int
    status: str
    dry_run: bool
    time_to_recover_s: float | None
    error_budget_consumed: float | None
    reasons: list[str]
    report_path: str | None
    phases: tuple[Phase, ...] = ()

    def phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)


def run_from_report(report: dict[str, Any], report_path: Path | None, suite_run_id: str | None = None) -> Run:
    """What the history keeps of a run, from its report document."""
    experiment_file = report["experiment"]["file"]
    budget = report["error_budget"]
    return Run(
        run_id=report["run_id"],
        suite_run_id=suite_run_id,
        experiment_key=experiment_key(experiment_file),
        experiment_title=report["experiment"]["title"],
        experiment_file=experiment_file,
        experiment_sha256=report["experiment"]["sha256"],
        git_commit=git_commit(Path(experiment_file)),
        started_at=report["started_at"],
        ended_at=report["ended_at"],
        verdict=report["verdict"],
        exit_code=report["exit_code"],
        status=report["status"],
        dry_run=report["dry_run"],
        time_to_recover_s=report["recovery"]["time_to_recover_s"],
        error_budget_consumed=None if budget is None else budget["consumed"],
        reasons=list(report["reasons"]),
        report_path=None if report_path is None else str(report_path),
        phases=tuple(
            Phase(
                name=phase["name"],
                judged=phase["judged"],
                held=all(o["held"] for o in phase["objectives"]) if phase["judged"] else None,
                sent=phase["sent"],
                failures=phase["failures"],
                availability=phase["availability"],
                throughput_rps=phase["throughput_rps"],
                p50_ms=phase["latency_ms"]["p50"],
                p95_ms=phase["latency_ms"]["p95"],
                p99_ms=phase["latency_ms"]["p99"],
            )
            for phase in report["phases"]
        ),
    )


def skipped_run(document: dict[str, Any], experiment: Experiment, report_path: Path) -> Run:
    """A run that never started (its target was busy), from its skipped.json."""
    return Run(
        run_id=document["run_id"],
        suite_run_id=None,
        experiment_key=experiment_key(str(experiment.path)),
        experiment_title=document["experiment"]["title"],
        experiment_file=str(experiment.path),
        experiment_sha256=experiment.sha256,
        git_commit=git_commit(Path(experiment.path)),
        started_at=document["skipped_at"],
        ended_at=document["skipped_at"],
        verdict="skipped",
        exit_code=document["exit_code"],
        status="target-busy",
        dry_run=False,
        time_to_recover_s=None,
        error_budget_consumed=None,
        reasons=[document["reason"]],
        report_path=str(report_path),
    )


class History:
    """Runs and suites, in SQLite (a path) or PostgreSQL (a postgresql:// URL)."""

    def __init__(
        self, connection: Connection, dialect: str, where: str, errors: tuple[type[Exception], ...]
    ) -> None:
        self._connection = connection
        self._dialect = dialect  # sqlite or postgresql
        self._errors = errors  # the driver's own: turned into one-line errors
        self.where = where  # for messages: the file, or the URL without its password
        self._migrate()

    @classmethod
    def open(cls, location: str | Path, create: bool = True) -> History:
        """The history at a path or URL; `create` False (the reading commands): it must exist."""
        text = str(location)
        if text.startswith(("postgresql://", "postgres://")):
            return cls._postgresql(text)
        path = Path(text.removeprefix("sqlite:///") if text.startswith("sqlite:///") else text)
        if not create and not path.is_file():
            raise SpecError("no history here yet", where=str(path), hint="runs record it; or give --history")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(path, timeout=30, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")  # readers (gameday history) never block a run
        except (OSError, sqlite3.Error) as error:
            raise SpecError(
                f"cannot open the history: {error}", where=str(path), hint="choose another --history"
            ) from None
        return cls(connection, "sqlite", str(path), (sqlite3.Error,))

    @classmethod
    def _postgresql(cls, url: str) -> History:
        try:
            import psycopg
        except ImportError:
            raise SpecError(
                "a PostgreSQL history needs psycopg",
                where=redact(url),
                hint="pip install 'gameday[postgres]'",
            ) from None
        try:
            connection = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except (psycopg.Error, ValueError) as error:
            raise SpecError(
                f"cannot connect to the history: {redact(str(error).strip().splitlines()[0])}",
                where=redact(url),
                hint="check history's URL, and that the server accepts this user",
            ) from None
        return cls(connection, "postgresql", redact(url), (psycopg.Error,))

    def close(self) -> None:
        self._connection.close()

    # -- schema -------------------------------------------------------------------------------

    def _execute(self, text: str, parameters: Sequence[Any] = ()) -> Any:
        """Run one statement (written with ? placeholders); a database error is a one-line error."""
        sql = text if self._dialect == "sqlite" else text.replace("?", "%s")
        try:
            return self._connection.execute(sql, tuple(parameters))
        except self._errors as error:
            raise SpecError(f"the history failed: {redact(str(error).strip())}", where=self.where) from None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction; on SQLite it holds the write lock from its start (two runs migrating
        or writing one file at once wait for each other instead of failing)."""
        self._execute("BEGIN IMMEDIATE" if self._dialect == "sqlite" else "BEGIN")
        try:
            yield
        except BaseException:
            with contextlib.suppress(*self._errors, SpecError):
                self._execute("ROLLBACK")
            raise
        self._execute("COMMIT")

    def version(self) -> int:
        """The schema version the store is at: 0 when it has no gameday tables yet."""
        listing = (
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            if self._dialect == "sqlite"
            else "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        tables = {row[0] for row in self._execute(listing).fetchall()}
        if "gameday_schema" not in tables:
            if tables:
                raise SpecError(
                    f"not a gameday history: it holds other tables ({', '.join(sorted(tables)[:3])})",
                    where=self.where,
                    hint="give --history a file or database of its own",
                )
            return 0
        row = self._execute("SELECT MAX(version) FROM gameday_schema").fetchone()
        return int(row[0] or 0)

    def _migrate(self) -> None:
        while True:
            current = self.version()
            if current > len(MIGRATIONS):
                raise SpecError(
                    f"the history is at schema version {current}, newer than this gameday's "
                    f"{len(MIGRATIONS)}",
                    where=self.where,
                    hint="upgrade gameday, or use another --history",
                )
            if current == len(MIGRATIONS):
                return
            with self._transaction():
                if self._dialect == "postgresql":  # one migrating process at a time
                    self._execute("SELECT pg_advisory_xact_lock(7250931)")
                if self.version() != current:
                    continue  # another process migrated meanwhile: look again
                if current == 0:
                    self._execute("CREATE TABLE gameday_schema (version INTEGER NOT NULL)")
                for statement in MIGRATIONS[current]:
                    self._execute(statement)
                self._execute("INSERT INTO gameday_schema (version) VALUES (?)", (current + 1,))

    # -- writing ------------------------------------------------------------------------------

    def record_run(self, run: Run) -> None:
        values = {column: getattr(run, column) for column in RUN_COLUMNS}
        values.update(reasons=json.dumps(run.reasons), dry_run=int(run.dry_run))
        with self._transaction():
            self._insert("runs", RUN_COLUMNS, [values[c] for c in RUN_COLUMNS])
            for phase in run.phases:
                row = {column: getattr(phase, column, None) for column in PHASE_COLUMNS}
                row.update(run_id=run.run_id, judged=int(phase.judged))
                row.update(held=None if phase.held is None else int(phase.held))
                self._insert("phases", PHASE_COLUMNS, [row[c] for c in PHASE_COLUMNS])

    def record_suite(self, document: dict[str, Any], report_path: Path | None) -> None:
        suite = document["suite"]
        columns = [
            "run_id",
            "title",
            "file",
            "sha256",
            "started_at",
            "ended_at",
            "verdict",
            "exit_code",
            "report_path",
        ]
        values = [
            document["run_id"],
            suite["title"],
            suite["file"],
            suite["sha256"],
            document["started_at"],
            document["ended_at"],
            document["verdict"],
            document["exit_code"],
            None if report_path is None else str(report_path),
        ]
        with self._transaction():
            self._insert("suites", columns, values)

    def _insert(self, table: str, columns: Sequence[str], values: Sequence[Any]) -> None:
        marks = ", ".join("?" for _ in columns)
        self._execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values)

    # -- reading ------------------------------------------------------------------------------

    def runs(self, experiment: str | Path | None = None, limit: int = 20) -> list[Run]:
        """The latest runs (of one experiment file), newest first."""
        where, parameters = (
            ("WHERE experiment_key = ?", [experiment_key(str(experiment))]) if experiment else ("", [])
        )
        rows = self._execute(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM runs {where} ORDER BY started_at DESC LIMIT ?",
            [*parameters, limit],
        ).fetchall()
        return [self._with_phases(row) for row in rows]

    def run(self, run_id: str) -> Run | None:
        """A run by its id, or by a unique prefix of it."""
        if not re.fullmatch(r"[0-9a-z-]+", run_id):  # what run ids are made of: nothing LIKE reads
            return None
        rows = self._execute(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE run_id LIKE ? ORDER BY started_at DESC LIMIT 2",
            [run_id + "%"],
        ).fetchall()
        if len(rows) != 1:
            exact = [row for row in rows if row[0] == run_id]
            if len(exact) != 1:
                return None
            rows = exact
        return self._with_phases(rows[0])

    def previous(self, run: Run) -> Run | None:
        """The run of the same experiment just before this one."""
        rows = self._execute(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE experiment_key = ? AND started_at < ? "
            "ORDER BY started_at DESC LIMIT 1",
            [run.experiment_key, run.started_at],
        ).fetchall()
        return self._with_phases(rows[0]) if rows else None

    def last_held(self, key: str) -> Run | None:
        """The latest run of the experiment (its experiment_key) that held, dry runs not counted."""
        rows = self._execute(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE experiment_key = ? AND verdict = 'held' "
            "AND dry_run = 0 ORDER BY started_at DESC LIMIT 1",
            [key],
        ).fetchall()
        return self._with_phases(rows[0]) if rows else None

    def _with_phases(self, row: Sequence[Any]) -> Run:
        values = dict(zip(RUN_COLUMNS, row, strict=True))
        phases = self._execute(
            f"SELECT {', '.join(PHASE_COLUMNS[1:])} FROM phases WHERE run_id = ?",
            [values["run_id"]],
        ).fetchall()
        order = {"warmup": 0, "baseline": 1, "fault": 2, "recovery": 3}
        found = []
        for name, judged, held, *rest in phases:
            found.append(Phase(name, bool(judged), None if held is None else bool(held), *rest))
        found.sort(key=lambda phase: order.get(phase.name, len(order)))
        values.update(reasons=json.loads(values["reasons"]), dry_run=bool(values["dry_run"]))
        return Run(**values, phases=tuple(found))


def redact(text: str) -> str:
    """A database URL (or a message quoting one) without its password."""
    text = re.sub(r"(://[^:/@\s]+:)[^@\s]*@", r"\1***@", text)
    return re.sub(r"(password=)[^&\s]*", r"\1***", text)


def experiment_key(file: str) -> str:
    """What makes two runs runs of the same experiment: its file, as `repository/path` inside its
    git repository (the same in every clone named alike, as CI's are), else its absolute path."""
    path = Path(file).resolve()
    top = _git(path.parent, "rev-parse", "--show-toplevel")
    if top is not None:
        try:
            return f"{Path(top).name}/{path.relative_to(Path(top).resolve())}"
        except ValueError:
            pass
    return str(path)


def default_location() -> Path:
    """history.sqlite in gameday's state directory (the one `recover` reads), created if need be."""
    os.close(open_state_dir())
    return state_dir() / "history.sqlite"


def git_commit(file: Path) -> str | None:
    """The commit the experiment file comes from, "+dirty" when it has changed since; None outside git."""
    commit = _git(file.resolve().parent, "rev-parse", "HEAD")
    if commit is None:
        return None
    changed = _git(file.resolve().parent, "status", "--porcelain", "--", file.resolve().name)
    return commit + ("+dirty" if changed else "")


def _git(directory: Path, *arguments: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *arguments], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
