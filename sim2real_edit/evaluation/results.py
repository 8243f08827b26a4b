"""The run folder's episode database (SQLite): every finished episode, written the moment it ends.

Each episode is one row, committed in its own transaction, under a unique key (policy, domain, style, seed,
trial), so a killed run loses at most the episodes that had not finished and a restarted run can skip the
ones that did. The run's `EvalConfig` is stored in the database; once it holds episodes, a run with another
config is refused.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .config import EvalConfig

logger = logging.getLogger(__name__)

DATABASE_NAME = "episodes.sqlite"
CONFIG_NAME = "config.json"

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
    success INTEGER NOT NULL,
    steps INTEGER NOT NULL,
    drawer_qpos REAL NOT NULL,
    reset_seed INTEGER NOT NULL,
    wall_s REAL NOT NULL,
    config_hash TEXT NOT NULL,
    PRIMARY KEY (policy, domain, style, seed, task, pose)
);
"""

EpisodeKey = tuple[str, str, str, int, str, str]  # policy, domain, style, seed, task, pose


class ConfigMismatchError(RuntimeError):
    """The run folder holds episodes of another evaluation config."""


@dataclass(frozen=True)
class EpisodeResult:
    """One finished episode.

    ``style`` is ``""`` in the unedited domain; ``seed`` is the seed index; ``steps`` the env steps taken;
    ``drawer_qpos`` the target drawer's final opening (m); ``wall_s`` the seconds from its batch's reset to
    its last step.
    """

    policy: str
    domain: str
    style: str
    seed: int
    task: str
    pose: str
    drawer: str
    action: str
    success: bool
    steps: int
    drawer_qpos: float
    reset_seed: int
    wall_s: float
    config_hash: str

    @property
    def key(self) -> EpisodeKey:
        return (self.policy, self.domain, self.style, self.seed, self.task, self.pose)


_COLUMNS = tuple(f.name for f in fields(EpisodeResult))


class ResultStore:
    """The episode database of one run folder, bound to one `EvalConfig`.

    Open it with `ResultStore.create` to run (stores the config, or checks it against the stored one) or
    `ResultStore.open` to read a finished or interrupted run.
    """

    def __init__(self, path: Path, config: EvalConfig) -> None:
        self.path = path
        self.config = config

    @classmethod
    def create(cls, run_dir: str | Path, config: EvalConfig) -> ResultStore:
        """The database of ``run_dir`` for ``config``; refuses a folder that holds another config's run."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / DATABASE_NAME
        with _connect(path) as connection:
            connection.executescript(_SCHEMA)
            row = connection.execute("SELECT value FROM run WHERE key = 'config'").fetchone()
            stored = EvalConfig.from_dict(json.loads(row[0])) if row is not None else None
            if stored is not None and stored.config_hash != config.config_hash:
                if connection.execute("SELECT COUNT(*) FROM episodes").fetchone()[0]:
                    raise ConfigMismatchError(_mismatch_message(run_dir, stored, config))
                logger.info("%s holds no episodes yet; replacing its config %s by %s",
                            path, stored.config_hash, config.config_hash)
            connection.execute("INSERT OR REPLACE INTO run (key, value) VALUES ('config', ?)", (_config_json(config),))
            connection.execute("INSERT OR REPLACE INTO run (key, value) VALUES ('config_hash', ?)",
                               (config.config_hash,))
        (run_dir / CONFIG_NAME).write_text(_config_json(config, indent=2) + "\n")
        return cls(path, config)

    @classmethod
    def open(cls, run_dir: str | Path) -> ResultStore:
        """The database of an existing run folder, with the config stored in it."""
        path = Path(run_dir) / DATABASE_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"no episode database at {path}; pass the --run-dir of an evaluation run "
                "(scripts/eval_policies.py writes it there)"
            )
        with _connect(path) as connection:
            row = connection.execute("SELECT value FROM run WHERE key = 'config'").fetchone()
        if row is None:
            raise ValueError(f"{path} holds no run config; it was not written by scripts/eval_policies.py")
        return cls(path, EvalConfig.from_dict(json.loads(row[0])))

    def add(self, episode: EpisodeResult) -> bool:
        """Commits one episode; returns False (and changes nothing) if its key is already stored."""
        if episode.config_hash != self.config.config_hash:
            raise ValueError(
                f"episode of config {episode.config_hash} cannot go into a run of config {self.config.config_hash}"
            )
        values = asdict(episode)
        values["success"] = int(bool(values["success"]))
        with _connect(self.path) as connection:
            cursor = connection.execute(
                f"INSERT OR IGNORE INTO episodes ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in _COLUMNS)})",
                tuple(values[name] for name in _COLUMNS),
            )
            return cursor.rowcount == 1

    def done_keys(self) -> set[EpisodeKey]:
        with _connect(self.path) as connection:
            rows = connection.execute("SELECT policy, domain, style, seed, task, pose FROM episodes").fetchall()
        return {(policy, domain, style, int(seed), task, pose) for policy, domain, style, seed, task, pose in rows}

    def episodes(self) -> list[EpisodeResult]:
        """All stored episodes, in key order."""
        with _connect(self.path) as connection:
            rows = connection.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM episodes ORDER BY policy, domain, style, seed, task, pose"
            ).fetchall()
        return [_episode_from_row(row) for row in rows]


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


def _config_json(config: EvalConfig, indent: int | None = None) -> str:
    return json.dumps(config.to_dict(), sort_keys=True, indent=indent)


def _mismatch_message(run_dir: Path, stored: EvalConfig, requested: EvalConfig) -> str:
    stored_values, requested_values = stored.to_dict(), requested.to_dict()
    differing = [key for key in stored_values if stored_values[key] != requested_values.get(key)]
    details = "; ".join(
        f"{key}: stored {_short(stored_values[key])}, requested {_short(requested_values.get(key))}"
        for key in differing
    )
    return (
        f"{run_dir} holds a run with another configuration (config {stored.config_hash}, requested "
        f"{requested.config_hash}); differences: {details}. To continue that run, repeat its options (its "
        f"config is in {run_dir / CONFIG_NAME}); to evaluate this configuration, pass a new --run-dir."
    )


def _short(value: object, limit: int = 120) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
