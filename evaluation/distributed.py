"""The evaluation run on a Ray cluster: the episodes spread over workers, stored by the driver alone.

The driver splits the episodes that the run folder's database lacks into work units, each one batch of
`runner.run_batch` (up to ``num_envs`` episodes of one policy in one (domain, style, URDF version)), and hands
them out as workers free up. Every worker holds one or two units at a time, keeps to the domain whose vector env it has
built while that domain has units left, and, once no unit is left to hand out, an idle worker takes a
second copy of a straggling unit: the first copy to finish counts, the other is ignored.

Workers are Ray actors that load their policies once and build each domain's vector env (simulators and
editing specialist, on the worker's GPU where it has one) on first use. They return each unit's episodes;
the driver is the database's only writer and stores every episode the moment its unit's result arrives.
A worker that dies loses only its in-flight units: they go back to the front of the queue and a fresh
worker takes its place. A killed driver loses only its in-flight units too: the same command continues
from the database, as a single-machine run does. An episode depends only on its seed index, trial and
policy (see `runner`), so the database ends up equal to a single-process run's.

Ray is an optional extra (``pip install -e ".[ray]"``); it is imported only when a run starts here.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .config import UNEDITED, EvalConfig, ExecutionOptions
from .results import EpisodeResult, ResultStore
from .run_folder import claim_run_folder
from .runner import (
    EnvKey,
    EpisodeCallback,
    RunSummary,
    WorkUnit,
    load_process_policies,
    make_domain_env,
    plan_units,
    run_batch,
    store_episode,
    store_repeats,
)

logger = logging.getLogger(__name__)

#: Environment variables of the driver that every worker gets: they decide which specialists and exemplars
#: an edit uses, so workers must see the driver's.
FORWARDED_ENV_VARS = ("SIM2REAL_EDIT_HOME",)


class RayWorkersLostError(RuntimeError):
    """More Ray workers died than `RayOptions.max_replacements` allows; the stored episodes stay."""


@dataclass(frozen=True)
class RayOptions:
    """How a run uses the Ray cluster; like `ExecutionOptions`, these never change an episode's outcome."""

    address: str | None = None  # None: the Ray this process is connected to, else a new local one; "auto": a
    # cluster started with `ray start`; "ray://host:10001": a remote cluster through Ray Client
    num_workers: int | None = None  # None: one per `gpus_per_worker` GPUs of the cluster, on CPU one per CPU
    gpus_per_worker: float | None = None  # None: 1 where the cluster has GPUs, else 0
    cpus_per_worker: float = 1.0
    units_in_flight: int = 2  # per worker: one running and one waiting, so a worker never idles between units
    reissue_stragglers: bool = True
    cached_envs: int = 2  # vector envs a worker keeps built (the most recently used)
    max_replacements: int = 8  # workers started in place of dead ones before the run gives up

    def __post_init__(self) -> None:
        if self.num_workers is not None and self.num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, got {self.num_workers}")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise ValueError(f"gpus_per_worker must be >= 0, got {self.gpus_per_worker}")
        if self.units_in_flight < 1 or self.cached_envs < 1:
            raise ValueError("units_in_flight and cached_envs must be at least 1")


@dataclass(frozen=True)
class UnitResult:
    unit_index: int
    episodes: tuple[EpisodeResult, ...]
    wall_s: float
    worker_pid: int


@dataclass
class RayProgress:
    """What a run on the cluster has done so far, updated as it runs."""

    workers: int = 0
    units: int = 0
    episodes_stored: int = 0
    units_requeued: int = 0  # in flight on a worker that died
    units_reissued: int = 0  # second copies of stragglers given to idle workers
    workers_replaced: int = 0
    duplicate_episodes: int = 0  # returned by a unit's second copy and ignored


@dataclass(frozen=True)
class RaySummary(RunSummary):
    """A `RunSummary` (``episodes_run``: the episodes this run stored) with what happened on the cluster."""

    workers: int = 0
    units: int = 0
    units_requeued: int = 0  # in flight on a worker that died
    units_reissued: int = 0  # second copies of stragglers given to idle workers
    workers_replaced: int = 0
    duplicate_episodes: int = 0  # returned by a unit's second copy and ignored


