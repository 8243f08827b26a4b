"""The real-world drawer success rates that simulated rates are compared against (``configs/real_world.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

REAL_WORLD_YAML = Path(__file__).resolve().parents[1] / "configs" / "real_world.yaml"


@dataclass(frozen=True)
class RealWorldSuccess:
    """One policy's real-world success rates on the open- and close-drawer tasks."""

    open: float
    close: float
    trials: int
    checkpoint: str | None = None

    @property
    def average(self) -> float:
        """The open/close-averaged rate, on which SIMPLER computes its "average" metrics."""
        return (self.open + self.close) / 2


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
        missing = {"open", "close", "trials"} - set(entry or {})
        if missing:
            raise ValueError(
                f"real-world entry {name!r} lacks {sorted(missing)}; each policy needs open, close, trials"
            )
        rates = {task: float(entry[task]) for task in ("open", "close")}
        for task, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"real-world {task} rate of {name!r} must lie in [0, 1], got {rate}")
        success[str(name)] = RealWorldSuccess(
            open=rates["open"],
            close=rates["close"],
            trials=int(entry["trials"]),
            checkpoint=entry.get("checkpoint"),
        )
    return success


def checkpoint_policy_names(path: str | Path | None = None) -> dict[str, str]:
    """Checkpoint folder name -> policy name (e.g. ``rt_1_x_tf_trained_for_002272480_step`` -> ``RT-1-X``)."""
    return {
        entry.checkpoint: name
        for name, entry in real_world_success(path).items()
        if entry.checkpoint is not None
    }
