"""The CPU experiment's policies and their real world: a family of CNN policies trained by behaviour cloning
in the stand-in's miniature real world (`envs.appearance`, ``appearance="real"``), each run saved at graded
checkpoints; every candidate's success measured there on seeds of its own, a subset chosen by a rule fixed
in advance, and the chosen ones written as that world's real-world table.

    from miniature.policy_family import build_tiny_policies
    built = build_tiny_policies(tiny_home() / "policies")     # cached: reruns skip what exists
    built.candidates     # every checkpoint folder of every run, least trained first
    built.checkpoints    # the selected ones, least trained first (training step, then run)
    built.table          # real_world.yaml of the selected ones, in the format of configs/real_world.yaml
    built.selection      # selection.json: the rule, every candidate's rates, kept or dropped and why

The family (`family_runs`): runs that differ in seed (initial weights, batches, augmentation draws) AND in
augmentation strength (0, 1 and 2 times the default shift, brightness and pixel noise). Augmentation rather
than network width, because the stand-in's sim-to-real gap is one of appearance (the cabinet's colour and
shading): the augmentation strength sets how much a policy's actions hang on exact colours and brightness, so
runs that differ in it should carry over from real to sim differently, which is the spread a sim-vs-real
ranking needs; width mostly moves a policy's skill, which the graded checkpoints already spread.

The selection (`SelectionRule`) was written before any edited result and reads real-world results only:
keep the candidates whose real average success lies in [0.1, 0.95] (one that fails or succeeds almost
everywhere cannot be ranked against the others), and at least 8 (where fewer qualify, the nearest to the
interval). Selection is measured on seed indices from ``RealWorldMeasurement.seed_offset`` (1000) on, which the
evaluation, running seed indices 0 .. seeds-1, never uses: the choice of policies does not depend on the
episodes that later judge them.

Folder layout: ``settings.json`` (what was built; another build is refused), ``demonstrations.npz``,
``checkpoints/<name>/`` (``model.safetensors``, ``config.json``) and one ``checkpoints/<run>.training_log.jsonl``
per run, ``real_world_run/<name>/episodes.json`` (each candidate's measured episodes, with their seed indices
and reset seeds), ``selection.json`` and ``real_world.yaml``; ``timings.json`` holds the wall-clock seconds of
each stage and of the whole build (per run: its training's wall and CPU seconds), and the build's CPU seconds
(its own and its worker processes'; every process runs one thread).

``TinyPolicySettings.material`` is the real cabinet's style (white marble unless chosen): the demonstrations are
recorded and the candidates measured in that real world. White marble is left out of ``settings.json`` and the
measurements' claims, so that they match what was stored before the material was a choice.

With ``workers`` > 1 the demonstrations are recorded, the runs trained and the checkpoints measured in that many
processes, a run's checkpoints measured as soon as it is trained; the results do not depend on ``workers``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import resource
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from envs.appearance import REAL_CABINET_STYLE, real_material_style
from envs.protocol import protocol_trials
from evaluation.config import UNEDITED, EvalConfig, ExecutionOptions, cnn_policies
from evaluation.results import write_text_atomically
from evaluation.runner import PendingEpisode, load_process_policies, make_domain_env, run_batch
from policies.cnn import CNNPolicyConfig
from sim2real_edit.real_world import RealWorldSuccess, real_world_success

from .behaviour_cloning import TrainingSettings, augmentation_scaled, train_behaviour_cloning
from .demonstrations import Demonstrations, DemonstrationSettings, collect_demonstrations

logger = logging.getLogger(__name__)

SETTINGS_NAME = "settings.json"
DEMONSTRATIONS_NAME = "demonstrations.npz"
CHECKPOINTS_DIR = "checkpoints"
RUN_DIR = "real_world_run"
EPISODES_NAME = "episodes.json"
SELECTION_NAME = "selection.json"
TABLE_NAME = "real_world.yaml"
TIMINGS_NAME = "timings.json"
#: The measurement's stand-in: the real appearance, without the segmentation a real camera does not have.
REAL_WORLD_ENV_KWARGS: dict[str, Any] = {"appearance": "real", "add_segmentation": False}
#: The first seed index of the selection measurement: far above any evaluation's ``seeds`` (the tiny preset: 3).
SELECTION_SEED_OFFSET = 1000
#: Augmentation strengths of the family's runs, as multiples of `TrainingSettings`' defaults; run i has seed i.
FAMILY_AUGMENTATION: tuple[float, ...] = (0.0, 1.0, 2.0)


@dataclass(frozen=True)
class RealWorldMeasurement:
    """How the real-world rates are measured: the harness's episodes in the miniature real world, on seed
    indices ``seed_offset .. seed_offset + seeds - 1`` of every trial."""

    trials: tuple[str, ...] = tuple(trial.key for trial in protocol_trials())
    seeds: int = 2
    seed_offset: int = SELECTION_SEED_OFFSET
    max_episode_steps: int = 48
    camera: tuple[int, int] = (160, 128)  # the stand-in's (width, height), the tiny preset's
    num_envs: int = 54
    torch_threads: int = 1
    material: str = REAL_CABINET_STYLE  # the real cabinet's style (configs/styles.yaml)

    def __post_init__(self) -> None:
        if self.seeds < 1 or self.seed_offset < 0:
            raise ValueError(
                f"a measurement needs seeds >= 1 and seed_offset >= 0, got seeds={self.seeds}, "
                f"seed_offset={self.seed_offset}"
            )
        object.__setattr__(self, "material", real_material_style(self.material))

    def seed_indices(self) -> range:
        return range(self.seed_offset, self.seed_offset + self.seeds)

    def env_kwargs(self) -> dict[str, Any]:
        """The stand-in's keyword arguments of the measurement: the real appearance in this material."""
        return {**REAL_WORLD_ENV_KWARGS, **real_material_env_kwargs(self.material)}

    def to_dict(self) -> dict[str, Any]:
        """The measurement as JSON values; white marble (the default) is left out, so that what the measurements
        of white marble stored before the material was a choice still matches."""
        return _without_default_material(json.loads(json.dumps(asdict(self))))


