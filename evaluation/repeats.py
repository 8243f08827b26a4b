"""Episodes that cannot differ: a deterministic policy in a deterministic domain repeats the same episode at
every seed, so "3 seeds" there is one episode run three times, not three pieces of evidence.

Such episodes are run once and counted once. An episode of seed index k > 0 is a *repeat* of seed 0's when all
of these hold (`repeat_source_seed`):
- the policy acts the same whatever its episode seed (`policy_loading.is_deterministic`: RT-1, the CNN
  policies, a scripted policy of skill 1);
- the domain's frames are a function of the simulator's state alone (`SEED_FREE_DOMAINS`: the unedited
  simulator and the per-channel colour edits, which ignore the seed; the diffusion edits draw their noise from
  the reset seed, the miniature real world its sensor noise);
- the simulator's episode does not depend on the reset seed (`envs.trial_env.reset_seed_changes_episode`: true
  of SIMPLER where it rasterises (``env_kwargs={"shader_dir": "ibl"}``), whose per-task envs take the trial's
  start as options - not where it ray-traces (its default, "rt"), which is not shown to repeat itself; the
  stand-in jitters the gripper's start unless ``EvalConfig.standin_start_jitter`` is 0).
The runner leaves repeats out of its work and stores each as a copy of seed 0's episode, marked with
``repeat_of_seed`` (`copy_as_repeat`); ``--run-every-seed`` (ExecutionOptions.run_repeats_once=False) runs
them all, which is how a user can check the claim on their own simulator.

`independent_episodes` counts what the stored episodes hold: copies count zero, and where episodes repeat across
seeds, those of the same policy, style, robot URDF version and trial whose outcome, step count and final drawer
opening are all identical count once (runs made with every seed, or before repeats were copied); an episode
that differs from its twin is counted, so a simulator that breaks the claim shows it. A stochastic policy's
episodes all count, even where two seeds happen to end alike. The intervals resample trials, so repeats never
narrowed them; the count says how much evidence there is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from .config import COLOUR_TRANSFER, GAIN_ORACLE, UNEDITED, EvalConfig, PolicySpec
from .policy_loading import is_deterministic
from .results import EpisodeResult

#: Domains whose frames depend on the simulator's state alone, never on the reset seed: the unedited
#: simulator and the deterministic colour edits (per-channel gains).
SEED_FREE_DOMAINS = (UNEDITED, COLOUR_TRANSFER, GAIN_ORACLE)


def simulator_ignores_seed(config: EvalConfig) -> bool:
    """Whether the run's simulator gives the same episode at every reset seed for the same actions."""
    from envs.trial_env import reset_seed_changes_episode

    return not reset_seed_changes_episode(config.backend, **config.env_options())


def repeats_across_seeds(config: EvalConfig, policy: PolicySpec, domain: str) -> bool:
    """Whether ``policy``'s episodes of one trial in ``domain`` are the same at every seed index."""
    return domain in SEED_FREE_DOMAINS and is_deterministic(policy) and simulator_ignores_seed(config)


def repeat_source_seed(config: EvalConfig, policy: PolicySpec, domain: str, seed: int) -> int | None:
    """The seed index whose episode the episode of (``policy``, ``domain``, ``seed``) repeats exactly, or None
    where it is evidence of its own (see the module docstring)."""
    return 0 if seed > 0 and repeats_across_seeds(config, policy, domain) else None


def copy_as_repeat(source: EpisodeResult, seed: int, reset_seed: int) -> EpisodeResult:
    """Seed ``seed``'s episode as a copy of ``source`` (its seed-0 twin): the same outcome, no time spent."""
    return dataclasses.replace(source, seed=seed, reset_seed=reset_seed, wall_s=0.0, repeat_of_seed=source.seed)


def episode_signature(episode: EpisodeResult) -> tuple[bool, int, float]:
    """What two runs of the same episode share exactly: outcome, steps and the drawer's final opening."""
    return bool(episode.success), int(episode.steps), float(episode.drawer_qpos)


def independent_episodes(episodes: Iterable[EpisodeResult], config: EvalConfig) -> int:
    """How many of ``episodes`` (of ``config``'s run) are independent: copies (``repeat_of_seed`` set) count
    zero; where a policy's episodes repeat across seeds (`repeats_across_seeds`), those of one style, URDF
    version and trial count once per distinct `episode_signature` (a run of every seed); all others count."""
    policies = {policy.name: policy for policy in config.policies}
    repeating = {(name, domain) for name, policy in policies.items() for domain in config.domains
                 if repeats_across_seeds(config, policy, domain)}
    count = 0
    distinct: dict[tuple[str, str, str, str, str, str], set[tuple[bool, int, float]]] = {}
    for episode in episodes:
        if episode.repeat_of_seed is not None:
            continue
        if (episode.policy, episode.domain) not in repeating:
            count += 1
            continue
        key = (episode.policy, episode.domain, episode.style, episode.urdf_version, episode.task, episode.pose)
        distinct.setdefault(key, set()).add(episode_signature(episode))
    return count + sum(len(signatures) for signatures in distinct.values())
