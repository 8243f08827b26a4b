"""The real trials a simulator saves, over many draws of the paired real sample.

The run's report gives each view's real trials saved from one draw of paired real trials (a third of each
task's, `experiment.real_trial_sample` with the run's seed). That one draw is a coarse measure: another third
of the trials gives other numbers. Here the same estimate (`evaluation.real_episodes.real_success_entries`) is
repeated for ``draws`` other random thirds of the run's real-world episodes, each view's total saved over the
policies recorded per draw, so a view can be compared with the unedited simulator on the same draws.

    python scripts/real_savings.py runs/eval-tiny --draws 300
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evaluation.config import REAL
from evaluation.real_episodes import real_success_entries
from evaluation.report import episodes_by_view
from evaluation.results import ResultStore

from .experiment import real_trial_sample

#: Draw k uses seed FIRST_DRAW_SEED + k, never the run's own sample's seed.
FIRST_DRAW_SEED = 1000


def savings_over_draws(run_dir: str | Path, draws: int = 300, first_seed: int = FIRST_DRAW_SEED
                       ) -> dict[str, np.ndarray]:
    """Per simulated view of the run, the real trials saved (summed over policies, unclaimed savings counting
    0) for each of ``draws`` random paired samples. Needs a run with the miniature's real world."""
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    store = ResultStore.open(run_dir)
    config, episodes = store.config, store.episodes()
    if REAL not in config.domains:
        raise ValueError(f"{run_dir} has no real-world domain: the real trials saved are measured against the "
                         "miniature's real world (a --preset tiny run)")
    views = [(name, domain, chosen) for name, domain, _, chosen in episodes_by_view(config, episodes)
             if domain != REAL]
    real_episodes = [e for e in episodes if e.domain == REAL]
    totals = {name: np.zeros(draws, dtype=int) for name, _, _ in views}
    for draw in range(draws):
        chosen = {trial.key for trial in real_trial_sample(config.trial_list(), seed=first_seed + draw)}
        real: dict[str, dict[str, list[float]]] = {}
        for episode in real_episodes:
            key = f"{episode.task}/{episode.pose}"
            if key in chosen:
                real.setdefault(episode.policy, {}).setdefault(key, []).append(float(episode.success))
        for entry in real_success_entries(config, views, real):
            totals[entry.domain][draw] += entry.estimate.trials_saved or 0
    return totals


def savings_markdown(totals: dict[str, np.ndarray], baseline: str = "unedited") -> str:
    """A table: each view's mean, sd and 5th-95th percentile of real trials saved, and its paired difference
    from ``baseline`` on the same draws with the share of draws where it saves more."""
    draws = len(next(iter(totals.values())))
    lines = [f"Real trials saved over {draws} random paired samples (a third of each task's trials):", "",
             f"| view | mean | sd | 5th-95th percentile | minus {baseline} (mean [5th, 95th]) | draws saving more |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    base = totals.get(baseline)
    for name, values in totals.items():
        sd = f"{values.std(ddof=1):.0f}" if draws > 1 else "-"
        spread = f"{np.percentile(values, 5):.0f}-{np.percentile(values, 95):.0f}"
        if base is None or name == baseline:
            versus = share = "-"
        else:
            difference = values - base
            versus = (f"{difference.mean():+.0f} [{np.percentile(difference, 5):+.0f}, "
                      f"{np.percentile(difference, 95):+.0f}]")
            share = f"{np.mean(difference > 0):.0%}"
        lines.append(f"| {name} | {values.mean():.0f} | {sd} | {spread} | {versus} | {share} |")
    return "\n".join(lines) + "\n"