class EvaluationWorker:
    """The body of a Ray actor: the run's policies loaded once, and the vector env of each (domain, style)
    built on first use and kept while it is among the ``cached_envs`` most recently used."""

    def __init__(self, config: EvalConfig, options: ExecutionOptions, policy_names: list[str], cached_envs: int):
        self.config = config
        self.options = options
        self.cached_envs = cached_envs
        self.policies = load_process_policies(config, options, set(policy_names))
        self.envs: OrderedDict[EnvKey, Any] = OrderedDict()

    def run_unit(self, unit: WorkUnit) -> UnitResult:
        started = time.perf_counter()
        env = self._env(unit.env_key)
        episodes = tuple(run_batch(env, self.policies[unit.policy_name], list(unit.episodes), self.config))
        return UnitResult(unit.index, episodes, time.perf_counter() - started, os.getpid())

    def close(self) -> None:
        while self.envs:
            self.envs.popitem(last=False)[1].close()

    def _env(self, key: EnvKey):
        if key in self.envs:
            self.envs.move_to_end(key)
            return self.envs[key]
        while len(self.envs) >= self.cached_envs:
            self.envs.popitem(last=False)[1].close()
        self.envs[key] = make_domain_env(self.config, self.options, *key)
        return self.envs[key]


@dataclass
class _WorkerSlot:
    """A place for one worker; when its actor dies, a fresh actor takes the slot."""

    name: str
    handle: Any
    env_key: EnvKey | None = None  # the domain of the last unit handed to it
    refs: list[Any] = field(default_factory=list)  # its in-flight units' result refs, in submission order


@dataclass(frozen=True)
class WorkerStatus:
    name: str
    handle: Any  # the Ray actor
    units_in_flight: int


class RayEvaluation:
    """One evaluation run on a Ray cluster; `run` may be called again after an interruption.

    While `run` runs, `workers` tells what each worker holds (to monitor a run, or to kill a worker in a
    fault test); before and after, it is empty. `progress` counts what the current or last run has done,
    also where it was interrupted.
    """

    def __init__(
        self,
        config: EvalConfig,
        run_dir: str | Path,
        options: ExecutionOptions | None = None,
        ray_options: RayOptions | None = None,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.options = options or ExecutionOptions()
        if self.options.videos:
            # The workers' frames would have to travel to the driver, the folder's only writer: not done yet.
            raise ValueError("episode videos are not supported on Ray (--ray): the episodes run in workers, and "
                             "only the driver writes the run folder. Run without --ray to record videos, or "
                             "pass --no-videos")
        self.ray_options = ray_options or RayOptions()
        self._slots: list[_WorkerSlot] = []
        self.progress = RayProgress()

    @property
    def workers(self) -> list[WorkerStatus]:
        return [WorkerStatus(slot.name, slot.handle, len(slot.refs)) for slot in self._slots]

    def run(self, on_episode: EpisodeCallback | None = None) -> RaySummary:
        """Runs the episodes that the run folder's database lacks on the cluster, storing each as its unit's
        result arrives. ``on_episode`` is called after each episode is stored."""
        started = time.perf_counter()
        # The driver holds the folder's lock for the whole run: it is the database's only writer.
        with claim_run_folder(self.run_dir, self.config) as store:
            done = store.done_keys()
            units = plan_units(self.config, done, self.options.num_envs, self.options.run_repeats_once)
            self.progress = RayProgress(units=len(units))
            to_run = sum(len(unit.episodes) for unit in units)
            already_done = len(done)
            repeats_once = self.options.run_repeats_once
            if not units:
                copied = store_repeats(store, self.config, on_episode=on_episode) if repeats_once else 0
                return RaySummary(self.run_dir, 0, already_done, time.perf_counter() - started,
                                  episodes_copied=copied)
            if already_done:
                logger.info("%d of %d episodes already in %s; running the other %d on Ray",
                            already_done, self.config.expected_episodes(), store.path, to_run)
            _write_missing_exemplars(self.config)  # before workers race to write them

            ray = _import_ray()
            started_ray = not ray.is_initialized()
            if started_ray:
                ray.init(address=self.ray_options.address)
            try:
                _Dispatcher(ray, self, units, store, on_episode).run()
            finally:
                self._stop_workers(ray)
                if started_ray:
                    ray.shutdown()
            # The driver copies the repeats once their seed-0 twins are stored (workers never see them).
            copied = store_repeats(store, self.config, on_episode=on_episode) if repeats_once else 0
        counts = asdict(self.progress)
        stored = counts.pop("episodes_stored")
        return RaySummary(self.run_dir, stored, already_done, time.perf_counter() - started,
                          episodes_copied=copied, **counts)

    def _start_worker(self, ray, name: str, policy_names: list[str], gpus: float) -> Any:
        env_vars = {key: os.environ[key] for key in FORWARDED_ENV_VARS if key in os.environ}
        actor = ray.remote(EvaluationWorker).options(
            name=name,
            num_cpus=self.ray_options.cpus_per_worker,
            num_gpus=gpus,
            max_restarts=0,  # the driver replaces dead workers itself and re-queues their units
            max_task_retries=0,
            runtime_env={"env_vars": env_vars} if env_vars else None,
        )
        return actor.remote(self.config, self.options, policy_names, self.ray_options.cached_envs)

    def _stop_workers(self, ray) -> None:
        """Idle workers close their envs; busy ones (the run was interrupted, or a straggler's second copy
        still runs) are killed at once, and their simulator subprocesses end with them."""
        closing = [slot.handle.close.remote() for slot in self._slots if not slot.refs]
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=30)
        for slot in self._slots:
            ray.kill(slot.handle)
        self._slots = []