def real_material_env_kwargs(material: str) -> dict[str, str]:
    """``env_kwargs`` that make the stand-in's real world (and its instruments) of ``material``: none for white
    marble, so that its configs (and their hashes) are those of before the material was a choice."""
    material = real_material_style(material)
    return {} if material == REAL_CABINET_STYLE else {"real_material": material}


def _without_default_material(values: dict[str, Any]) -> dict[str, Any]:
    if values.get("material") == REAL_CABINET_STYLE:
        del values["material"]
    return values


@dataclass(frozen=True)
class SelectionRule:
    """Which candidates the experiment keeps, from their real-world rates only (see the module docstring)."""

    min_average: float = 0.1
    max_average: float = 0.95
    at_least: int = 8

    def __post_init__(self) -> None:
        if not 0 <= self.min_average <= self.max_average <= 1 or self.at_least < 1:
            raise ValueError(
                "a selection rule needs 0 <= min_average <= max_average <= 1 and at_least >= 1, got "
                f"{self.min_average}, {self.max_average}, {self.at_least}"
            )

    def statement(self) -> str:
        return (
            f"keep every candidate whose real-world average success (open and close averaged) lies in "
            f"[{self.min_average}, {self.max_average}]; where fewer than {self.at_least} do, also keep the "
            f"candidates nearest that interval (nearer first, then less trained) until {self.at_least} are kept"
        )

    def apply(self, rates: dict[str, RealWorldSuccess]) -> dict[str, tuple[bool, str]]:
        """Each candidate's (kept, reason), in the order of ``rates`` (least trained first)."""
        decisions: dict[str, tuple[bool, str]] = {}
        outside: list[tuple[float, int, str]] = []
        for order, (name, rate) in enumerate(rates.items()):
            average = rate.average
            if average < self.min_average:
                decisions[name] = (False, f"average {average:.3f} below {self.min_average}: fails almost everywhere")
                outside.append((self.min_average - average, order, name))
            elif average > self.max_average:
                decisions[name] = (False, f"average {average:.3f} above {self.max_average}: succeeds almost everywhere")
                outside.append((average - self.max_average, order, name))
            else:
                decisions[name] = (True, f"average {average:.3f} in [{self.min_average}, {self.max_average}]")
        missing = self.at_least - sum(kept for kept, _ in decisions.values())
        for distance, _, name in sorted(outside)[: max(missing, 0)]:
            decisions[name] = (True, f"{decisions[name][1]}; kept to reach {self.at_least} (outside by {distance:.3f})")
        return decisions


