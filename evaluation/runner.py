"""The episode loop: every policy on every trial and seed, in every visual domain, through the vector env.

One vector env per (domain, style, robot URDF version) is built once and reused for all policies and seeds.
Each batch runs up to ``num_envs`` episodes of one policy. An episode ends as in SIMPLER's evaluator
(`simpler_env/evaluation/maniskill2_evaluator.py`): at the step where the policy says terminate (that step's
action is still taken) or at the time limit, and it is a success if the drawer meets the task's threshold at
that last step. SIMPLER's envs report ``terminated = success`` at every step; that must not end the episode,
so the harness builds its envs with ``success_ends_episode=False`` (`envs.trial_env.DrawerTrialEnv`) and
refuses an env that ends an episode on its own. The first step at which the drawer met the threshold is kept
too (`EpisodeResult.first_success_step`). Envs whose episode has ended keep stepping but are ignored until
the batch is over, so the loop never depends on how a Gymnasium version auto-resets; their frames are not
edited (`EditedVectorEnv.skip_edits`).

An episode's reset seed is a pure function of its seed index and trial, and a random policy is seeded
per episode, so an episode's outcome does not depend on the batch it ran in: a killed run restarted with
the same config skips the stored episodes and runs exactly the missing ones. Episodes that cannot differ from
their seed-0 twin (a deterministic policy in a seed-free domain on a simulator that ignores the reset seed,
`evaluation.repeats`) are not run: once the twin is stored, they are stored as its copies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from envs.protocol import Trial
from policies.base import Policy
from sim2real_edit.seeding import derive_seed

from .config import (
    CEILING,
    COLOUR_TRANSFER,
    EDITED,
    EDITED_CROP,
    FLOOR,
    FLOOR_NOISE_STREAM,
    GAIN_ORACLE,
    REAL,
    UNEDITED,
    EvalConfig,
    ExecutionOptions,
    PolicySpec,
)
from .policy_loading import load_policy
from .repeats import copy_as_repeat, repeat_source_seed
from .results import EpisodeKey, EpisodeResult, ResultStore
from .run_folder import claim_run_folder
from .videos import BatchRecording, VideoRecorder

logger = logging.getLogger(__name__)

EpisodeCallback = Callable[[EpisodeResult], None]


def episode_reset_seed(seed_index: int, trial_key: str) -> int:
    """The reset seed of an episode: the same for every policy and domain, so they meet the same episodes."""
    return derive_seed(seed_index, zlib.crc32(trial_key.encode()))


def policy_episode_seed(reset_seed: int, policy_name: str) -> int:
    """The seed of a random policy's choices in one episode."""
    return derive_seed(reset_seed, zlib.crc32(policy_name.encode()))


@dataclass(frozen=True)
class PendingEpisode:
    policy: PolicySpec
    domain: str
    style: str
    urdf_version: str
    seed: int
    trial: Trial

    @property
    def key(self) -> EpisodeKey:
        return (self.policy.name, self.domain, self.style, self.urdf_version, self.seed, self.trial.task.name,
                self.trial.pose)

    @property
    def reset_seed(self) -> int:
        return episode_reset_seed(self.seed, self.trial.key)


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    episodes_run: int
    episodes_already_done: int
    wall_s: float
    #: Seconds spent in each (domain, style) this run (building its env, its episodes): where the time went.
    domain_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    #: Episodes stored as copies of their seed-0 twin instead of being run (`evaluation.repeats`).
    episodes_copied: int = 0


def all_episodes(config: EvalConfig) -> dict[tuple[str, str, str], list[PendingEpisode]]:
    """Every episode of ``config``, grouped by (domain, style, URDF version) in run order; within a group by
    policy, then seed, then trial."""
    trials = config.trial_list()
    return {
        (domain, style, urdf_version): [
            PendingEpisode(policy, domain, style, urdf_version, seed, trial)
            for policy in config.policies
            for seed in range(config.seeds)
            for trial in trials
        ]
        for domain, style in config.domain_styles()
        for urdf_version in config.urdf_versions
    }


