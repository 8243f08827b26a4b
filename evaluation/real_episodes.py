"""Real-world episodes of some of a run's trials (``--real-episodes FILE.csv``), and the report's estimates of
each policy's real success from them and the run's sim episodes (`sim2real_edit.real_success`).

The CSV has a header and one row per real episode::

    policy,task,trial,outcome
    rt_1_tf_trained_for_000400120,OpenTopDrawer,a0,1
    RT-1 (Converged),CloseMiddleDrawer,CloseMiddleDrawer/b1,0

- ``policy``: a policy of the run (its name, e.g. the checkpoint folder, or its row of the real-world table);
- ``task``: a drawer task (``OpenTopDrawer``, ``open_top``, or SIMPLER's env id);
- ``trial``: the robot start pose (``a0`` ... ``c2``), or the trial key ``Task/pose``;
- ``outcome``: 1 or 0 (also true/false, success/failure).

Several rows of one policy and trial are several real episodes of it (their mean is the trial's real outcome).
Every trial must be one of the run's trials, so that the simulator ran it: that pairs sim and real. The file is
copied into the run folder (``real_episodes.csv``), so the report rebuilt from the folder keeps the estimates.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs.protocol import DrawerTask, check_pose
from sim2real_edit.real_success import RealSuccessEstimate, estimate_real_success

from .config import REAL, EvalConfig
from .results import EpisodeResult

REAL_EPISODES_CSV = "real_episodes.csv"
CSV_COLUMNS = ("policy", "task", "trial", "outcome")
_OUTCOMES = {"1": 1.0, "0": 0.0, "true": 1.0, "false": 0.0, "success": 1.0, "failure": 0.0}


@dataclass(frozen=True)
class RealEpisodeRow:
    """One row of the CSV: ``line`` is its line in the file (the header is line 1)."""

    line: int
    policy: str
    trial: str  # the trial key, Task/pose
    outcome: float


def parse_real_episodes(path: str | Path) -> list[RealEpisodeRow]:
    """The rows of a real-episodes CSV, checked for form (header, task, pose, outcome); errors name the line
    and the fix. Which policies and trials a run has is checked by `match_real_episodes`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--real-episodes {path}: no such file; pass a CSV of real episodes with the header "
                                f"{','.join(CSV_COLUMNS)}")
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text))
    header = [name.strip().lower() for name in next(reader, [])]
    missing = [name for name in CSV_COLUMNS if name not in header]
    if missing:
        raise ValueError(f"{path} line 1: the header must name the columns {','.join(CSV_COLUMNS)} (any order); "
                         f"missing {', '.join(missing)} in {header or 'an empty file'}. Add the header line "
                         f"`{','.join(CSV_COLUMNS)}`")
    where = {name: header.index(name) for name in CSV_COLUMNS}
    rows = []
    for line, fields in enumerate(reader, start=2):
        if not fields or all(not field.strip() for field in fields):
            continue
        if len(fields) != len(header):
            raise ValueError(f"{path} line {line}: {len(fields)} field(s) where the header has {len(header)} "
                             f"({','.join(header)}); write one real episode per line, e.g. "
                             "`RT-1-X,OpenTopDrawer,a0,1`")
        value = {name: fields[index].strip() for name, index in where.items()}
        rows.append(RealEpisodeRow(line, value["policy"], _trial_key(path, line, value), _outcome(path, line, value)))
    if not rows:
        raise ValueError(f"{path} holds no real episodes: add one line per episode under the header, e.g. "
                         "`RT-1-X,OpenTopDrawer,a0,1`")
    return rows


def _trial_key(path: Path, line: int, value: dict[str, str]) -> str:
    try:
        task = DrawerTask.parse(value["task"])
    except ValueError as error:
        raise ValueError(f"{path} line {line}: {error}") from None
    task_of_trial, _, pose = value["trial"].rpartition("/")
    if task_of_trial:
        try:
            named = DrawerTask.parse(task_of_trial)
        except ValueError as error:
            raise ValueError(f"{path} line {line}: trial {value['trial']!r}: {error}") from None
        if named != task:
            raise ValueError(f"{path} line {line}: trial {value['trial']!r} is of task {named.name}, but the task "
                             f"column says {task.name}; make them agree, or write only the pose (e.g. `{pose}`)")
    try:
        check_pose(pose)
    except ValueError as error:
        raise ValueError(f"{path} line {line}: trial {value['trial']!r}: {error}; write the start pose (a0 ... c2) "
                         "or Task/pose") from None
    return f"{task.name}/{pose}"