def family_runs(
    steps: int = 1200, augmentation: tuple[float, ...] = FAMILY_AUGMENTATION
) -> tuple[TrainingSettings, ...]:
    """The family's behaviour-cloning runs: run i has seed i (its initial weights too) and the default
    augmentation times ``augmentation[i]``; named ``cnn-bc-aug<factor>-s<seed>``."""
    return tuple(
        augmentation_scaled(
            TrainingSettings(
                steps=steps, seed=seed, name_prefix=f"cnn-bc-aug{factor:g}-s{seed}", policy=CNNPolicyConfig(seed=seed)
            ),
            factor,
        )
        for seed, factor in enumerate(augmentation)
    )


@dataclass(frozen=True)
class TinyPolicySettings:
    """Everything `build_tiny_policies` builds; the defaults are the tiny preset's (measured: 244 CPU seconds
    with 2 workers, 3 runs x 4 checkpoints, so about 2-3 minutes on a quiet 2-core CPU), `small` a version for
    tests."""

    demonstrations: DemonstrationSettings = field(default_factory=DemonstrationSettings)
    runs: tuple[TrainingSettings, ...] = field(default_factory=family_runs)
    measurement: RealWorldMeasurement = field(default_factory=RealWorldMeasurement)
    selection: SelectionRule = field(default_factory=SelectionRule)
    #: The real cabinet's style: the demonstrations are recorded and the candidates measured in that real world
    #: (the measurement takes it from here).
    material: str = REAL_CABINET_STYLE

    def __post_init__(self) -> None:
        prefixes = [run.name_prefix for run in self.runs]
        if not prefixes or len(set(prefixes)) != len(prefixes):
            raise ValueError(f"give at least one run, each with its own name_prefix; got {prefixes}")
        object.__setattr__(self, "material", real_material_style(self.material))
        object.__setattr__(self, "measurement", replace(self.measurement, material=self.material))

    @classmethod
    def small(cls) -> TinyPolicySettings:
        """A fast version for tests: three start poses, two short runs (no and default augmentation), one seed."""
        poses = ("a1", "b1", "c1")
        trials = tuple(trial.key for trial in protocol_trials() if trial.pose in poses)
        return cls(
            demonstrations=DemonstrationSettings(trials=trials, noisy_per_trial=2),
            runs=family_runs(steps=270, augmentation=(0.0, 1.0)),
            measurement=RealWorldMeasurement(trials=trials, seeds=1, num_envs=18),
            selection=SelectionRule(at_least=4),
        )

    def candidate_names(self) -> list[str]:
        """Every run's checkpoint names, least trained first (training step, then run)."""
        steps = [(step, index, run.checkpoint_name(step)) for index, run in enumerate(self.runs)
                 for step in run.checkpoint_steps()]
        return [name for _, _, name in sorted(steps)]

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON values (``settings.json``); white marble is left out, as in
        `RealWorldMeasurement.to_dict`."""
        values = _without_default_material(json.loads(json.dumps(asdict(self))))
        values["measurement"] = self.measurement.to_dict()
        return values


@dataclass(frozen=True)
class TinyPolicies:
    """What `build_tiny_policies` built."""

    folder: Path
    candidates: tuple[Path, ...]  # every run's checkpoints, least trained first
    checkpoints: tuple[Path, ...]  # the selected candidates, least trained first
    table: Path  # the selected ones' real-world rates
    selection: Path

    def real_world(self) -> dict[str, RealWorldSuccess]:
        return real_world_success(self.table)


@dataclass(frozen=True)
class MeasuredEpisode:
    """One real-world episode of a measurement."""

    policy: str
    trial: str
    seed: int  # the seed index
    reset_seed: int
    action: str
    success: bool
    steps: int


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
        env_kwargs=measurement.env_kwargs(),
    )


def measure_real_world(
    checkpoints: list[Path], run_dir: str | Path, measurement: RealWorldMeasurement, progress: bool = True
) -> dict[str, RealWorldSuccess]:
    """Runs the checkpoints in the miniature real world on the measurement's seed indices, with the harness's
    episode loop (`evaluation.runner.run_batch`), and returns each one's open and close success rates, keyed by
    checkpoint folder name. The episodes are kept in ``run_dir/episodes.json``; a second call with the same
    checkpoints and measurement reads them back, one with others is refused."""
    path = Path(run_dir) / EPISODES_NAME
    names = [Path(checkpoint).name for checkpoint in checkpoints]
    claim = {"measurement": measurement.to_dict(), "policies": names}
    if path.is_file():
        stored = json.loads(path.read_text())
        if {key: stored[key] for key in claim} != claim:
            raise ValueError(
                f"{path} holds a measurement of other checkpoints or settings; pass another run_dir or delete it"
            )
        episodes = [MeasuredEpisode(**episode) for episode in stored["episodes"]]
    else:
        episodes = _run_episodes(list(checkpoints), measurement, progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {**claim, "episodes": [asdict(episode) for episode in episodes]}
        write_text_atomically(path, json.dumps(document, indent=1) + "\n")
    return {name: _rates(name, [episode for episode in episodes if episode.policy == name]) for name in names}


def read_measured_episodes(run_dir: str | Path) -> list[MeasuredEpisode]:
    """The episodes `measure_real_world` kept in ``run_dir``."""
    document = json.loads((Path(run_dir) / EPISODES_NAME).read_text())
    return [MeasuredEpisode(**episode) for episode in document["episodes"]]


def _run_episodes(checkpoints: list[Path], measurement: RealWorldMeasurement, progress: bool) -> list[MeasuredEpisode]:
    config = measurement_config(checkpoints, measurement)
    options = ExecutionOptions(
        num_envs=measurement.num_envs, vectorization_mode="sync", torch_threads=measurement.torch_threads
    )
    (domain, style), urdf_version = config.domain_styles()[0], config.urdf_versions[0]
    trials = config.trial_list()
    num_envs = min(measurement.num_envs, len(trials) * measurement.seeds)
    policies = load_process_policies(config, options, {spec.name for spec in config.policies})
    env = make_domain_env(config, options, domain, style, urdf_version, num_envs)
    episodes: list[MeasuredEpisode] = []
    total = len(config.policies) * len(trials) * measurement.seeds
    try:
        with tqdm(total=total, unit="episode", desc="real-world episodes", disable=not progress) as bar:
            for spec in config.policies:
                pending = [
                    PendingEpisode(spec, domain, style, urdf_version, seed, trial)
                    for seed in measurement.seed_indices()
                    for trial in trials
                ]
                for start in range(0, len(pending), num_envs):
                    for result in run_batch(env, policies[spec.name], pending[start : start + num_envs], config):
                        episodes.append(
                            MeasuredEpisode(
                                policy=result.policy,
                                trial=f"{result.task}/{result.pose}",
                                seed=result.seed,
                                reset_seed=result.reset_seed,
                                action=result.action,
                                success=result.success,
                                steps=result.steps,
                            )
                        )
                        bar.update(1)
    finally:
        env.close()
    order = {trial.key: index for index, trial in enumerate(trials)}
    policy_order = {spec.name: index for index, spec in enumerate(config.policies)}
    return sorted(episodes, key=lambda e: (policy_order[e.policy], e.seed, order[e.trial]))


def _rates(name: str, episodes: list[MeasuredEpisode]) -> RealWorldSuccess:
    by_action = {action: [e.success for e in episodes if e.action == action] for action in ("open", "close")}
    if not all(by_action.values()) or len(by_action["open"]) != len(by_action["close"]):
        raise RuntimeError(
            f"{name} needs as many open as close episodes, got {len(by_action['open'])} and "
            f"{len(by_action['close'])}; measure it on trials of both actions"
        )
    return RealWorldSuccess(
        open=sum(by_action["open"]) / len(by_action["open"]),
        close=sum(by_action["close"]) / len(by_action["close"]),
        trials=len(by_action["open"]),
        checkpoint=name,
    )


def measure_checkpoint(
    checkpoint: Path, run_dir: Path, measurement: RealWorldMeasurement
) -> RealWorldSuccess:
    """One checkpoint's real-world rates, measured in its own run folder (a unit of work for a process)."""
    return measure_real_world([checkpoint], run_dir, measurement, progress=False)[checkpoint.name]


