"""Scripted drawer policies of graded skill on the stand-in env, and the batched policy interface."""

from __future__ import annotations

import numpy as np
import pytest

from envs.protocol import MAX_EPISODE_STEPS, DrawerTask, Trial, protocol_trials
from envs.standin import DrawerStandIn, DrawerStandInConfig
from policies.base import Policy, PolicyStep
from policies.scripted import (
    GRADED_SKILLS,
    ScriptedDrawerPolicy,
    graded_policies,
    parse_instruction,
)


def stack_observations(observations: list[dict]) -> dict:
    """Stacks per-env observation dicts along a new axis 0, as a Gymnasium vector env does."""
    first = observations[0]
    if isinstance(first, dict):
        return {key: stack_observations([obs[key] for obs in observations]) for key in first}
    return np.stack(observations)


def rollout(policy: Policy, trials: list[Trial], seed: int = 0, **env_kwargs) -> tuple[np.ndarray, list]:
    """Runs one batched episode per trial; returns success per trial and every env's final observation.
    An episode ends at the time limit or when the policy says terminate (success is read at the end)."""
    env_kwargs.setdefault("obs_mode", "state_dict")
    envs = [DrawerStandIn(trial.task, trial.pose, **env_kwargs) for trial in trials]
    observations = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    instructions = [env.get_language_instruction() for env in envs]
    policy.reset(instructions)
    running = np.ones(len(envs), dtype=bool)
    success = np.zeros(len(envs), dtype=bool)
    for _ in range(MAX_EPISODE_STEPS):
        step = policy.act(stack_observations(observations), instructions)
        running &= ~step.terminate
        for i in np.flatnonzero(running):
            observations[i], _, _, truncated, info = envs[i].step(step.actions[i])
            success[i] = info["success"]
            running[i] &= not truncated
        if not running.any():
            break
    return success, observations


def test_scripted_policy_satisfies_the_policy_protocol():
    policy = ScriptedDrawerPolicy(0.5, seed=0)
    assert isinstance(policy, Policy)
    env = DrawerStandIn("CloseMiddleDrawer", "b0", obs_mode="state_dict")
    obs, _ = env.reset(seed=0)
    instructions = [env.get_language_instruction()] * 2
    policy.reset(instructions)
    step = policy.act(stack_observations([obs, obs]), instructions)
    assert step.actions.shape == (2, 7) and step.actions.dtype == np.float64
    assert step.terminate.shape == (2,) and step.terminate.dtype == bool
    assert np.all(np.abs(step.actions[:, :3]) <= 1.0)


def test_policy_step_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"\(N, 7\)"):
        PolicyStep(actions=np.zeros((2, 6)), terminate=np.zeros(2, dtype=bool))
    with pytest.raises(ValueError, match="terminate"):
        PolicyStep(actions=np.zeros((2, 7)), terminate=np.zeros(3, dtype=bool))


def test_perfect_script_solves_every_task():
    trials = [
        Trial(task, "c1")
        for task in (DrawerTask(a, d) for a in ("open", "close") for d in ("top", "middle", "bottom"))
    ]
    success, observations = rollout(ScriptedDrawerPolicy(1.0, seed=0), trials)
    assert success.all(), [t.key for t, ok in zip(trials, success) if not ok]
    for trial, obs in zip(trials, observations):
        others = [
            q
            for name, q in zip(("top", "middle", "bottom"), obs["extra"]["drawer_qpos"])
            if name != trial.task.drawer
        ]
        assert others == [0.0, 0.0]  # only the instructed drawer moved


def test_graded_policies_rank_by_skill_over_the_protocol():
    policies = graded_policies(seed=0)
    assert [p.name for p in policies] == list(GRADED_SKILLS)
    rates = [rollout(policy, protocol_trials())[0].mean() for policy in policies]
    for better, worse, rate_better, rate_worse in zip(policies, policies[1:], rates, rates[1:]):
        assert rate_better >= rate_worse + 0.15, (
            f"{better.name} {rate_better:.2f} vs {worse.name} {rate_worse:.2f}"
        )
    assert rates[0] >= 0.8 and rates[-1] <= 0.1


def test_same_seed_same_actions_and_different_seed_different_actions():
    trials = protocol_trials()[::9]

    def actions(seed: int) -> np.ndarray:
        env_list = [DrawerStandIn(t.task, t.pose, obs_mode="state_dict") for t in trials]
        obs = stack_observations([env.reset(seed=0)[0] for env in env_list])
        instructions = [env.get_language_instruction() for env in env_list]
        policy = ScriptedDrawerPolicy(0.4, seed=seed)
        policy.reset(instructions)
        return np.stack([policy.act(obs, instructions).actions for _ in range(5)])

    np.testing.assert_array_equal(actions(3), actions(3))
    assert not np.array_equal(actions(3), actions(4))


def test_rendering_does_not_change_the_dynamics():
    trials = protocol_trials()[::13]
    small = DrawerStandInConfig(image_width=160, image_height=128, focal_length=106.25)
    rendered, rendered_obs = rollout(ScriptedDrawerPolicy(0.6, seed=1), trials, obs_mode="rgbd", config=small)
    state_only, state_obs = rollout(ScriptedDrawerPolicy(0.6, seed=1), trials)
    np.testing.assert_array_equal(rendered, state_only)
    for a, b in zip(rendered_obs, state_obs):
        np.testing.assert_array_equal(a["extra"]["tcp_pose"], b["extra"]["tcp_pose"])


def test_errors_name_the_problem_and_the_fix():
    with pytest.raises(ValueError, match="skill"):
        ScriptedDrawerPolicy(1.5)
    with pytest.raises(ValueError, match="drawer"):
        parse_instruction("pick coke can")
    assert parse_instruction("Close bottom drawer") == DrawerTask("close", "bottom")
    policy = ScriptedDrawerPolicy(0.9)
    policy.reset(["open top drawer"])
    env = DrawerStandIn("OpenTopDrawer", obs_mode="state_dict")
    obs = stack_observations([env.reset(seed=0)[0]] * 2)
    with pytest.raises(ValueError, match="reset"):
        policy.act(obs, ["open top drawer"] * 2)
    without_privileged = {"agent": obs["agent"], "extra": {"tcp_pose": obs["extra"]["tcp_pose"][:1]}}
    with pytest.raises(KeyError, match="DrawerStandIn"):
        policy.act(without_privileged, ["open top drawer"])
