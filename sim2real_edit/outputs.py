"""Output folders and files: nothing that exists is replaced unless asked, and files get the usual permissions.

A writer names what it writes into a folder (file names or glob patterns); `check_outputs` refuses a folder
that already holds any of it unless `overwrite` is set, and `remove_outputs` clears exactly that before a
fresh write, so that old and new outputs never mix. Files that the writer does not write are never touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

#: What `sim2real_edit.d3po.train` writes into a specialist folder.
SPECIALIST_OUTPUTS = (
    "checkpoints",
    "specialist_config.json",
    "specialist_weights.safetensors",
    "exemplars",
    "README.md",
    "log.jsonl",
    "training_curves.png",
    "train_config.json",
    "tensorboard",
)
#: What `sim2real_edit.frames.TrainingFrames.save` writes into a frames folder.
FRAME_OUTPUTS = ("*.png", "*.jpg", "*.jpeg", "*.webp", "masks")


class OutputExistsError(FileExistsError):
    """An output folder already holds outputs that a write would replace."""


class UnwritableOutputError(OSError):
    """An output or data folder cannot be written: a file stands where a folder must be, or the filesystem
    refuses writes (read-only, no permission)."""


class NothingToResumeError(FileNotFoundError):
    """A run was asked to continue, but its output folder holds no finished step to continue from."""


def check_writable_folder(folder: str | Path, *, what: str, fix: str) -> None:
    """Fails at once if `folder` (which need not exist yet) could not be created and written, so that a run
    stops before its work instead of after it. `what` names the folder in the message (e.g. "--output
    runs/x"), `fix` says what to do instead. Nothing is created or left behind."""
    folder = Path(folder).expanduser()
    nearest = folder
    while not nearest.is_dir():
        if nearest.exists() or nearest.is_symlink():
            raise UnwritableOutputError(f"{what}: {nearest} is a file, not a folder; {fix}")
        if nearest.parent == nearest:
            break
        nearest = nearest.parent
    try:
        with tempfile.TemporaryFile(dir=nearest):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UnwritableOutputError(f"{what}: cannot write in {nearest} ({reason}); {fix}") from None


def check_writable_file(path: str | Path, *, what: str, fix: str) -> None:
    """Like `check_writable_folder`, for a file to write: it must not be a folder, and its folder must be
    writable."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UnwritableOutputError(f"{what}: {path} is a folder, not a file; {fix}")
    check_writable_folder(path.parent, what=what, fix=fix)


def require_steps_to_resume(output: str | Path) -> None:
    """Refuses to continue a training run whose output folder holds no checkpointed optimizer step: resuming
    would silently start from scratch, e.g. in a mistyped folder."""
    output = Path(output)
    if any((output / "checkpoints").glob("step-*/state.json")):
        return
    if not output.exists():
        raise NothingToResumeError(
            f"--resume: {output} does not exist, so there is no run to continue; check the folder name (pass the "
            "--output of the run to continue), or drop --resume to start a new run there")
    started = existing_outputs(output, SPECIALIST_OUTPUTS)
    if started:
        raise NothingToResumeError(
            f"--resume: {output} holds a run that never finished an optimizer step (no checkpoints/step-*), so "
            "there is nothing to continue; start it again with --overwrite instead of --resume")
    raise NothingToResumeError(
        f"--resume: {output} holds no training run (no checkpoints/step-*); check the folder name (pass the "
        "--output of the run to continue), or drop --resume to start a new run there")


def existing_outputs(folder: str | Path, outputs: Sequence[str]) -> list[Path]:
    """The entries of `folder` that match `outputs` (names or glob patterns), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted({path for pattern in outputs for path in folder.glob(pattern)})


def check_outputs(folder: str | Path, outputs: Sequence[str], *, overwrite: bool, what: str, advice: str) -> None:
    """Raises OutputExistsError if `folder` holds any of `outputs` and `overwrite` is off.

    `what` names the folder's content ("a specialist"), `advice` says how else to proceed.
    """
    if overwrite:
        return
    found = existing_outputs(folder, outputs)
    if found:
        shown = ", ".join(path.name for path in found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise OutputExistsError(
            f"{folder} already holds {what} ({shown}); nothing was changed. Pass --overwrite to replace it, "
            f"{advice}"
        )


def remove_outputs(folder: str | Path, outputs: Sequence[str]) -> list[Path]:
    """Deletes the entries of `folder` that match `outputs`; returns what was deleted."""
    found = existing_outputs(folder, outputs)
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return found


def make_readable(path: str | Path) -> None:
    """Gives a written file the permissions the umask allows (e.g. 0644), as `open()` would: some writers
    (safetensors) create files readable by their owner only."""
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask is a process-wide set, racy with other threads)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
