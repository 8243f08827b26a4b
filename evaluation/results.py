"""The run folder's episode database (SQLite): every finished episode, written the moment it ends.

Each episode is one row, committed in its own transaction, under a unique key (policy, domain, style, URDF
version, seed, trial), so a killed run loses at most the episodes that had not finished and a restarted run
can skip the ones that did. The run's `EvalConfig` is stored in the database once, before any episode, and
never replaced: it is the only truth about what the folder holds. A run with another config is refused, every
row carries the config's hash and is checked against the stored one as it goes in, and readers see only the
stored config's rows (`other_config_rows` counts any others, e.g. from an older harness without locking).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .config import EvalConfig

logger = logging.getLogger(__name__)

DATABASE_NAME = "episodes.sqlite"
CONFIG_NAME = "config.json"
#: What a run writes beside its database (report.py writes the reports): their presence means a run was here.
RESULT_FILES = (CONFIG_NAME, "report.json", "report.md", "report.html")
#: 2: episodes end as in SIMPLER's evaluator (policy terminate or time limit, success at the last step) and
#: carry their robot URDF version and first success step. Version 1 ended an episode at its first success.
#: 3: an episode may be a copy of its seed-0 twin (``repeat_of_seed``, `evaluation.repeats`); a version 2
#: database gains the column (NULL: every stored episode was run) when it is opened.
SCHEMA_VERSION = "3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS episodes (
    policy TEXT NOT NULL,
    domain TEXT NOT NULL,
    style TEXT NOT NULL,
    seed INTEGER NOT NULL,
    task TEXT NOT NULL,
    pose TEXT NOT NULL,
    drawer TEXT NOT NULL,
    action TEXT NOT NULL,
    urdf_version TEXT NOT NULL,
    success INTEGER NOT NULL,
    steps INTEGER NOT NULL,
    first_success_step INTEGER,
    drawer_qpos REAL NOT NULL,
    reset_seed INTEGER NOT NULL,
    wall_s REAL NOT NULL,
    config_hash TEXT NOT NULL,
    repeat_of_seed INTEGER,
    PRIMARY KEY (policy, domain, style, urdf_version, seed, task, pose)
);
"""

EpisodeKey = tuple[str, str, str, str, int, str, str]  # policy, domain, style, urdf_version, seed, task, pose
_KEY_COLUMNS = "policy, domain, style, urdf_version, seed, task, pose"


class ConfigMismatchError(RuntimeError):
    """The run folder holds another evaluation config, or episodes of one."""


class LostDatabaseError(RuntimeError):
    """The run folder holds a run's results, but its episode database is missing or empty."""


def check_database_present(run_dir: Path) -> None:
    """Refuses a run folder whose stored results (config.json, reports) have lost their episode database (it
    is missing or 0 bytes, e.g. after a full disk or a copy that left it out): SQLite would take it as a new
    run and every episode would rerun without a word."""
    results = [name for name in RESULT_FILES if (run_dir / name).is_file()
               and (name != CONFIG_NAME or _holds_run_config(run_dir / name))]
    database = run_dir / DATABASE_NAME
    if not results or (database.is_file() and database.stat().st_size > 0):
        return
    state = "is empty (0 bytes)" if database.is_file() else "is missing"
    raise LostDatabaseError(
        f"{run_dir} holds the results of an evaluation run ({', '.join(results)}), but its episode database "
        f"{database} {state}: the stored episodes are lost, and nothing was changed. Restore {DATABASE_NAME} "
        f"from a copy if you have one; to start the run over, move the folder aside (`mv {run_dir} "
        f"{run_dir}.lost`) and run the same command again, or pass a new --run-dir"
    )


@dataclass(frozen=True)
class EpisodeResult:
    """One finished episode.

    ``style`` is ``""`` in the unedited domain; ``urdf_version`` the robot URDF (`envs.protocol.URDF_VERSIONS`);
    ``seed`` is the seed index; ``success`` is judged at the last step, as SIMPLER's evaluator does; ``steps``
    the env steps taken (to the policy's terminate or the step limit); ``first_success_step`` the first step
    at which the drawer met the success threshold (None if it never did; it may have left it again);
    ``drawer_qpos`` the target drawer's final opening (m); ``wall_s`` the seconds from its batch's reset to
    its last step; ``repeat_of_seed`` is set where the episode was not run but copied from that seed's episode,
    which it repeats exactly (`evaluation.repeats`).
    """

    policy: str
    domain: str
    style: str
    urdf_version: str
    seed: int
    task: str
    pose: str
    drawer: str
    action: str
    success: bool
    steps: int
    first_success_step: int | None
    drawer_qpos: float
    reset_seed: int
    wall_s: float
    config_hash: str
    repeat_of_seed: int | None = None

    @property
    def key(self) -> EpisodeKey:
        return (self.policy, self.domain, self.style, self.urdf_version, self.seed, self.task, self.pose)


