"""Training checkpoints: the trainable weights and optimizer state of each step, the reference policy's weights,
and the log up to the step; a resumed run restarts from the latest readable one with the same config."""

from __future__ import annotations

import json
import logging
import math
import pickle
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .outputs import make_readable
from .specialist import EditSpecialist

logger = logging.getLogger(__name__)


class Checkpoints:
    """Per-step training state under `folder`, written atomically, so that a killed run resumes exactly.

    A checkpoint that cannot be read back (e.g. truncated by a full disk) is skipped with a warning: the run
    resumes from the newest intact one, and the steps after it are trained again.
    """

    def __init__(self, folder: Path, config_hash: str, keep: int = 2):
        self.folder = folder
        self.config_hash = config_hash
        self.keep = keep

    def steps(self) -> list[int]:
        done = [p for p in self.folder.glob("step-*") if (p / "state.json").is_file()]
        return sorted(int(p.name.split("-")[1]) for p in done)

    def save(self, step: int, model: EditSpecialist, optimizer: torch.optim.Optimizer, log: dict) -> None:
        target = self.folder / f"step-{step:04d}"
        partial = self.folder / f".step-{step:04d}.partial"
        partial.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.trainable_state_dict().items()}
        save_file(tensors, str(partial / "trainable.safetensors"))
        make_readable(partial / "trainable.safetensors")
        torch.save(optimizer.state_dict(), partial / "optimizer.pt")
        state = {"step": step, "config_hash": self.config_hash, "log": log}
        (partial / "state.json").write_text(json.dumps(state, indent=2))
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)
        for old in self.steps()[: -self.keep]:
            shutil.rmtree(self.folder / f"step-{old:04d}")

    def save_reference(self, model: EditSpecialist) -> None:
        path = self.folder / "reference.safetensors"
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            tensors = {k: v.detach().cpu().contiguous() for k, v in model.trainable_state_dict().items()}
            partial = path.with_name(".reference.partial")
            save_file(tensors, str(partial))
            make_readable(partial)
            partial.replace(path)  # a run killed mid-write leaves no half-written reference behind

    def load_reference(self, model: EditSpecialist) -> None:
        """Restores the pre-training weights (the DPO reference) before the first checkpoint is loaded."""
        path = self.folder / "reference.safetensors"
        try:
            tensors = _read_weights(path, model)
        except _UNREADABLE as error:
            raise ValueError(
                f"{path} (the weights before training, which every step is compared with) is unreadable: "
                f"{error}. The run cannot be continued exactly; start it again with --overwrite"
            ) from error
        _copy_weights(tensors, model)

    def load_latest(self, model: EditSpecialist, optimizer: torch.optim.Optimizer) -> tuple[int, list[dict]]:
        """Loads the newest intact checkpoint; returns (next step, log so far)."""
        skipped = []
        for step in reversed(self.steps()):
            folder = self.folder / f"step-{step:04d}"
            try:
                state = json.loads((folder / "state.json").read_text())
                if state["config_hash"] != self.config_hash:
                    raise ConfigChangedError(
                        f"the checkpoints in {self.folder} were written with another configuration "
                        f"(hash {state['config_hash']}, this run {self.config_hash}); resume with the same "
                        "options, or choose a new --output folder"
                    )
                tensors = _read_weights(folder / "trainable.safetensors", model)
                optimizer_state = torch.load(folder / "optimizer.pt", map_location=model.device, weights_only=True)
            except _UNREADABLE as error:
                skipped.append(folder.name)
                logger.warning("checkpoint %s is unreadable (%s: %s); trying the one before it",
                               folder, type(error).__name__, error)
                continue
            _copy_weights(tensors, model)
            optimizer.load_state_dict(optimizer_state)
            if skipped:
                logger.warning("resuming from %s: the later checkpoints %s were unreadable, their steps are "
                               "trained again", folder.name, ", ".join(skipped))
            return state["step"] + 1, self._log_until(state["step"])
        if skipped:
            logger.warning("no checkpoint in %s is readable (%s); training starts again from step 0",
                           self.folder, ", ".join(skipped))
        return 0, []

    def _log_until(self, step: int) -> list[dict]:
        """The log's entries up to `step`: a crash between logging a step and checkpointing it leaves a line
        (possibly half-written) that the rerun writes again."""
        log_path = self.folder.parent / "log.jsonl"
        entries = []
        for line in log_path.read_text().splitlines() if log_path.exists() else []:
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return [entry for entry in entries if entry.get("step", math.inf) <= step]


class ConfigChangedError(ValueError):
    """Checkpoints of another training configuration are in the output folder."""


# What reading a damaged checkpoint raises (truncated zip or safetensors, broken JSON, missing tensors); a
# ConfigChangedError is a ValueError but never means damage, so it is raised through.
_UNREADABLE = (OSError, EOFError, RuntimeError, pickle.UnpicklingError, SafetensorError, KeyError,
               json.JSONDecodeError)


def _read_weights(path: Path, model: EditSpecialist) -> dict[str, torch.Tensor]:
    """The trainable tensors in `path`, checked against `model`'s (a KeyError names what does not fit)."""
    tensors = load_file(str(path))
    for key, value in model.trainable_state_dict().items():
        if key not in tensors or tensors[key].shape != value.shape:
            raise KeyError(f"{path.name} lacks {key} of shape {tuple(value.shape)}")
    return tensors


def _copy_weights(tensors: dict[str, torch.Tensor], model: EditSpecialist) -> None:
    with torch.no_grad():
        for key, value in model.trainable_state_dict().items():
            value.copy_(tensors[key])