def train_run(demonstrations_path: Path, run: TrainingSettings, checkpoints_dir: Path) -> dict[str, float]:
    """One behaviour-cloning run of the family (a unit of work for a process); its wall and CPU seconds."""
    started, cpu_started = time.perf_counter(), time.process_time()
    train_behaviour_cloning(Demonstrations.load(demonstrations_path), run, checkpoints_dir, progress=False)
    return {"wall_s": round(time.perf_counter() - started, 1), "cpu_s": round(time.process_time() - cpu_started, 1)}


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


def write_selection(
    path: str | Path, settings: TinyPolicySettings, rates: dict[str, RealWorldSuccess], source: str
) -> dict[str, tuple[bool, str]]:
    """Applies ``settings.selection`` to ``rates`` (every candidate, least trained first) and writes the rule,
    every candidate's rates and the reason it is kept or dropped to ``path``; returns the decisions."""
    decisions = settings.selection.apply(rates)
    runs = {run.checkpoint_name(step): (run.name_prefix, step) for run in settings.runs for step in run.checkpoint_steps()}
    document = {
        "rule": {**asdict(settings.selection), "statement": settings.selection.statement()},
        "decided": "before any edited evaluation, from real-world rates only",
        "measurement": source,
        "order": "least trained first (training step, then run)",
        "candidates": [
            {
                "name": name,
                "run": runs[name][0],
                "training_step": runs[name][1],
                "open": round(rate.open, 6),
                "close": round(rate.close, 6),
                "average": round(rate.average, 6),
                "episodes_per_action": rate.trials,
                "selected": decisions[name][0],
                "reason": decisions[name][1],
            }
            for name, rate in rates.items()
        ],
        "selected": [name for name in rates if decisions[name][0]],
    }
    write_text_atomically(Path(path), json.dumps(document, indent=2) + "\n")
    return decisions


