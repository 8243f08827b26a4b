"""Episodes that cannot differ (a deterministic policy in a seed-free domain of a simulator that ignores the reset
seed, one trial, several seeds) are run once and counted once; the report states each policy's independent
episodes."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from envs.standin import DrawerStandInConfig
from envs.trial_env import DrawerTrialEnv, reset_seed_changes_episode
from evaluation import run_evaluation
from evaluation.config import (
    EDITED,
    REAL,
    RT1,
    SCRIPTED,
    UNEDITED,
    ExecutionOptions,
    PolicySpec,
    full_config,
    tiny_config,
)
from evaluation.policy_loading import is_deterministic, load_policy
from evaluation.repeats import independent_episodes, repeat_source_seed
from evaluation.report import write_report
from evaluation.results import EpisodeResult, ResultStore
from evaluation.runner import pending_episodes

REPO = Path(__file__).resolve().parents[1]
TRIALS = ("OpenTopDrawer/a0", "CloseTopDrawer/a0")
PERFECT = PolicySpec("scripted-perfect", SCRIPTED, real_world_name=None, skill=1.0)  # acts without randomness
NOISY = PolicySpec("scripted-good", SCRIPTED, real_world_name=None, skill=0.6)
SYNC = ExecutionOptions(num_envs=4, vectorization_mode="sync", progress=False)


def _episode(policy, domain, seed, trial, success, steps, qpos, style="", urdf="recolor_cabinet_visual_matching_1",
             config_hash="x"):
    task, pose = trial.split("/")
    return EpisodeResult(policy=policy, domain=domain, style=style, urdf_version=urdf, seed=seed, task=task, pose=pose,
                         drawer="top", action="open" if task.startswith("Open") else "close", success=success,
                         steps=steps, first_success_step=None, drawer_qpos=qpos, reset_seed=seed, wall_s=0.1,
                         config_hash=config_hash)


def test_repeats_across_seeds_count_once_only_where_they_cannot_differ():
    config = tiny_config(policies=(PERFECT, NOISY), trials=TRIALS, seeds=3, domains=(UNEDITED, EDITED),
                         standin_start_jitter=0.0)
    repeated = [_episode(PERFECT.name, UNEDITED, seed, trial, True, 40, 0.21) for seed in range(3) for trial in TRIALS]
    assert independent_episodes(repeated, config) == 2  # 3 seeds x 2 trials, each trial one episode run three times
    # One seed that differs in any of outcome, steps or final opening is another episode.
    for changed in ({"success": False}, {"steps": 41}, {"qpos": 0.2100001}):
        values = {"success": True, "steps": 40, "qpos": 0.21, **changed}
        other = _episode(PERFECT.name, UNEDITED, 2, TRIALS[0], values["success"], values["steps"], values["qpos"])
        assert independent_episodes([*repeated[:4], other, repeated[5]], config) == 3
    # A copy of a seed-0 episode counts zero whatever it holds.
    copy = replace(_episode(PERFECT.name, UNEDITED, 1, TRIALS[0], False, 3, 0.0), repeat_of_seed=0)
    assert independent_episodes([*repeated, copy], config) == 2
    # In an edited domain the seed changes the frames: identical outcomes are not repeats.
    edited = [_episode(PERFECT.name, EDITED, seed, TRIALS[0], True, 40, 0.21, style="wood") for seed in range(3)]
    assert independent_episodes(edited, config) == 3
    # A stochastic policy's seeds are independent draws even where they end alike.
    assert independent_episodes([replace(e, policy=NOISY.name) for e in repeated], config) == 6
    # Other styles and URDF versions are other episodes, whatever their outcome.
    assert independent_episodes([*repeated, _episode(PERFECT.name, UNEDITED, 0, TRIALS[0], True, 40, 0.21,
                                                     urdf="None")], config) == 3
    # A simulator whose start depends on the seed (the stand-in's default jitter): every episode counts.
    assert independent_episodes(repeated, replace(config, standin_start_jitter=None)) == 6


def test_the_report_states_independent_episodes_per_policy(tmp_path):
    config = tiny_config(policies=(PERFECT, NOISY), trials=TRIALS, seeds=3, domains=(UNEDITED,), standin_camera=None,
                         standin_start_jitter=0.0)
    store = ResultStore.create(tmp_path, config)
    for index, policy in enumerate((PERFECT.name, NOISY.name)):
        for seed in range(3):
            for trial in TRIALS:
                # The perfect policy repeats one episode per trial at every seed, the other ends alike too but
                # its seeds are independent draws.
                store.add(_episode(policy, UNEDITED, seed, trial, True, 30, 0.2, config_hash=config.config_hash))
    report = write_report(tmp_path)
    rates = {r.policy: r.average for r in report.domain(UNEDITED).rates}
    assert (rates[PERFECT.name].episodes, rates[PERFECT.name].independent_episodes) == (6, 2)
    assert rates[NOISY.name].independent_episodes == 6
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["domains"][0]["rates"][0]["average"]["independent_episodes"] == 2
    markdown = (tmp_path / "report.md").read_text()
    assert f"{PERFECT.name} 2 of 6; {NOISY.name} 6 of 6" in markdown
    assert "(n=6, 2 independent, 2 trials)" in markdown


# --- Run once: episodes that cannot differ are not run but copied from their seed-0 twin ---------------------

def _run_once_config(**overrides):
    values = {"policies": (PERFECT, NOISY), "trials": ("OpenTopDrawer/b1", "CloseMiddleDrawer/a1"), "seeds": 3,
              "domains": (UNEDITED,), "max_episode_steps": 30, "standin_camera": (80, 64),
              "standin_start_jitter": 0.0}
    return tiny_config(**{**values, **overrides})


def _rollout(env, seed: int, steps: int = 6):
    obs, _ = env.reset(seed=seed)
    frames, tcp = [obs["image"]["overhead_camera"]["rgb"]], [obs["extra"]["tcp_pose"]]
    for step in range(steps):
        obs, *_ = env.step(np.array([0.01, 0.005 * (step % 3 - 1), -0.004, 0, 0, 0, 0.3 * (step % 2)]))
        frames.append(obs["image"]["overhead_camera"]["rgb"])
        tcp.append(obs["extra"]["tcp_pose"])
    return np.stack(frames), np.stack(tcp)


@pytest.mark.parametrize("jitter, appearance", [(0.0, "sim"), (0.02, "sim"), (0.0, "real")])
def test_the_stand_in_ignores_the_reset_seed_exactly_when_it_says_so(jitter, appearance):
    env = DrawerTrialEnv("standin", task="OpenTopDrawer", pose="b1", appearance=appearance,
                         config=DrawerStandInConfig(image_width=80, image_height=64, tcp_start_jitter=jitter))
    try:
        (frames_a, tcp_a), (frames_b, tcp_b) = _rollout(env, seed=11), _rollout(env, seed=12345)
        same = np.array_equal(frames_a, frames_b) and np.array_equal(tcp_a, tcp_b)
        assert same is (not env.reset_seed_changes_episode())
        assert env.reset_seed_changes_episode() is reset_seed_changes_episode("standin", appearance, env.backend_kwargs["config"])
    finally:
        env.close()
    assert reset_seed_changes_episode("simpler", shader_dir="ibl") is False  # rasterised: checked on SIMPLER
    assert reset_seed_changes_episode("simpler") is True  # ray-traced (SIMPLER's default): not shown to repeat
    with pytest.raises(ValueError, match="unknown backend"):
        reset_seed_changes_episode("mujoco")


@pytest.mark.parametrize("spec, deterministic", [(PERFECT, True), (NOISY, False)])
def test_a_policy_called_deterministic_acts_the_same_under_any_episode_seed(spec, deterministic):
    assert is_deterministic(spec) is deterministic
    env = DrawerTrialEnv("standin", task="OpenTopDrawer", pose="b1", obs_mode="state_dict")
    observations = []
    obs, _ = env.reset(seed=0)
    for _ in range(20):
        observations.append(obs)
        obs, *_ = env.step(np.array([0.01, 0.0, -0.01, 0, 0, 0, 0.0]))
    env.close()
    batch = {key: {k: np.stack([o[key][k] for o in observations]) for k in observations[0][key]}
             for key in ("agent", "extra")}
    actions = []
    for seed in (1, 2, 3, 4):
        policy = load_policy(spec, _run_once_config())
        policy.seed_episodes([seed] * len(observations))
        policy.reset(["open top drawer"] * len(observations))
        actions.append(np.concatenate([policy.act(batch, ["open top drawer"] * len(observations)).actions
                                       for _ in range(3)]))
    assert all(np.array_equal(actions[0], other) for other in actions[1:]) is deterministic


def test_repeats_are_planned_only_for_deterministic_policies_in_seed_free_domains_of_a_seed_free_simulator():
    config = _run_once_config(domains=(UNEDITED, REAL), seeds=2)
    plan = pending_episodes(config, set())
    planned = {(e.policy.name, e.domain, e.seed) for episodes in plan.values() for e in episodes}
    assert (PERFECT.name, UNEDITED, 1) not in planned  # copied, not run
    assert {(PERFECT.name, UNEDITED, 0), (PERFECT.name, REAL, 1), (NOISY.name, UNEDITED, 1)} <= planned
    assert sum(map(len, plan.values())) == config.expected_episodes() - 2  # two trials' seed-1 twins
    assert sum(map(len, pending_episodes(config, set(), run_repeats_once=False).values())) == config.expected_episodes()
    jittered = _run_once_config(standin_start_jitter=None)  # the stand-in's default start jitter: seed matters
    assert sum(map(len, pending_episodes(jittered, set()).values())) == jittered.expected_episodes()
    assert repeat_source_seed(jittered, PERFECT, UNEDITED, 2) is None
    assert repeat_source_seed(config, PERFECT, UNEDITED, 2) == 0
    assert repeat_source_seed(config, PERFECT, REAL, 2) is None  # the real camera's noise follows the seed
    assert repeat_source_seed(config, PERFECT, UNEDITED, 0) is None
    simpler = full_config(policies=(PolicySpec("rt1", RT1, checkpoint="ckpt"),), domains=(UNEDITED,))
    assert repeat_source_seed(simpler, simpler.policies[0], UNEDITED, 1) is None  # ray-traced by default
    rasterised = replace(simpler, env_kwargs={"shader_dir": "ibl"})
    assert repeat_source_seed(rasterised, rasterised.policies[0], UNEDITED, 1) == 0


def test_copied_repeats_equal_the_episodes_a_run_of_every_seed_gives(tmp_path):
    config = _run_once_config()
    once = run_evaluation(config, tmp_path / "once", SYNC)
    assert (once.episodes_run, once.episodes_copied) == (2 + 6, 4)  # the perfect policy ran seed 0 only
    every = run_evaluation(config, tmp_path / "every", replace(SYNC, run_repeats_once=False))
    assert (every.episodes_run, every.episodes_copied) == (12, 0)

    def outcomes(run):
        return {e.key: (e.success, e.steps, e.first_success_step, e.drawer_qpos, e.reset_seed)
                for e in ResultStore.open(tmp_path / run).episodes()}

    assert outcomes("once") == outcomes("every")
    copies = [e for e in ResultStore.open(tmp_path / "once").episodes() if e.repeat_of_seed is not None]
    assert sorted((e.policy, e.seed) for e in copies) == [(PERFECT.name, 1)] * 2 + [(PERFECT.name, 2)] * 2
    assert all(e.repeat_of_seed == 0 and e.wall_s == 0.0 for e in copies)
    # The copies count zero; the run of every seed finds the same repeats by their identical outcomes.
    assert independent_episodes(ResultStore.open(tmp_path / "once").episodes(), config) == 2 + 6
    assert independent_episodes(ResultStore.open(tmp_path / "every").episodes(), config) == 2 + 6


def _kill_after_the_first_twins(config, run_dir) -> list[EpisodeResult]:
    """Runs ``config`` in ``run_dir`` until the perfect policy's first two episodes (seed-0 twins) are stored,
    then kills it; returns the episodes it stored."""
    stored = []

    def die_after_first_twins(episode):
        stored.append(episode)
        if sum(e.policy == PERFECT.name for e in stored) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(config, run_dir, SYNC, on_episode=die_after_first_twins)
    return stored


def test_a_killed_run_copies_the_repeats_of_twins_it_stored_before_dying(tmp_path):
    config = _run_once_config()
    _kill_after_the_first_twins(config, tmp_path)
    assert not any(e.repeat_of_seed is not None for e in ResultStore.open(tmp_path).episodes())
    resumed = run_evaluation(config, tmp_path, SYNC)
    assert resumed.episodes_copied == 4 and resumed.episodes_run == 6
    assert len(ResultStore.open(tmp_path).episodes()) == config.expected_episodes()


def test_running_every_seed_after_a_killed_run_once_runs_the_repeats_instead_of_copying_them(tmp_path):
    config = _run_once_config()
    stored = _kill_after_the_first_twins(config, tmp_path)
    every = run_evaluation(config, tmp_path, replace(SYNC, run_repeats_once=False))
    assert (every.episodes_run, every.episodes_copied) == (config.expected_episodes() - len(stored), 0)
    assert not any(e.repeat_of_seed is not None for e in ResultStore.open(tmp_path).episodes())


def test_a_schema_2_database_gains_the_repeat_column_and_keeps_its_episodes(tmp_path):
    config = _run_once_config(seeds=1)
    store = ResultStore.create(tmp_path, config)
    store.add(_episode(PERFECT.name, UNEDITED, 0, TRIALS[0], True, 20, 0.2, config_hash=config.config_hash))
    with sqlite3.connect(store.path) as connection:  # as the harness wrote it before repeats were copied
        connection.execute("ALTER TABLE episodes DROP COLUMN repeat_of_seed")
        connection.execute("UPDATE run SET value = '2' WHERE key = 'schema_version'")
    episodes = ResultStore.open(tmp_path).episodes()
    assert len(episodes) == 1 and episodes[0].repeat_of_seed is None
    assert ResultStore.create(tmp_path, config).done_keys() == {episodes[0].key}
    with sqlite3.connect(store.path) as connection:
        assert connection.execute("SELECT value FROM run WHERE key = 'schema_version'").fetchone()[0] == "3"


def test_the_shader_option_reaches_simpler_and_decides_what_runs_once(tmp_path):
    spec = importlib.util.spec_from_file_location("eval_policies", REPO / "scripts" / "eval_policies.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    checkpoint = ["--policies", str(tmp_path / "rt1"), "--domains", "unedited"]
    rasterised, _, _ = script.build_config(script.parse_args([*checkpoint, "--shader", "ibl"]))
    assert rasterised.env_kwargs == {"shader_dir": "ibl"}
    assert repeat_source_seed(rasterised, rasterised.policies[0], UNEDITED, 2) == 0
    ray_traced, _, _ = script.build_config(script.parse_args(checkpoint))
    assert repeat_source_seed(ray_traced, ray_traced.policies[0], UNEDITED, 2) is None
    with pytest.raises(SystemExit):
        script.parse_args(["--preset", "tiny", "--shader", "ibl"])
