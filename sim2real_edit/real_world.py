"""The real-world drawer success rates that simulated rates are compared against (``configs/real_world.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

REAL_WORLD_YAML = Path(__file__).resolve().parents[1] / "configs" / "real_world.yaml"
#: Real trials behind each of SIMPLER's published rates (9 robot poses x 3 drawers per task and policy): the
#: count a table entry without ``trials`` is read with.
SIMPLER_TRIALS = 27


@dataclass(frozen=True)
class RealWorldSuccess:
    """One policy's real-world success rates on the open- and close-drawer tasks, and the real trials behind
    them: ``trials`` behind each rate, or behind the open rate only where ``close_trials`` is given. The counts
    are data: the agreement intervals redraw each rate as Binomial(trials, rate) / trials."""

    open: float
    close: float
    trials: int = SIMPLER_TRIALS
    checkpoint: str | None = None
    close_trials: int | None = None

    @property
    def average(self) -> float:
        """The open/close-averaged rate, on which SIMPLER computes its "average" metrics."""
        return (self.open + self.close) / 2

    def trials_for(self, task: str) -> int:
        """The real trials behind the ``"open"`` or ``"close"`` rate."""
        if task not in ("open", "close"):
            raise ValueError(f"task must be 'open' or 'close', got {task!r}")
        return self.close_trials if task == "close" and self.close_trials is not None else self.trials


def _read_table(path: str | Path | None) -> dict:
    table_path = Path(path) if path is not None else REAL_WORLD_YAML
    if not table_path.is_file():
        raise FileNotFoundError(
            f"real-world success table not found at {table_path}; pass the path of a real_world.yaml "
            "(the repository keeps one in configs/real_world.yaml)"
        )
    table = yaml.safe_load(table_path.read_text())
    if not isinstance(table, dict) or not isinstance(table.get("policies"), dict):
        # a ValueError: the file's content is the user's input (a TypeError would read as a bug in this code)
        raise ValueError(  # noqa: TRY004
            f"{table_path} must hold a `policies:` mapping of policy name -> open/close/trials")
    return table


def real_world_success(path: str | Path | None = None) -> dict[str, RealWorldSuccess]:
    """Policy name -> real-world open/close/average success, in the table's order."""
    table = _read_table(path)
    success: dict[str, RealWorldSuccess] = {}
    for name, entry in table["policies"].items():
        missing = {"open", "close"} - set(entry or {})
        if missing:
            raise ValueError(
                f"real-world entry {name!r} lacks {sorted(missing)}; each policy needs open and close rates "
                f"(and trials, default {SIMPLER_TRIALS})"
            )
        rates = {task: float(entry[task]) for task in ("open", "close")}
        for task, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"real-world {task} rate of {name!r} must lie in [0, 1], got {rate}")
        open_trials, close_trials = _trial_counts(name, entry.get("trials", SIMPLER_TRIALS))
        success[str(name)] = RealWorldSuccess(
            open=rates["open"],
            close=rates["close"],
            trials=open_trials,
            checkpoint=entry.get("checkpoint"),
            close_trials=None if close_trials == open_trials else close_trials,
        )
    return success


def _trial_counts(name: str, trials: object) -> tuple[int, int]:
    """(open, close) trial counts of an entry's ``trials``: one count for both rates, or ``{open: n, close: m}``."""
    counts = trials if isinstance(trials, dict) else {"open": trials, "close": trials}
    fix = f"write `trials: 27` (both rates) or `trials: {{open: 27, close: 27}}` under {name!r}"
    if set(counts) != {"open", "close"}:
        raise ValueError(f"real-world trials of {name!r} must name open and close, got {sorted(counts)}; {fix}")
    parsed = {}
    for task, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"real-world {task} trials of {name!r} must be a whole number >= 1, got {count!r}; {fix}")
        parsed[task] = count
    return parsed["open"], parsed["close"]


def checkpoint_policy_names(path: str | Path | None = None) -> dict[str, str]:
    """Checkpoint folder name -> policy name (e.g. ``rt_1_x_tf_trained_for_002272480_step`` -> ``RT-1-X``)."""
    return {
        entry.checkpoint: name
        for name, entry in real_world_success(path).items()
        if entry.checkpoint is not None
    }