def read_selected(path: str | Path) -> list[str]:
    """The names `write_selection` kept, in its order."""
    return list(json.loads(Path(path).read_text())["selected"])


def build_tiny_policies(
    folder: str | Path, settings: TinyPolicySettings | None = None, progress: bool = True, workers: int = 2
) -> TinyPolicies:
    """Builds (or finds, in ``folder``) the CPU experiment's policies: demonstrations in the miniature real
    world, the family's behaviour-cloning runs with graded checkpoints, every candidate's real-world rates, the
    selection and the selected ones' real-world table. Each stage is skipped where its output already exists;
    a folder built with other settings is refused. Runs and measurements go to ``workers`` processes (1: all
    in this process, training on ``torch_threads`` of each run; the thread count is restored afterwards)."""
    import torch

    settings = settings or TinyPolicySettings()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _claim_settings(folder, settings)
    checkpoints_dir = folder / CHECKPOINTS_DIR
    candidates = tuple(checkpoints_dir / name for name in settings.candidate_names())
    table, selection = folder / TABLE_NAME, folder / SELECTION_NAME
    threads = torch.get_num_threads()
    try:
        if not (table.is_file() and selection.is_file() and all(c.is_dir() for c in candidates)):
            build_started, children_cpu = time.perf_counter(), _children_cpu_s()
            cpu_started = time.process_time()
            with _worker_pool(workers) as executor:
                rates = _train_and_measure(folder, settings, executor, progress)
            m = settings.measurement
            source = (
                f"miniature real world (envs.appearance, appearance=real{_material_note(m.material)}): "
                f"{len(m.trials)} trials x seed indices "
                f"{m.seed_offset}..{m.seed_offset + m.seeds - 1} (selection seeds, not the evaluation's), at most "
                f"{m.max_episode_steps} steps, camera {m.camera[0]}x{m.camera[1]}; episodes in {RUN_DIR}/<checkpoint>/"
            )
            decisions = write_selection(selection, settings, rates, source)
            write_real_world_table(table, {name: rate for name, rate in rates.items() if decisions[name][0]}, source)
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
    selected = set(read_selected(selection))
    return TinyPolicies(folder, candidates, tuple(c for c in candidates if c.name in selected), table, selection)


