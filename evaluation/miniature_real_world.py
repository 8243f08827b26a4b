"""The CPU experiment's policies and their real world: CNN policies trained by behaviour cloning in the
stand-in's miniature real world (`envs.appearance`, ``appearance="real"``), saved at graded checkpoints of one
training run, and their success rates measured there and written as that world's real-world table.

    from evaluation.miniature_real_world import build_tiny_policies
    built = build_tiny_policies(tiny_home() / "policies")     # cached: reruns skip what exists
    built.checkpoints    # checkpoint folders, least trained first
    built.table          # real_world.yaml in the format of configs/real_world.yaml

Folder layout: ``settings.json`` (what was built; another build is refused), ``demonstrations.npz``,
``checkpoints/<name>/`` (``model.safetensors``, ``config.json``) and ``checkpoints/training_log.jsonl``,
``real_world_run/<name>/`` (each checkpoint's evaluation run folder: ``episodes.sqlite``, resumable) and
``real_world.yaml``; ``timings.json`` holds the wall-clock seconds of each stage and of the whole build, and
the build's CPU seconds (its own and its worker processes'; every process runs one thread).

With ``workers`` > 1 the demonstrations are recorded and the checkpoints measured in that many processes, a
checkpoint's measurement starting as soon as training saves it; the results do not depend on ``workers``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import resource
import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from envs.protocol import protocol_trials
from policies.behaviour_cloning import TrainingSettings, train_behaviour_cloning
from policies.demonstrations import Demonstrations, DemonstrationSettings, collect_demonstrations
from sim2real_edit.real_world import RealWorldSuccess, real_world_success

from .config import UNEDITED, EvalConfig, ExecutionOptions, cnn_policies
from .results import ResultStore, write_text_atomically
from .runner import run_evaluation

logger = logging.getLogger(__name__)

SETTINGS_NAME = "settings.json"
DEMONSTRATIONS_NAME = "demonstrations.npz"
CHECKPOINTS_DIR = "checkpoints"
RUN_DIR = "real_world_run"
TABLE_NAME = "real_world.yaml"
TIMINGS_NAME = "timings.json"
#: The measurement's stand-in: the real appearance, without the segmentation a real camera does not have.
REAL_WORLD_ENV_KWARGS: dict[str, Any] = {"appearance": "real", "add_segmentation": False}


@dataclass(frozen=True)
class RealWorldMeasurement:
    """How the real-world table is measured: the harness's episodes in the miniature real world."""

    trials: tuple[str, ...] = tuple(trial.key for trial in protocol_trials())
    seeds: int = 2
    max_episode_steps: int = 48
    camera: tuple[int, int] = (160, 128)  # the stand-in's (width, height), the tiny preset's
    num_envs: int = 54
    torch_threads: int = 1