def _outcome(path: Path, line: int, value: dict[str, str]) -> float:
    outcome = _OUTCOMES.get(value["outcome"].lower())
    if outcome is None:
        raise ValueError(f"{path} line {line}: outcome {value['outcome']!r} must be 1 (success) or 0 (failure)")
    return outcome


def match_real_episodes(rows: list[RealEpisodeRow], config: EvalConfig,
                        path: str | Path = REAL_EPISODES_CSV) -> dict[str, dict[str, list[float]]]:
    """``real[policy name][trial key]``: the real outcomes, keyed like the run's episodes. Each row's policy
    must be a policy of ``config`` (by name, or by its real-world table row where that names one policy) and
    its trial one of the run's trials; the first row that is not names itself and the fix."""
    names = {policy.name: policy.name for policy in config.policies}
    by_table_row: dict[str, list[str]] = {}
    for policy in config.policies:
        if policy.real_world_name is not None:
            by_table_row.setdefault(policy.real_world_name, []).append(policy.name)
    trials = set(config.trials)
    real: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        name = names.get(row.policy)
        if name is None and len(by_table_row.get(row.policy, [])) == 1:
            name = by_table_row[row.policy][0]
        if name is None:
            raise ValueError(f"{path} line {row.line}: policy {row.policy!r} is not a policy of this run; use one of "
                             f"{sorted(names)} (or their real-world rows {sorted(by_table_row)})")
        if row.trial not in trials:
            raise ValueError(f"{path} line {row.line}: trial {row.trial} is not one of this run's {len(trials)} "
                             "trials, so the simulator has no episode to pair it with; drop the line or run that "
                             "trial (--trials)")
        real.setdefault(name, {}).setdefault(row.trial, []).append(row.outcome)
    return real


def read_real_episodes(path: str | Path, config: EvalConfig) -> dict[str, dict[str, list[float]]]:
    """`parse_real_episodes` then `match_real_episodes`."""
    return match_real_episodes(parse_real_episodes(path), config, path)


@dataclass(frozen=True)
class RealSuccessEntry:
    """One policy's real success estimated from one view's sim episodes (see `sim2real_edit.real_success`)."""

    domain: str  # the report's view name, e.g. "unedited" or "edited/wood"
    real_world_name: str | None
    estimate: RealSuccessEstimate

    def to_json(self) -> dict[str, Any]:
        return {"domain": self.domain, "real_world_name": self.real_world_name, **self.estimate.to_json()}


def real_success_entries(config: EvalConfig, views: list[tuple[str, str, list[EpisodeResult]]],
                         real: dict[str, dict[str, list[float]]], alpha: float = 0.05) -> list[RealSuccessEntry]:
    """Per view (name, domain, its episodes; the run's real-world domain left out) and per policy with real
    episodes, the prediction-powered estimate from the view's sim episodes of every trial. A (view, policy) that
    lacks sim episodes of a paired trial (a run in progress) or has fewer than 2 paired trials is left out."""
    real_names = {policy.name: policy.real_world_name for policy in config.policies}
    entries = []
    for name, domain, episodes in views:
        if domain == REAL:
            continue
        sim: dict[str, dict[str, list[bool]]] = {}
        for episode in episodes:
            sim.setdefault(episode.policy, {}).setdefault(f"{episode.task}/{episode.pose}", []).append(episode.success)
        for policy, trials in real.items():
            if len(trials) < 2 or not all(trial in sim.get(policy, {}) for trial in trials):
                continue
            (estimate,) = estimate_real_success({policy: sim[policy]}, {policy: trials}, alpha=alpha).values()
            entries.append(RealSuccessEntry(name, real_names.get(policy), estimate))
    return entries