def is_repeat(config: EvalConfig, episode: PendingEpisode) -> bool:
    """Whether ``episode`` repeats its seed-0 twin exactly (`evaluation.repeats.repeat_source_seed`)."""
    return repeat_source_seed(config, episode.policy, episode.domain, episode.seed) is not None


def pending_episodes(
    config: EvalConfig, done: set[EpisodeKey], run_repeats_once: bool = True
) -> dict[tuple[str, str, str], list[PendingEpisode]]:
    """The episodes to run: those not in ``done``, less the repeats where ``run_repeats_once`` (they are
    copied, see `store_repeats`); grouped and ordered as `all_episodes`."""
    return {
        group: [episode for episode in episodes
                if episode.key not in done and not (run_repeats_once and is_repeat(config, episode))]
        for group, episodes in all_episodes(config).items()
    }


def store_repeats(
    store: ResultStore, config: EvalConfig, bar: tqdm | None = None, on_episode: EpisodeCallback | None = None
) -> int:
    """Stores every missing repeat whose seed-0 twin is stored, as the twin's copy; returns how many."""
    done = store.done_keys()
    missing = [episode for episodes in all_episodes(config).values() for episode in episodes
               if episode.key not in done and is_repeat(config, episode)]
    if not missing:
        return 0
    stored = {episode.key: episode for episode in store.episodes()}
    copied = 0
    for episode in missing:
        twin = stored.get(dataclasses.replace(episode, seed=0).key)
        if twin is None:  # not run yet: copied after its domain has run
            continue
        copy = copy_as_repeat(twin, episode.seed, episode.reset_seed)
        if store.add(copy):
            copied += 1
            if bar is not None:
                bar.update(1)
            if on_episode is not None:
                on_episode(copy)
    return copied


EnvKey = tuple[str, str, str, int]  # domain, style, urdf_version, num_envs


@dataclass(frozen=True)
class WorkUnit:
    """One batch of episodes: up to ``num_envs`` episodes of one policy in one (domain, style, URDF version)."""

    index: int
    domain: str
    style: str
    urdf_version: str
    num_envs: int  # of the domain's vector env: the same for every unit of the domain
    episodes: tuple[PendingEpisode, ...]

    @property
    def env_key(self) -> EnvKey:
        return (self.domain, self.style, self.urdf_version, self.num_envs)

    @property
    def policy_name(self) -> str:
        return self.episodes[0].policy.name

    @property
    def label(self) -> str:
        return " ".join(part for part in (self.domain, self.style, self.urdf_version, self.policy_name) if part)




def plan_units(
    config: EvalConfig, done: set[EpisodeKey], num_envs: int, run_repeats_once: bool = True
) -> list[WorkUnit]:
    """The episodes to run (`pending_episodes`) as work units, in the single-machine run's order and batching."""
    units: list[WorkUnit] = []
    for (domain, style, urdf_version), episodes in pending_episodes(config, done, run_repeats_once).items():
        by_policy = [[e for e in episodes if e.policy.name == spec.name] for spec in config.policies]
        by_policy = [group for group in by_policy if group]
        if not by_policy:
            continue
        domain_envs = min(num_envs, max(len(group) for group in by_policy))
        for group in by_policy:
            for start in range(0, len(group), domain_envs):
                batch = tuple(group[start : start + domain_envs])
                units.append(WorkUnit(len(units), domain, style, urdf_version, domain_envs, batch))
    return units