class _Dispatcher:
    """The driver's loop: hands out units, stores results, replaces dead workers, re-issues stragglers."""

    def __init__(self, ray, evaluation: RayEvaluation, units: list[WorkUnit], store: ResultStore,
                 on_episode: EpisodeCallback | None) -> None:
        self.ray = ray
        self.evaluation = evaluation
        self.options = evaluation.ray_options
        self.units = units
        self.store = store
        self.on_episode = on_episode
        self.queues: OrderedDict[EnvKey, deque[WorkUnit]] = OrderedDict()
        for unit in units:
            self.queues.setdefault(unit.env_key, deque()).append(unit)
        self.completed: set[int] = set()
        self.in_flight: dict[Any, tuple[_WorkerSlot, WorkUnit]] = {}
        self.copies: dict[int, int] = {}  # unit index -> copies in flight
        self.policy_names = sorted({unit.policy_name for unit in units})
        self.progress = evaluation.progress
        self.run_token = uuid.uuid4().hex[:8]
        self.started_workers = 0

    def run(self) -> None:
        num_workers, self.gpus = worker_layout(self.ray.cluster_resources(), self.options, len(self.units))
        self.progress.workers = num_workers
        logger.info("evaluating %d units on %d Ray workers (%g GPU, %g CPU each)", len(self.units), num_workers,
                    self.gpus, self.options.cpus_per_worker)
        self.evaluation._slots = [self._new_slot() for _ in range(num_workers)]
        episodes = sum(len(unit.episodes) for unit in self.units)
        with tqdm(total=episodes, unit="episode", desc="episodes (ray)",
                  disable=not self.evaluation.options.progress) as bar:
            self._loop(bar)

    def _loop(self, bar: tqdm) -> None:
        while len(self.completed) < len(self.units):
            self._fill()
            ready, _ = self.ray.wait(list(self.in_flight), num_returns=1)
            slot = self.in_flight[ready[0]][0]
            try:
                result: UnitResult = self.ray.get(ready[0])
            except self.ray.exceptions.RayActorError as error:  # it died, or its node is unreachable
                self._replace(slot, error)
                continue
            self._drop(ready[0])
            self._store(result, bar)

    def _store(self, result: UnitResult, bar: tqdm) -> None:
        if result.unit_index in self.completed:
            self.progress.duplicate_episodes += len(result.episodes)
            return
        self.completed.add(result.unit_index)
        logger.debug("unit %d (%s) took %.1f s on worker pid %d", result.unit_index,
                     self.units[result.unit_index].label, result.wall_s, result.worker_pid)
        for episode in result.episodes:
            if store_episode(self.store, episode, bar, self.on_episode):
                self.progress.episodes_stored += 1
            else:
                self.progress.duplicate_episodes += 1

    def _fill(self) -> None:
        for slot in self.evaluation._slots:
            while len(slot.refs) < self.options.units_in_flight:
                unit = self._next_unit(slot)
                if unit is None and not slot.refs and self.options.reissue_stragglers:
                    unit = self._straggler(slot)
                    if unit is not None:
                        self.progress.units_reissued += 1
                if unit is None:
                    break
                self._submit(slot, unit)

    def _next_unit(self, slot: _WorkerSlot) -> WorkUnit | None:
        """A unit of the slot's domain while it has some; else of the domain with the most units left per
        worker already on it, so that workers spread over domains and rarely build another env."""
        if slot.env_key is not None and self.queues.get(slot.env_key):
            return self.queues[slot.env_key].popleft()
        open_keys = [key for key, queue in self.queues.items() if queue]
        if not open_keys:
            return None

        def units_per_worker(key: EnvKey) -> float:
            workers = sum(other.env_key == key for other in self.evaluation._slots if other is not slot)
            return len(self.queues[key]) / (workers + 1)

        key = max(open_keys, key=units_per_worker)  # the first in run order on ties
        return self.queues[key].popleft()

    def _straggler(self, idle: _WorkerSlot) -> WorkUnit | None:
        """An in-flight unit with one copy, on another worker: preferably one still waiting behind another
        unit there, then the one submitted first."""
        candidates = [
            (-position, order, unit)
            for order, (ref, (slot, unit)) in enumerate(self.in_flight.items())
            if slot is not idle and self.copies[unit.index] == 1 and unit.index not in self.completed
            for position in [slot.refs.index(ref)]
        ]
        return min(candidates, key=lambda item: item[:2])[2] if candidates else None

    def _submit(self, slot: _WorkerSlot, unit: WorkUnit) -> None:
        ref = slot.handle.run_unit.remote(unit)
        slot.refs.append(ref)
        slot.env_key = unit.env_key
        self.in_flight[ref] = (slot, unit)
        self.copies[unit.index] = self.copies.get(unit.index, 0) + 1

    def _drop(self, ref: Any) -> WorkUnit:
        slot, unit = self.in_flight.pop(ref)
        slot.refs.remove(ref)
        self.copies[unit.index] -= 1
        return unit

    def _replace(self, slot: _WorkerSlot, error: Exception) -> None:
        """Re-queues the dead worker's in-flight units (unless another copy runs) and starts a fresh worker."""
        for ref in list(slot.refs):
            unit = self._drop(ref)
            if unit.index not in self.completed and self.copies[unit.index] == 0:
                self.queues[unit.env_key].appendleft(unit)
                self.progress.units_requeued += 1
        self.ray.kill(slot.handle)
        if self.progress.workers_replaced >= self.options.max_replacements:
            raise RayWorkersLostError(
                f"{self.progress.workers_replaced} Ray workers have died and been replaced, and another one died: "
                f"{error}. Fix the cause above (a worker that fails while loading its policies or envs fails "
                "on every node), or raise RayOptions.max_replacements for a cluster that loses nodes; the "
                "stored episodes stay, so rerunning the same command continues the run."
            )
        self.progress.workers_replaced += 1
        logger.warning("Ray worker %s died (%s); re-queued its units and started a new worker",
                       slot.name, type(error).__name__)
        fresh = self._new_slot()
        slot.name, slot.handle, slot.env_key = fresh.name, fresh.handle, None

    def _new_slot(self) -> _WorkerSlot:
        name = f"sim2real-eval-{self.run_token}-{self.started_workers}"
        self.started_workers += 1
        return _WorkerSlot(name, self.evaluation._start_worker(self.ray, name, self.policy_names, self.gpus))