def _train_and_measure(
    folder: Path, settings: TinyPolicySettings, executor: Executor | None, progress: bool
) -> dict[str, RealWorldSuccess]:
    """Trains the runs whose checkpoints are not all there and measures every candidate not yet measured;
    every candidate's rates, least trained first."""
    checkpoints_dir = folder / CHECKPOINTS_DIR
    unfinished = [
        run for run in settings.runs
        if not all((checkpoints_dir / run.checkpoint_name(step)).is_dir() for step in run.checkpoint_steps())
    ]
    demonstrations_path = folder / DEMONSTRATIONS_NAME
    if unfinished and not demonstrations_path.is_file():
        with _timed(folder, "demonstrations") as record:
            # White marble is collect_demonstrations' default: its call stays the one of before.
            material = real_material_env_kwargs(settings.material)
            demonstrations = collect_demonstrations(settings.demonstrations, progress, executor, **material)
            demonstrations.save(demonstrations_path)
            record.update(
                episodes=demonstrations.episodes_recorded,
                steps=len(demonstrations),
                episodes_failed=demonstrations.episodes_failed,
            )
    measuring: dict[str, Future] = {}

    def measure(run: TrainingSettings) -> None:
        for step in run.checkpoint_steps():
            checkpoint = checkpoints_dir / run.checkpoint_name(step)
            measuring[checkpoint.name] = _submit(
                executor, measure_checkpoint, checkpoint, folder / RUN_DIR / checkpoint.name, settings.measurement
            )

    with _timed(folder, "training_and_measurement") as record:
        training = {
            _submit(executor, train_run, demonstrations_path, run, checkpoints_dir): run for run in unfinished
        }
        for run in settings.runs:
            if run not in unfinished:
                measure(run)
        for finished in tqdm(
            as_completed(training), total=len(training), desc="behaviour cloning", unit="run", disable=not progress
        ):
            run = training[finished]
            record[run.name_prefix] = finished.result()
            measure(run)
        names = settings.candidate_names()
        return {
            name: measuring[name].result()
            for name in tqdm(names, desc="real-world measurement", unit="checkpoint", disable=not progress)
        }


def _material_note(material: str) -> str:
    return "".join(f", {name}={value}" for name, value in real_material_env_kwargs(material).items())


def _submit(executor: Executor | None, function: Callable[..., Any], *args: Any) -> Future:
    """``function(*args)`` in ``executor``, or here and now where there is none."""
    if executor is not None:
        return executor.submit(function, *args)
    future: Future = Future()
    future.set_result(function(*args))
    return future


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