_COLUMNS = tuple(f.name for f in fields(EpisodeResult))


class ResultStore:
    """The episode database of one run folder, bound to the `EvalConfig` stored in it.

    Open it with `ResultStore.create` to run (stores the config, or checks it against the stored one) or
    `ResultStore.open` to read a finished or interrupted run. One process writes at a time: the evaluation
    holds the run folder's lock (`run_folder.claim_run_folder`) while it runs.
    """

    def __init__(self, path: Path, config: EvalConfig) -> None:
        self.path = path
        self.config = config

    @classmethod
    def create(cls, run_dir: str | Path, config: EvalConfig) -> ResultStore:
        """The database of ``run_dir`` for ``config``. A new database stores ``config`` before anything else;
        an existing one must hold exactly ``config`` and only its episodes, else `ConfigMismatchError`."""
        run_dir = Path(run_dir)
        check_database_present(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / DATABASE_NAME
        with _connect(path) as connection:
            connection.executescript(_SCHEMA)
            _check_schema(connection, path)
            # INSERT OR IGNORE: the first writer's config stays; a racing writer with another one reads it
            # back below and is refused.
            connection.executemany("INSERT OR IGNORE INTO run (key, value) VALUES (?, ?)", [
                ("schema_version", SCHEMA_VERSION), ("config", _config_json(config)),
                ("config_hash", config.config_hash)])
        with _connect(path) as connection:
            stored = _stored_config(connection, path)
            stored_episodes = connection.execute(
                "SELECT COUNT(*) FROM episodes WHERE config_hash = ?", (stored.config_hash,)).fetchone()[0]
            others = _other_config_rows(connection, stored.config_hash)
        if stored.config_hash != config.config_hash:
            raise ConfigMismatchError(_mismatch_message(run_dir, stored, config, stored_episodes))
        if others:
            raise ConfigMismatchError(
                f"{path} holds {_describe_rows(others)} besides this run's {stored_episodes}, so it cannot be "
                "continued safely (an older harness let two runs write one folder). The report counts only "
                f"config {stored.config_hash}'s episodes; to evaluate, pass a new --run-dir."
            )
        config_file = run_dir / CONFIG_NAME
        if not config_file.is_file() or config_file.read_text() != _config_json(stored, indent=2) + "\n":
            write_text_atomically(config_file, _config_json(stored, indent=2) + "\n")
        return cls(path, stored)

    @classmethod
    def open(cls, run_dir: str | Path) -> ResultStore:
        """The database of an existing run folder, with the config stored in it."""
        check_database_present(Path(run_dir))
        path = Path(run_dir) / DATABASE_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"no episode database at {path}; pass the --run-dir of an evaluation run "
                "(scripts/eval_policies.py writes it there)"
            )
        with _connect(path) as connection:
            _check_schema(connection, path)
            return cls(path, _stored_config(connection, path))

    def add(self, episode: EpisodeResult) -> bool:
        """Commits one episode; returns False (and changes nothing) if its key is already stored. An episode
        of another config than the stored one is refused, checked in the same transaction."""
        values = asdict(episode)
        values["success"] = int(bool(values["success"]))
        with _connect(self.path) as connection:
            cursor = connection.execute(
                f"INSERT OR IGNORE INTO episodes ({', '.join(_COLUMNS)}) "
                f"SELECT {', '.join('?' for _ in _COLUMNS)} "
                "WHERE (SELECT value FROM run WHERE key = 'config_hash') = ?",
                (*(values[name] for name in _COLUMNS), episode.config_hash),
            )
            if cursor.rowcount == 1:
                return True
            stored_hash = connection.execute("SELECT value FROM run WHERE key = 'config_hash'").fetchone()[0]
            if stored_hash != episode.config_hash:
                raise ConfigMismatchError(
                    f"episode of config {episode.config_hash} cannot go into {self.path}, which holds config "
                    f"{stored_hash}"
                )
            existing = connection.execute(
                f"SELECT config_hash FROM episodes WHERE ({_KEY_COLUMNS}) = ({', '.join('?' for _ in episode.key)})",
                episode.key,
            ).fetchone()
            if existing[0] != stored_hash:
                raise ConfigMismatchError(
                    f"{self.path} already holds episode {episode.key} of another config ({existing[0]})"
                )
            return False

    def done_keys(self) -> set[EpisodeKey]:
        with _connect(self.path) as connection:
            rows = connection.execute(
                f"SELECT {_KEY_COLUMNS} FROM episodes WHERE config_hash = ?", (self.config.config_hash,)
            ).fetchall()
        return {(policy, domain, style, urdf, int(seed), task, pose)
                for policy, domain, style, urdf, seed, task, pose in rows}

    def episodes(self) -> list[EpisodeResult]:
        """The stored config's episodes, in key order (rows of any other config are left out)."""
        with _connect(self.path) as connection:
            rows = connection.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM episodes WHERE config_hash = ? ORDER BY {_KEY_COLUMNS}",
                (self.config.config_hash,),
            ).fetchall()
        return [_episode_from_row(row) for row in rows]

    def other_config_rows(self) -> dict[str, int]:
        """Rows whose config hash is not the stored config's, counted by hash (empty in a healthy folder)."""
        with _connect(self.path) as connection:
            return _other_config_rows(connection, self.config.config_hash)