def worker_layout(resources: dict[str, float], options: RayOptions, units: int) -> tuple[int, float]:
    """(number of workers, GPUs per worker) for the cluster's resources; refuses layouts that cannot be
    scheduled (their units would wait forever)."""
    cluster_gpus, cluster_cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
    gpus = options.gpus_per_worker if options.gpus_per_worker is not None else (1.0 if cluster_gpus else 0.0)
    if options.num_workers is not None:
        workers = options.num_workers
    elif gpus:
        workers = int(cluster_gpus // gpus)
    else:
        workers = int(cluster_cpus // options.cpus_per_worker) if options.cpus_per_worker else 1
    workers = max(1, min(workers, units))
    if workers * gpus > cluster_gpus + 1e-9 or workers * options.cpus_per_worker > cluster_cpus + 1e-9:
        raise ValueError(
            f"{workers} Ray workers x ({gpus} GPU, {options.cpus_per_worker} CPU) do not fit the cluster "
            f"({cluster_gpus:g} GPUs, {cluster_cpus:g} CPUs); pass fewer --ray-workers or a smaller "
            "--ray-gpus-per-worker, or add nodes"
        )
    return workers, gpus


def _write_missing_exemplars(config: EvalConfig) -> None:
    """The tiny preset's specialists take their style image from the style's exemplars, which are written on
    first use. Processes on one machine serialise that with a file lock (sim2real_edit.styles); writing them
    here first also covers workers on other nodes of a shared file system, where locks may not hold."""
    if config.preset != "tiny" or all(domain == UNEDITED for domain in config.domains):
        return
    from sim2real_edit.styles import StyleRegistry

    registry = StyleRegistry.load()
    for style in config.styles:
        registry.get(style).exemplar_paths()


def _import_ray():
    try:
        import ray
    except ImportError as error:
        raise ImportError(
            "evaluating on Ray needs the ray package: pip install -e \".[ray]\" (or drop --ray to run on "
            "this machine)"
        ) from error
    return ray


def run_evaluation_on_ray(
    config: EvalConfig,
    run_dir: str | Path,
    options: ExecutionOptions | None = None,
    ray_options: RayOptions | None = None,
    on_episode: EpisodeCallback | None = None,
) -> RaySummary:
    """`runner.run_evaluation` on a Ray cluster: the same database, resume guarantee and episodes."""
    return RayEvaluation(config, run_dir, options, ray_options).run(on_episode)