@dataclass(frozen=True)
class TinyPolicySettings:
    """Everything `build_tiny_policies` builds; the defaults are the tiny preset's (measured to take about
    three minutes on a quiet 2-core CPU), `small` a version for tests."""

    demonstrations: DemonstrationSettings = field(default_factory=DemonstrationSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    measurement: RealWorldMeasurement = field(default_factory=RealWorldMeasurement)

    @classmethod
    def small(cls) -> TinyPolicySettings:
        """A fast version for tests: three start poses, a short run, one seed."""
        poses = ("a1", "b1", "c1")
        trials = tuple(trial.key for trial in protocol_trials() if trial.pose in poses)
        return cls(
            demonstrations=DemonstrationSettings(trials=trials, noisy_per_trial=2),
            training=TrainingSettings(steps=270),
            measurement=RealWorldMeasurement(trials=trials, seeds=1, num_envs=18),
        )

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


@dataclass(frozen=True)
class TinyPolicies:
    """What `build_tiny_policies` built."""

    folder: Path
    checkpoints: tuple[Path, ...]  # least trained first
    table: Path

    def real_world(self) -> dict[str, RealWorldSuccess]:
        return real_world_success(self.table)


def measurement_config(checkpoints: list[Path], measurement: RealWorldMeasurement) -> EvalConfig:
    """The evaluation config of the real-world measurement: the checkpoints in the miniature real world (the
    ``unedited`` domain of the stand-in with ``appearance="real"``)."""
    return EvalConfig(
        preset="tiny",
        policies=cnn_policies(checkpoints),
        trials=measurement.trials,
        seeds=measurement.seeds,
        styles=(),
        domains=(UNEDITED,),
        max_episode_steps=measurement.max_episode_steps,
        standin_camera=measurement.camera,
        env_kwargs=dict(REAL_WORLD_ENV_KWARGS),
    )


def measure_real_world(
    checkpoints: list[Path], run_dir: str | Path, measurement: RealWorldMeasurement, progress: bool = True
) -> dict[str, RealWorldSuccess]:
    """Runs the checkpoints in the miniature real world through the evaluation harness (resumable in
    ``run_dir``) and returns each one's open and close success rates, keyed by checkpoint folder name."""
    config = measurement_config(checkpoints, measurement)
    options = ExecutionOptions(
        num_envs=measurement.num_envs,
        vectorization_mode="sync",
        torch_threads=measurement.torch_threads,
        progress=progress,
    )
    run_evaluation(config, run_dir, options)
    episodes = ResultStore.open(run_dir).episodes()
    rates = {}
    for policy in config.policies:
        mine = [episode for episode in episodes if episode.policy == policy.name]
        by_action = {action: [e.success for e in mine if e.action == action] for action in ("open", "close")}
        if not all(by_action.values()):
            raise RuntimeError(
                f"{run_dir} lacks {policy.name}'s open or close episodes; rerun to complete it"
            )
        if len(by_action["open"]) != len(by_action["close"]):
            raise RuntimeError(f"{policy.name} has unequal open and close episode counts in {run_dir}")
        rates[policy.name] = RealWorldSuccess(
            open=sum(by_action["open"]) / len(by_action["open"]),
            close=sum(by_action["close"]) / len(by_action["close"]),
            trials=len(by_action["open"]),
            checkpoint=policy.name,
        )
    return rates


def measure_checkpoint(
    checkpoint: Path, run_dir: Path, measurement: RealWorldMeasurement
) -> RealWorldSuccess:
    """One checkpoint's real-world rates, measured in its own run folder (a unit of work for a process)."""
    return measure_real_world([checkpoint], run_dir, measurement, progress=False)[checkpoint.name]


def write_real_world_table(path: str | Path, rates: dict[str, RealWorldSuccess], source: str) -> Path:
    """Writes ``rates`` as a real-world table in the format of ``configs/real_world.yaml`` (read back by
    `sim2real_edit.real_world.real_world_success`)."""
    path = Path(path)
    header = (
        "# Real-world success rates of the CPU experiment's miniature real world (NOT real robots): CNN\n"
        '# policies measured in the drawer stand-in with appearance="real" (envs/appearance.py).\n'
        "# `trials` counts the episodes behind each rate (trials x seeds); `checkpoint` is the policy's folder.\n"
    )
    document = {
        "source": source,
        "policies": {
            name: {
                "open": round(rate.open, 6),
                "close": round(rate.close, 6),
                "trials": rate.trials,
                "checkpoint": rate.checkpoint,
            }
            for name, rate in rates.items()
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, header + yaml.safe_dump(document, sort_keys=False))
    return path


def build_tiny_policies(
    folder: str | Path, settings: TinyPolicySettings | None = None, progress: bool = True, workers: int = 2
) -> TinyPolicies:
    """Builds (or finds, in ``folder``) the CPU experiment's policies: demonstrations in the miniature real
    world, one behaviour-cloning run with graded checkpoints, their real-world success table. Each stage is
    skipped where its output already exists; a folder built with other settings is refused. Training runs in
    this process on ``settings.training.torch_threads`` threads (restored afterwards); demonstrations and
    measurements run in ``workers`` processes (1: all in this process)."""
    import torch

    settings = settings or TinyPolicySettings()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _claim_settings(folder, settings)
    checkpoints_dir = folder / CHECKPOINTS_DIR
    names = [settings.training.checkpoint_name(step) for step in settings.training.checkpoint_steps()]
    checkpoints = tuple(checkpoints_dir / name for name in names)
    table = folder / TABLE_NAME
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.training.torch_threads)
    built_already = table.is_file() and all(checkpoint.is_dir() for checkpoint in checkpoints)
    build_started, children_cpu = time.perf_counter(), _children_cpu_s()
    cpu_started = time.process_time()
    measured: dict[str, Future | RealWorldSuccess] = {}

    def measure(checkpoint: Path) -> None:
        if table.is_file():
            return
        run_dir = folder / RUN_DIR / checkpoint.name
        if executor is None:
            measured[checkpoint.name] = measure_checkpoint(checkpoint, run_dir, settings.measurement)
        else:
            measured[checkpoint.name] = executor.submit(
                measure_checkpoint, checkpoint, run_dir, settings.measurement
            )

    try:
        with _worker_pool(workers) as executor:
            if not all(checkpoint.is_dir() for checkpoint in checkpoints):
                demonstrations_path = folder / DEMONSTRATIONS_NAME
                if demonstrations_path.is_file():
                    demonstrations = Demonstrations.load(demonstrations_path)
                else:
                    with _timed(folder, "demonstrations") as record:
                        demonstrations = collect_demonstrations(settings.demonstrations, progress, executor)
                        demonstrations.save(demonstrations_path)
                        record.update(
                            episodes=demonstrations.episodes_recorded,
                            steps=len(demonstrations),
                            episodes_failed=demonstrations.episodes_failed,
                        )
                with _timed(folder, "training"):
                    train_behaviour_cloning(
                        demonstrations,
                        settings.training,
                        checkpoints_dir,
                        progress,
                        on_checkpoint=measure if executor is not None else None,
                    )
            if not table.is_file():
                with _timed(folder, "real_world_after_training"):
                    for checkpoint in checkpoints:
                        if checkpoint.name not in measured:
                            measure(checkpoint)
                    rates = {}
                    for checkpoint in tqdm(
                        checkpoints, desc="real-world measurement", unit="checkpoint", disable=not progress
                    ):
                        result = measured[checkpoint.name]
                        rates[checkpoint.name] = result.result() if isinstance(result, Future) else result
                    m = settings.measurement
                    source = (
                        f"miniature real world (envs.appearance, appearance=real): {len(m.trials)} trials "
                        f"x {m.seeds} seeds, at most {m.max_episode_steps} steps, camera {m.camera[0]}x"
                        f"{m.camera[1]}; episodes in {RUN_DIR}/<checkpoint>/"
                    )
                    write_real_world_table(table, rates, source)
        if not built_already:
            _record_timing(
                folder,
                "build",
                {
                    "wall_s": round(time.perf_counter() - build_started, 1),
                    "cpu_s": round(time.process_time() - cpu_started + _children_cpu_s() - children_cpu, 1),
                    "workers": workers,
                },
            )
    finally:
        torch.set_num_threads(threads)
    return TinyPolicies(folder, checkpoints, table)


def _children_cpu_s() -> float:
    """CPU seconds of this process's finished child processes (the worker pool, once shut down)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _initialise_worker() -> None:
    import torch

    torch.set_num_threads(1)


@contextlib.contextmanager
def _worker_pool(workers: int) -> Iterator[Executor | None]:
    """``workers`` processes (spawned: nothing of this process's threads or state is inherited), or None."""
    if workers <= 1:
        yield None
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_initialise_worker) as pool:
        yield pool


@contextlib.contextmanager
def _timed(folder: Path, stage: str) -> Iterator[dict[str, Any]]:
    """Records a stage's wall-clock seconds (and what the caller adds) in ``timings.json``."""
    started = time.perf_counter()
    record: dict[str, Any] = {}
    yield record
    _record_timing(folder, stage, {"wall_s": round(time.perf_counter() - started, 1), **record})


def _record_timing(folder: Path, stage: str, values: dict[str, Any]) -> None:
    path = folder / TIMINGS_NAME
    timings = json.loads(path.read_text()) if path.is_file() else {}
    timings[stage] = values
    write_text_atomically(path, json.dumps(timings, indent=2) + "\n")


def _claim_settings(folder: Path, settings: TinyPolicySettings) -> None:
    path = folder / SETTINGS_NAME
    wanted = settings.to_dict()
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored != wanted:
            differing = sorted(key for key in wanted if stored.get(key) != wanted[key])
            raise ValueError(
                f"{folder} holds tiny policies built with other settings (differing: {', '.join(differing)}); "
                "pass another folder, or delete this one to rebuild it"
            )
        return
    write_text_atomically(path, json.dumps(wanted, indent=2) + "\n")