def _episode_from_row(row: tuple) -> EpisodeResult:
    values = dict(zip(_COLUMNS, row))
    values["success"] = bool(values["success"])
    return EpisodeResult(**values)


class DamagedDatabaseError(sqlite3.DatabaseError):
    """The run folder's episode database is not a readable SQLite file."""


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection whose block is one transaction: committed on success, rolled back on an exception."""
    try:
        with closing(sqlite3.connect(path, timeout=60.0)) as connection, connection:
            yield connection
    except sqlite3.DatabaseError as error:
        if isinstance(error, sqlite3.OperationalError) and "malformed" not in str(error):
            raise  # e.g. locked: not damage
        raise DamagedDatabaseError(
            f"the episode database {path} is damaged ({error}). Move it aside (`mv {path} {path}.damaged`) and "
            "run the same command again to redo the run's episodes; `sqlite3 ... .recover` may rescue the "
            "finished ones from the damaged copy"
        ) from error


def _holds_run_config(path: Path) -> bool:
    """Whether `path` is a run's config.json (and not, say, a user's own file of that name)."""
    try:
        EvalConfig.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return False
    return True


def _check_schema(connection: sqlite3.Connection, path: Path) -> None:
    row = connection.execute("SELECT value FROM run WHERE key = 'schema_version'").fetchone()
    has_config = connection.execute("SELECT 1 FROM run WHERE key = 'config'").fetchone() is not None
    if row is not None and row[0] == "2":  # every episode of version 2 was run: the new column stays NULL
        columns = {name for _, name, *_ in connection.execute("PRAGMA table_info(episodes)")}
        if "repeat_of_seed" not in columns:
            connection.execute("ALTER TABLE episodes ADD COLUMN repeat_of_seed INTEGER")
        connection.execute("UPDATE run SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))
        return
    if (row is None and has_config) or (row is not None and row[0] != SCHEMA_VERSION):
        raise ConfigMismatchError(
            f"{path} was written by an older version of the harness (schema {row[0] if row else 1}, this one "
            f"writes {SCHEMA_VERSION}): its episodes ended at the first success instead of SIMPLER's rule "
            "(success at the last step), so they cannot be continued, mixed or re-reported. Its report.md "
            "stays as it was; to evaluate, pass a new --run-dir."
        )


def _stored_config(connection: sqlite3.Connection, path: Path) -> EvalConfig:
    row = connection.execute("SELECT value FROM run WHERE key = 'config'").fetchone()
    if row is None:
        raise ValueError(f"{path} holds no run config; it was not written by scripts/eval_policies.py")
    return EvalConfig.from_dict(json.loads(row[0]))


def _other_config_rows(connection: sqlite3.Connection, config_hash: str) -> dict[str, int]:
    rows = connection.execute(
        "SELECT config_hash, COUNT(*) FROM episodes WHERE config_hash != ? GROUP BY config_hash ORDER BY config_hash",
        (config_hash,),
    ).fetchall()
    return dict(rows)


def _describe_rows(counts: dict[str, int]) -> str:
    return f"{sum(counts.values())} episode(s) of other configs (" + ", ".join(
        f"{config_hash}: {count}" for config_hash, count in counts.items()) + ")"


def write_text_atomically(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file in the same folder and a rename, so that a reader
    (or a concurrent writer) never sees a half-written file."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as scratch:
        scratch.write(text)
    os.replace(scratch.name, path)


def _config_json(config: EvalConfig, indent: int | None = None) -> str:
    return json.dumps(config.to_dict(), sort_keys=True, indent=indent)


def _mismatch_message(run_dir: Path, stored: EvalConfig, requested: EvalConfig, stored_episodes: int) -> str:
    stored_values, requested_values = stored.to_dict(), requested.to_dict()
    differing = [key for key in stored_values if stored_values[key] != requested_values.get(key)]
    details = "; ".join(
        f"{key}: stored {_short(stored_values[key])}, requested {_short(requested_values.get(key))}"
        for key in differing
    )
    empty = (f" It holds no episodes yet: delete {run_dir} to use it for this configuration."
             if not stored_episodes else "")
    return (
        f"{run_dir} holds a run with another configuration (config {stored.config_hash}, requested "
        f"{requested.config_hash}); differences: {details}. To continue that run, repeat its options (its "
        f"config is in {run_dir / CONFIG_NAME}); to evaluate this configuration, pass a new --run-dir.{empty}"
    )


def _short(value: object, limit: int = 120) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