def make_domain_env(
    config: EvalConfig, options: ExecutionOptions, domain: str, style: str, urdf_version: str, num_envs: int
):
    """The vector env of one visual domain (the plain simulator, one style's edited variant, a baseline, or the
    miniature real world and its instruments) with one robot URDF version, whose episodes end only as SIMPLER's
    evaluator ends them (see the module docstring)."""
    import envs

    kwargs: dict[str, Any] = dict(config.env_options(), num_envs=num_envs, urdf_version=urdf_version,
                                  success_ends_episode=False, vectorization_mode=options.vectorization_mode)
    if domain in (UNEDITED, REAL, FLOOR, CEILING):
        appearance = {UNEDITED: kwargs.pop("appearance", "sim"), REAL: "real", FLOOR: "real", CEILING: "ceiling"}[domain]
        if domain == FLOOR:
            kwargs["noise_stream"] = FLOOR_NOISE_STREAM
        if config.backend == "standin" or appearance != "sim":  # SIMPLER has one look and no such argument
            kwargs["appearance"] = appearance
        return envs.make_edited_vector_env(edit=False, **kwargs)
    if domain in (COLOUR_TRANSFER, GAIN_ORACLE):
        # The gain editor has no sampling settings: leave the specialist's (edit steps, edit size) out.
        edit_settings = {field.name for field in dataclasses.fields(envs.EditOptions)} - {"camera", "preset"}
        kwargs = {name: value for name, value in kwargs.items() if name not in edit_settings}
        return envs.make_edited_vector_env(editor=gain_editor(config, domain, style), **kwargs)
    return envs.make_edited_vector_env(
        edit=True, style=style, composite=domain != EDITED, crop=domain == EDITED_CROP or None,
        device=options.device, dtype=options.dtype, cpu_threads=options.torch_threads, **kwargs,
    )


def gain_editor(config: EvalConfig, domain: str, style: str):
    """The per-channel cabinet gain of a baseline domain (`envs.cabinet_gain`): the colour transfer from the
    style's exemplars, or the real-world gain oracle measured on the stand-in's own frames."""
    from envs.appearance import REAL_CABINET_STYLE
    from envs.cabinet_gain import CabinetGainEditor, colour_transfer_gains, standin_oracle_gains
    from envs.standin import CABINET_ALBEDO, DrawerStandInConfig
    from sim2real_edit.styles import StyleRegistry

    if domain == COLOUR_TRANSFER:  # the stand-in's albedo: EvalConfig refuses this domain outside the tiny preset
        exemplars = StyleRegistry.load().get(style).exemplars()
        return CabinetGainEditor(colour_transfer_gains(exemplars, CABINET_ALBEDO), name=COLOUR_TRANSFER)
    options = config.env_options()
    gains = standin_oracle_gains(options.get("config", DrawerStandInConfig()),
                                 real_material=options.get("real_material", REAL_CABINET_STYLE))
    return CabinetGainEditor(gains, name=GAIN_ORACLE)


