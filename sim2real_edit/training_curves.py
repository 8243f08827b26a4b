"""A training run's curves from its log (`log.jsonl`): batch-mean scores, loss, how far the policy moved
from the reference, gradient norms."""

from __future__ import annotations

import json
from pathlib import Path

# (panel title, log keys drawn in it)
PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("structure score (lower = better)", ("structure",)),
    ("semantic score (lower = better)", ("semantic",)),
    ("DPO loss", ("loss",)),
    ("policy vs reference", ("mean_abs_log_ratio", "clamped_fraction")),
    ("gradient norm (before clipping)", ("grad_norm",)),
)


def read_log(path: str | Path) -> list[dict]:
    """The entries of a run's `log.jsonl` (a run folder or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "log.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no training log at {path}; pass a folder written by train_specialist.py")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def training_figure(log: list[dict]):
    """A matplotlib figure with one panel per entry of PANELS, steps on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not log:
        raise ValueError("the training log is empty: no optimizer step has finished yet")
    steps = [entry["step"] for entry in log]
    figure, axes = plt.subplots(1, len(PANELS), figsize=(3.6 * len(PANELS), 3.2))
    for ax, (title, keys) in zip(axes, PANELS):
        for key in keys:
            if all(key in entry for entry in log):
                ax.plot(steps, [entry[key] for entry in log], marker="o", label=key)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(keys) > 1:
            ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def save_training_curves(log: list[dict], path: str | Path) -> Path:
    """Writes the figure as a PNG and returns its path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    figure = training_figure(log)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
