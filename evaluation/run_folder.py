"""One writer per run folder: an OS-level lock held for the whole run, and refusal of folders that are not
run folders.

`claim_run_folder` is what a run (local or on Ray) goes through before it touches a folder: it refuses a
non-empty folder that is not a run folder, takes the folder's lock without waiting (a second run is told who
holds it), opens the episode database for the config (`ResultStore.create`), and, if the run then fails,
removes what it created when no episode was stored, or says how many are stored and that the same command
continues them.

The lock is `fcntl.flock` on ``RUN_DIR/run.lock``: the kernel releases it when the holding process exits,
however it dies, so a killed run never leaves a stale lock. The file also names the holder (pid, host,
start time, command) for the message a second run prints. flock is local to one machine (on NFS it may not
hold across machines): run one command per run folder, as the Ray path does (its driver alone writes).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sim2real_edit.outputs import check_writable_folder

from .config import EvalConfig
from .results import CONFIG_NAME, DATABASE_NAME, ResultStore, check_database_present

logger = logging.getLogger(__name__)

LOCK_NAME = "run.lock"
#: For tests of the one-writer rule: a path. A run that has claimed its folder creates ``<path>.held`` and
#: waits until ``<path>`` exists, so that a test starts a second run while the first one certainly holds the
#: lock, however fast the machine.
HOLD_ENV_VAR = "SIM2REAL_EDIT_HOLD_RUN_FOLDER"
_HOLD_TIMEOUT_S = 600.0
#: Files a failed run that stored no episode leaves, which `claim_run_folder` removes again.
_RUN_FILES = (DATABASE_NAME, f"{DATABASE_NAME}-journal", CONFIG_NAME)


class RunFolderBusyError(RuntimeError):
    """Another process holds the run folder's lock."""


class NotARunFolderError(RuntimeError):
    """The folder holds files but no evaluation run."""


@dataclass
class RunFolderLock:
    """The held lock of one run folder; `release` (or the process's exit) frees it."""

    path: Path
    fd: int

    @classmethod
    def acquire(cls, run_dir: str | Path) -> RunFolderLock:
        """Takes the lock of ``run_dir`` (an existing folder) without waiting; `RunFolderBusyError` names the
        holder if another process has it."""
        path = Path(run_dir) / LOCK_NAME
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunFolderBusyError(
                    f"{run_dir} is in use by another evaluation run ({describe_holder(path)}); one run writes a "
                    "run folder at a time. Wait for it to finish (rerunning its command afterwards continues "
                    "the same run), or pass another --run-dir."
                ) from None
            # A holder that cleaned up its folder may have removed this file after we opened it: lock the
            # file that is at the path now.
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
            path.parent.mkdir(parents=True, exist_ok=True)
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the last descriptor of the open file frees the flock
            self.fd = -1


def describe_holder(lock_path: Path) -> str:
    """Who holds a lock, as its file records it (the holder writes it just after taking the lock)."""
    try:
        holder = json.loads(lock_path.read_text())
        return f"pid {holder['pid']} on {holder['host']}, since {holder['started']}: {holder['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder not recorded yet"


def check_run_folder(run_dir: Path) -> None:
    """Refuses a folder that holds files but no episode database: it is someone else's folder, and a run
    would write its config.json and report files over theirs."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise NotARunFolderError(f"{run_dir} is a file, not a folder; pass a new or empty folder as --run-dir")
    check_database_present(run_dir)
    if (run_dir / DATABASE_NAME).is_file():
        return
    entries = sorted(entry.name for entry in run_dir.iterdir() if entry.name != LOCK_NAME)
    if entries:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise NotARunFolderError(
            f"{run_dir} is not a run folder (it holds {shown} and no {DATABASE_NAME}); a run would write its "
            "config.json and report files there. Pass a new or empty folder as --run-dir."
        )


def check_run_folder_available(run_dir: str | Path) -> None:
    """What `claim_run_folder` would refuse, checked before a run spends minutes loading: a file or a folder
    that is not a run folder, a run folder whose database is lost, a folder another run holds now, or one
    that cannot be written. Only `claim_run_folder` takes the lock for the run."""
    run_dir = Path(run_dir)
    check_writable_folder(run_dir, what=f"--run-dir {run_dir}", fix="pass a new or empty folder as --run-dir")
    check_run_folder(run_dir)
    if run_dir.is_dir():
        RunFolderLock.acquire(run_dir).release()


@contextmanager
def claim_run_folder(run_dir: str | Path, config: EvalConfig) -> Iterator[ResultStore]:
    """The run folder's database for ``config``, with the folder's lock held until the block ends.

    If the block fails (or is interrupted) before the database holds any of this config's episodes, the
    files this run created are removed again (the folder too, if it was new); otherwise the log says how
    many episodes are stored and that the same command continues the run.
    """
    run_dir = Path(run_dir)
    check_run_folder(run_dir)
    folder_existed = run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunFolderLock.acquire(run_dir)
    try:
        check_run_folder(run_dir)  # again, under the lock
        store = ResultStore.create(run_dir, config)
        try:
            _hold_if_asked()
            yield store
        except BaseException:
            _after_failure(run_dir, store, folder_existed)
            raise
    finally:
        lock.release()


def _hold_if_asked() -> None:
    release = os.environ.get(HOLD_ENV_VAR)
    if not release:
        return
    Path(f"{release}.held").write_text(f"{os.getpid()}\n")
    deadline = time.monotonic() + _HOLD_TIMEOUT_S
    while not Path(release).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{HOLD_ENV_VAR}: {release} was not created within {_HOLD_TIMEOUT_S:.0f} s")
        time.sleep(0.01)


def _after_failure(run_dir: Path, store: ResultStore, folder_existed: bool) -> None:
    stored = len(store.done_keys())
    if stored:
        logger.error("the run stopped with %d of %d episodes stored in %s; run the same command again to "
                     "continue it (nothing stored is repeated)", stored, store.config.expected_episodes(),
                     store.path)
        return
    for name in _RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    (run_dir / LOCK_NAME).unlink(missing_ok=True)  # still held: a waiting run re-checks the path (acquire)
    if not folder_existed and not any(run_dir.iterdir()):
        run_dir.rmdir()
    logger.error("the run stopped before storing any episode; removed the run files it had created in %s",
                 run_dir)