def run_evaluation(
    config: EvalConfig,
    run_dir: str | Path,
    options: ExecutionOptions | None = None,
    on_episode: EpisodeCallback | None = None,
) -> RunSummary:
    """Runs the episodes of ``config`` that ``run_dir``'s database does not hold yet, writing each one the
    moment it ends. ``on_episode`` is called after each episode is stored."""
    options = options or ExecutionOptions()
    started = time.perf_counter()
    # Holds the folder's lock until the run ends; refuses a folder of another config or not a run folder.
    with claim_run_folder(run_dir, config) as store:
        done = store.done_keys()
        units = plan_units(config, done, options.num_envs, options.run_repeats_once)
        to_run = sum(len(unit.episodes) for unit in units)
        to_copy = config.expected_episodes() - len(done) - to_run
        already_done = len(done)
        if already_done:
            logger.info("%d of %d episodes already in %s; running the other %d",
                        already_done, config.expected_episodes(), store.path, to_run)
        if to_copy:
            logger.info("%d episodes repeat their seed-0 twin exactly (deterministic policy, seed-free domain and "
                        "simulator): stored as its copies, not run (--run-every-seed runs them)", to_copy)
        policies = load_process_policies(config, options, {unit.policy_name for unit in units})
        videos = VideoRecorder(store.path.parent) if options.videos else None
        if videos is not None:
            videos.prepare(store.done_keys())

        domain_seconds: dict[str, float] = {}
        copied = 0
        with tqdm(total=to_run + to_copy, unit="episode", desc="episodes", disable=not options.progress) as bar:
            if options.run_repeats_once:
                copied += store_repeats(store, config, bar, on_episode)  # twins a killed run left stored
            for env_key, domain_units in itertools.groupby(units, key=attrgetter("env_key")):
                domain_started = time.perf_counter()
                env = make_domain_env(config, options, *env_key)
                try:
                    for unit in domain_units:
                        bar.set_postfix_str(unit.label)
                        # closing: an interrupted batch discards its unfinished videos at once, not at GC.
                        with contextlib.closing(run_batch(env, policies[unit.policy_name], list(unit.episodes),
                                                          config, videos)) as results:
                            for result in results:
                                store_episode(store, result, bar, on_episode)
                finally:
                    env.close()
                    name = "/".join(part for part in env_key[:2] if part)
                    domain_seconds[name] = domain_seconds.get(name, 0.0) + time.perf_counter() - domain_started
                if options.run_repeats_once:
                    copied += store_repeats(store, config, bar, on_episode)
    return RunSummary(Path(run_dir), to_run, already_done, time.perf_counter() - started, domain_seconds, copied)


def load_process_policies(config: EvalConfig, options: ExecutionOptions, names: set[str]) -> dict[str, Policy]:
    """Sets this process's torch threads and loads the named policies of ``config``, once per process."""
    if options.torch_threads is not None:
        import torch

        torch.set_num_threads(options.torch_threads)
    # Policies load before any env: RT-1 brings TensorFlow, which goes in before diffusers' imports.
    return {spec.name: load_policy(spec, config) for spec in config.policies if spec.name in names}


def store_episode(store: ResultStore, episode: EpisodeResult, bar: tqdm, on_episode: EpisodeCallback | None) -> bool:
    """Stores one finished episode (committed before anything else sees it); False if it was already stored."""
    if not store.add(episode):
        return False
    bar.update(1)
    if on_episode is not None:
        on_episode(episode)
    return True


def run_batch(env, policy: Policy, batch: list[PendingEpisode], config: EvalConfig,
              videos: VideoRecorder | None = None) -> Iterator[EpisodeResult]:
    """Runs the episodes of ``batch`` (one policy, at most ``env.num_envs``) and yields each one's result
    as it ends. Spare envs repeat the batch's episodes and are ignored. With ``videos``, each episode's video
    is in place and indexed before its result is yielded (`evaluation.videos`)."""
    num_envs = env.num_envs
    if not 1 <= len(batch) <= num_envs:
        raise ValueError(f"a batch holds 1 to {num_envs} episodes, got {len(batch)}")
    if videos is None:
        yield from _run_batch(env, policy, batch, config, None)
        return
    from envs.simpler import POLICY_CAMERA

    recording = videos.batch([episode.key for episode in batch], getattr(env, "camera", POLICY_CAMERA))
    try:
        yield from _run_batch(env, policy, batch, config, recording)
    finally:
        recording.close()  # an interrupted batch leaves no half-written video


def _run_batch(env, policy: Policy, batch: list[PendingEpisode], config: EvalConfig,
               recording: BatchRecording | None) -> Iterator[EpisodeResult]:
    num_envs = env.num_envs
    slots = [batch[index % len(batch)] for index in range(num_envs)]
    reset_seeds = [episode.reset_seed for episode in slots]
    env.set_next_trials([episode.trial.key for episode in slots])
    observations, reset_info = env.reset(seed=reset_seeds)
    if recording is not None:
        recording.add(0, observations, reset_info, range(len(batch)))
    instructions = [str(text) for text in env.call("get_language_instruction")]
    if hasattr(policy, "seed_episodes"):
        policy.seed_episodes([policy_episode_seed(seed, policy.name) for seed in reset_seeds])
    policy.reset(instructions)

    started = time.perf_counter()
    finished = np.zeros(num_envs, dtype=bool)
    finished[len(batch):] = True
    first_success = np.zeros(num_envs, dtype=int)  # 0: not yet
    for step in range(1, config.max_episode_steps + 1):
        decision = policy.act(observations, instructions)
        observations, _, terminated, truncated, info = env.step(decision.actions)
        running = np.flatnonzero(~finished)
        if np.any(np.asarray(terminated)[running]):
            raise RuntimeError(
                f"the env ended an episode on its own (terminated=True) at step {step}; SIMPLER's evaluator ends "
                "an episode only at the policy's terminate or the time limit and judges success at that last "
                "step. Build the drawer envs with success_ends_episode=False (see runner.make_domain_env)."
            )
        truncated = np.asarray(truncated, dtype=bool)
        for index in running:
            if not first_success[index] and _final_value(info, "success", int(index), bool(truncated[index])):
                first_success[index] = step
        ended = decision.terminate | truncated | (step == config.max_episode_steps)
        if recording is not None:
            # A vector env that reset an env within its last step returns the next episode's frame: left out.
            reset_within_step = truncated & (info.get("final_info") is not None)
            recording.add(step, observations, info, [i for i in running if not reset_within_step[i]],
                          np.asarray(decision.actions))
        for index in np.flatnonzero(ended & ~finished):
            finished[index] = True
            result = _result(batch[index], info, int(index), bool(truncated[index]), step,
                             int(first_success[index]) or None, time.perf_counter() - started, config.config_hash)
            if recording is not None:
                recording.finish(int(index), result)  # in place before the row can be stored
            yield result
        if finished.all():
            return
        if hasattr(env, "skip_edits"):  # the finished episodes' frames are ignored: no edit is spent on them
            env.skip_edits(finished)


def _result(
    episode: PendingEpisode, info: dict, index: int, env_ended: bool, steps: int, first_success_step: int | None,
    wall_s: float, config_hash: str,
) -> EpisodeResult:
    trial = _final_value(info, "trial", index, env_ended)
    urdf_version = _final_value(info, "urdf_version", index, env_ended)
    if (trial, urdf_version) != (episode.trial.key, episode.urdf_version):
        raise RuntimeError(
            f"env {index} ran trial {trial!r} with URDF {urdf_version!r} but was given {episode.trial.key!r} with "
            f"{episode.urdf_version!r}; the vector env must apply set_next_trials at its next reset and be built "
            "for the unit's URDF version (see envs.trial_env.DrawerTrialEnv)"
        )
    return EpisodeResult(
        policy=episode.policy.name,
        domain=episode.domain,
        style=episode.style,
        urdf_version=episode.urdf_version,
        seed=episode.seed,
        task=episode.trial.task.name,
        pose=episode.trial.pose,
        drawer=episode.trial.task.drawer,
        action=episode.trial.task.action,
        success=bool(_final_value(info, "success", index, env_ended)),
        steps=steps,
        first_success_step=first_success_step,
        drawer_qpos=float(_final_value(info, "drawer_qpos", index, env_ended)),
        reset_seed=episode.reset_seed,
        wall_s=round(wall_s, 4),
        config_hash=config_hash,
    )


def _final_value(info: dict, key: str, index: int, env_ended: bool) -> Any:
    """Env ``index``'s ``info[key]`` at the end of its episode.

    Where the vector env reset an ended env within the same step, the episode's last info is under
    ``final_info``: one dict per env in gymnasium 0.29, one batched dict in gymnasium 1.x's same-step mode.
    Gymnasium 1.x's default (next-step) mode leaves it in ``info`` itself.
    """
    final = info.get("final_info") if env_ended else None
    if final is not None:
        if isinstance(final, dict):
            return final[key][index]
        return final[index][key]
    return info[key][index]
