"""The evaluation harness: resume after a kill, config refusal, report rebuild, graded order, metrics."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from dataclasses import astuple, replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from envs.edited import EditedVectorEnv
from envs.protocol import DEFAULT_URDF_VERSION, DRAWERS, URDF_VERSIONS
from envs.standin import DrawerStandIn
from envs.trial_env import DrawerTrialEnv, parse_trial
from evaluation import (
    ConfigMismatchError,
    ExecutionOptions,
    ResultStore,
    build_report,
    graded_stand_ins,
    run_evaluation,
    tiny_config,
    write_report,
)
from evaluation.config import select_urdf_versions, spread_trials
from evaluation.report import write_plots
from evaluation.results import DATABASE_NAME
from evaluation.runner import (
    PendingEpisode,
    _final_value,
    episode_reset_seed,
    make_domain_env,
    run_batch,
)
from policies.base import PolicyStep
from policies.scripted import ScriptedDrawerPolicy
from sim2real_edit.metrics import PairedOutcomes, joint_bootstrap, mmrv, pearson_r, rate_interval
from sim2real_edit.real_world import real_world_success

pytestmark = pytest.mark.usefixtures("tiny_base")  # the tiny preset's base: the session's small build

REPO = Path(__file__).resolve().parents[1]
SYNC = ExecutionOptions(num_envs=4, vectorization_mode="sync", progress=False)


@pytest.fixture(scope="module", autouse=True)
def isolated_home(tmp_path_factory, small_tiny_base_folder):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIM2REAL_EDIT_HOME", str(tmp_path_factory.getbasetemp() / "home"))
        # module-scoped fixtures (Ray workers too) need the session base before any function fixture runs
        patch.setenv("SIM2REAL_EDIT_TINY_BASE", str(small_tiny_base_folder))
        yield


def small_config(**overrides):
    """Two policies x 3 trials x 2 seeds on the rendered stand-in, episodes of at most 30 steps: 12 episodes."""
    values = {
        "policies": graded_stand_ins(["scripted-expert", "scripted-random"]),
        "trials": ("OpenTopDrawer/b1", "CloseMiddleDrawer/a1", "OpenBottomDrawer/c2"),
        "seeds": 2,
        "domains": ("unedited",),
        "max_episode_steps": 30,
        "standin_camera": (80, 64),
    }
    return tiny_config(**{**values, **overrides})


def outcomes(run_dir: Path) -> list[tuple]:
    """Every stored episode without its wall time, in key order."""
    return [astuple(replace(episode, wall_s=0.0)) for episode in ResultStore.open(run_dir).episodes()]


class SimulatedKill(Exception):
    pass


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    summary = run_evaluation(small_config(), run_dir, SYNC)
    return run_dir, summary


def test_resume_after_a_kill_repeats_nothing_and_loses_nothing(uninterrupted_run, tmp_path):
    reference_dir, reference = uninterrupted_run
    assert reference.episodes_run == 12 and len(outcomes(reference_dir)) == 12

    stored: list = []

    def kill_after_five(episode):
        stored.append(episode.key)
        if len(stored) == 5:
            raise SimulatedKill

    with pytest.raises(SimulatedKill):  # killed in the middle of a batch of the unedited domain
        run_evaluation(small_config(), tmp_path, replace(SYNC, num_envs=3), on_episode=kill_after_five)
    assert len(outcomes(tmp_path)) == 5  # every episode that finished before the kill was written at once

    resumed: list = []
    summary = run_evaluation(small_config(), tmp_path, replace(SYNC, num_envs=8), on_episode=lambda e: resumed.append(e.key))
    assert (summary.episodes_already_done, summary.episodes_run) == (5, 7)
    assert not set(resumed) & set(stored)  # nothing repeated
    # Nothing lost, nothing duplicated, and other batch sizes give the very same episodes.
    assert outcomes(tmp_path) == outcomes(reference_dir)
    with sqlite3.connect(tmp_path / DATABASE_NAME) as connection:
        keys = connection.execute("SELECT policy, domain, style, seed, task, pose FROM episodes").fetchall()
    assert len(keys) == len(set(keys)) == 12
    # The episodes are real: the expert opened or closed something and the step limit held.
    rows = ResultStore.open(tmp_path).episodes()
    assert any(row.success for row in rows) and not all(row.success for row in rows)
    assert all(1 <= row.steps <= 30 for row in rows)
    assert len({round(row.drawer_qpos, 6) for row in rows}) > 2

    again = run_evaluation(small_config(), tmp_path, SYNC)
    assert again.episodes_run == 0 and outcomes(tmp_path) == outcomes(reference_dir)


def test_a_run_with_another_config_is_refused(uninterrupted_run, tmp_path):
    run_dir, _ = uninterrupted_run
    before = outcomes(run_dir)
    with pytest.raises(ConfigMismatchError, match=r"(?s)seeds: stored 2, requested 3.*new --run-dir"):
        run_evaluation(small_config(seeds=3), run_dir, SYNC)
    assert outcomes(run_dir) == before
    assert ResultStore.open(run_dir).config == small_config()
    # Execution options are not part of the config: another batch size continues the same run.
    assert run_evaluation(small_config(), run_dir, replace(SYNC, num_envs=1)).episodes_run == 0
    # The stored config is never replaced, not even before the first episode.
    ResultStore.create(tmp_path, small_config())
    with pytest.raises(ConfigMismatchError, match="holds no episodes yet: delete"):
        ResultStore.create(tmp_path, small_config(seeds=1))
    assert ResultStore.open(tmp_path).config == small_config()


class OpensThenClosesAgain:
    """Opens the drawer like the expert script, then, once it is 0.2 m out (past the 0.15 m success
    threshold), pushes it back in while still holding the handle; never says terminate."""

    name = "opens-then-closes-again"

    def __init__(self):
        self.expert = ScriptedDrawerPolicy(1.0, seed=0)

    def reset(self, instructions):
        self.expert.reset(instructions)
        self.targets = [DRAWERS.index(text.split()[1]) for text in instructions]
        self.closing = np.zeros(len(instructions), dtype=bool)

    def act(self, observations, instructions):
        actions = self.expert.act(observations, instructions).actions.copy()
        opening = np.asarray(observations["extra"]["drawer_qpos"])[np.arange(len(self.targets)), self.targets]
        self.closing |= opening >= 0.2
        actions[self.closing] = [0.04, 0, 0, 0, 0, 0, 0]  # the robot faces the cabinet: forward pushes it in
        return PolicyStep(actions, terminate=np.zeros(len(instructions), dtype=bool))


class TerminatedMirrorsSuccess(gym.Wrapper):
    """What SIMPLER's drawer envs do: ``terminated`` is True at every step where the task is met."""

    def step(self, action):
        obs, reward, _, truncated, info = self.env.step(action)
        return obs, reward, bool(info["success"]), truncated, info


class SimplerLikeTrialEnv(DrawerTrialEnv):
    def _make(self, trial):
        return TerminatedMirrorsSuccess(super()._make(trial))


def state_only_config(**overrides):
    return tiny_config(**{"trials": ("OpenTopDrawer/b1",), "domains": ("unedited",), "standin_camera": None,
                          "env_kwargs": {"obs_mode": "state_dict"}, "max_episode_steps": 40, **overrides})


def pending(config, trial="OpenTopDrawer/b1", urdf_version=DEFAULT_URDF_VERSION):
    return [PendingEpisode(config.policies[0], "unedited", "", urdf_version, 0, parse_trial(trial))]


@pytest.mark.parametrize("simulator", ["harness env", "terminated mirrors success"])
def test_an_episode_is_judged_at_its_last_step_as_simpler_does(simulator):
    config = state_only_config()
    if simulator == "harness env":
        env = make_domain_env(config, SYNC, "unedited", "", DEFAULT_URDF_VERSION, 1)
    else:  # SIMPLER's envs report terminated = success; that must not end the episode
        env = EditedVectorEnv(gym.vector.SyncVectorEnv(
            [lambda: SimplerLikeTrialEnv("standin", success_ends_episode=False, obs_mode="state_dict")]), None)
    try:
        (result,) = run_batch(env, OpensThenClosesAgain(), pending(config), config)
        # The drawer passed the threshold and was closed again: a failure, judged at the step limit.
        assert result.first_success_step is not None and result.first_success_step < 30
        assert (result.success, result.steps, result.drawer_qpos) == (False, 40, pytest.approx(0.0))
        # The expert opens it, leaves it open and says terminate: a success at its terminate step.
        (expert,) = run_batch(env, ScriptedDrawerPolicy(1.0, seed=0), pending(config), config)
        assert expert.success and expert.first_success_step < expert.steps < 40 and expert.drawer_qpos >= 0.15
        (untouched,) = run_batch(env, ScriptedDrawerPolicy(0.0, seed=0), pending(config, "CloseTopDrawer/b1"),
                                 config)
        assert untouched.first_success_step is None and not untouched.success
    finally:
        env.close()


def test_an_env_that_ends_episodes_on_success_is_refused():
    config = state_only_config()
    env = EditedVectorEnv(gym.vector.SyncVectorEnv([lambda: SimplerLikeTrialEnv("standin", obs_mode="state_dict")]),
                          None)
    try:
        with pytest.raises(RuntimeError, match="success_ends_episode=False"):
            list(run_batch(env, OpensThenClosesAgain(), pending(config), config))
    finally:
        env.close()


def test_urdf_versions_are_stored_per_episode_resumed_and_reported(tmp_path):
    config = small_config(trials=("OpenTopDrawer/b1", "CloseMiddleDrawer/a1"), seeds=1, urdf_versions=URDF_VERSIONS)
    assert config.expected_episodes() == 2 * 2 * 4 and config.config_hash != small_config().config_hash
    stored: list = []

    def kill_after_five(episode):
        stored.append(episode.key)
        if len(stored) == 5:
            raise SimulatedKill

    with pytest.raises(SimulatedKill):
        run_evaluation(config, tmp_path, SYNC, on_episode=kill_after_five)
    summary = run_evaluation(config, tmp_path, SYNC)
    assert (summary.episodes_already_done, summary.episodes_run) == (5, 11)
    episodes = ResultStore.open(tmp_path).episodes()
    assert sorted(e.key for e in episodes) == sorted(
        (policy.name, "unedited", "", urdf, 0, trial.split("/")[0], trial.split("/")[1])
        for policy in config.policies for urdf in URDF_VERSIONS for trial in config.trials)
    # The stand-in has no URDFs: it records the name and runs the same episode for all four.
    by_run = {}
    for e in episodes:
        by_run.setdefault((e.policy, e.task), set()).add((e.success, e.steps, round(e.drawer_qpos, 9)))
    assert all(len(outcomes) == 1 for outcomes in by_run.values())

    report = write_report(tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "SIMPLER's four visual-matching versions" in markdown and "by robot URDF version" in markdown
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["run"]["urdf_versions"] == list(URDF_VERSIONS)
    (domain,) = saved["domains"]
    assert list(domain["rates_by_urdf_version"]) == list(URDF_VERSIONS)
    # A trial's four URDF versions are one cluster of the bootstrap: 4 episodes, 1 trial.
    open_rate = report.domain("unedited").rates[0].open
    assert (open_rate.episodes, open_rate.trials) == (4, 1)


def test_urdf_version_names_follow_simpler(monkeypatch):
    assert select_urdf_versions(None) == (DEFAULT_URDF_VERSION,) == ("recolor_cabinet_visual_matching_1",)
    assert select_urdf_versions(["all"]) == URDF_VERSIONS
    assert select_urdf_versions(["None", "recolor_tabletop_visual_matching_2"]) == (
        "recolor_tabletop_visual_matching_2", "none")
    with pytest.raises(ValueError, match="choose from recolor_cabinet_visual_matching_1"):
        select_urdf_versions(["recolor_cabinet"])
    with pytest.raises(ValueError, match="urdf_versions"):
        small_config(env_kwargs={"urdf_version": "none"})
    # SIMPLER gets its own spelling: None for the original URDF.
    made = []
    monkeypatch.setattr("envs.simpler.make_simpler_drawer",
                        lambda task, pose, **kwargs: made.append(kwargs) or DrawerStandIn(task, pose))
    for name, expected in (("none", None), ("recolor_tabletop_visual_matching_1", "recolor_tabletop_visual_matching_1")):
        env = DrawerTrialEnv("simpler", task="OpenTopDrawer", pose="a0", urdf_version=name, shader_dir="ibl")
        assert made[-1] == {"urdf_version": expected, "shader_dir": "ibl"} and env.urdf_version == name


def test_reset_seeds_depend_only_on_seed_index_and_trial():
    assert episode_reset_seed(0, "OpenTopDrawer/a0") == episode_reset_seed(0, "OpenTopDrawer/a0")
    seeds = {episode_reset_seed(s, key) for s in range(3) for key in ("OpenTopDrawer/a0", "OpenTopDrawer/a1")}
    assert len(seeds) == 6


def test_final_info_is_read_the_way_each_gymnasium_version_writes_it():
    info = {"success": np.array([False, False]), "trial": np.array(["A/a0", "B/b0"], dtype=object)}
    assert not _final_value(info, "success", 1, env_ended=False)
    # gymnasium 0.29: the ended env was reset within the step; its last info is one dict per env
    legacy = {**info, "final_info": np.array([None, {"success": True, "trial": "B/b0"}], dtype=object)}
    assert _final_value(legacy, "success", 1, env_ended=True)
    # gymnasium 1.x same-step autoreset: one batched dict
    batched = {**info, "final_info": {"success": np.array([False, True])}}
    assert _final_value(batched, "success", 1, env_ended=True)


@pytest.fixture(scope="module")
def graded_run(tmp_path_factory):
    """The four graded stand-ins on 18 trials (every task at three poses) in the unedited stand-in, with state
    observations only: the scripted policies read privileged state, so rendering would not change a thing."""
    run_dir = tmp_path_factory.mktemp("graded")
    config = tiny_config(trials=spread_trials(3), domains=("unedited",), standin_camera=None,
                         env_kwargs={"obs_mode": "state_dict"})
    run_evaluation(config, run_dir, ExecutionOptions(num_envs=18, vectorization_mode="sync", progress=False))
    return run_dir, write_report(run_dir)


def test_graded_scripted_policies_come_out_in_order(graded_run):
    _, report = graded_run
    rates = {r.policy: r.average.rate for r in report.domain("unedited").rates}
    order = ["scripted-expert", "scripted-good", "scripted-poor", "scripted-random"]
    assert [rates[name] for name in order] == sorted(rates.values(), reverse=True)
    assert len(set(rates.values())) == 4, rates
    assert report.domain("unedited").agreement["average"].mmrv == 0.0  # stand-ins ordered like the real table


def test_report_metrics_equal_the_metrics_of_the_database_rates(graded_run):
    run_dir, _ = graded_run
    episodes = ResultStore.open(run_dir).episodes()
    table = real_world_success()
    stands_in_for = {p.name: p.real_world_name for p in ResultStore.open(run_dir).config.policies}
    report = json.loads((run_dir / "report.json").read_text())
    (domain,) = report["domains"]

    def trials(policy, action):  # per-trial outcome arrays, read from the database rows
        keys = sorted({(e.task, e.pose) for e in episodes if e.policy == policy and e.action == action})
        return [[e.success for e in episodes if e.policy == policy and (e.task, e.pose) == key] for key in keys]

    # One joint bootstrap over the policies' trials, the table's rates redrawn from their 27 trials each.
    config = ResultStore.open(run_dir).config
    outcomes = {policy: np.array([[e.success for e in episodes if e.policy == policy and (e.task, e.pose) ==
                                   (trial.task.name, trial.pose)] for trial in config.trial_list()], dtype=float)
                for policy in stands_in_for}
    joint = joint_bootstrap(
        PairedOutcomes(tuple(trial.task.action for trial in config.trial_list()), {"unedited": outcomes}),
        reference="table", baseline=None, n_boot=10_000, seed=0,
        reference_table={policy: table[name] for policy, name in stands_in_for.items()})
    assert joint.reference_draws == "binomial"
    for column in ("open", "close", "average"):
        sim, real, strata = {}, {}, {}
        for policy, real_name in stands_in_for.items():
            by_action = {a: np.mean([e.success for e in episodes if e.policy == policy and e.action == a])
                         for a in ("open", "close")}
            sim[policy] = (by_action["open"] + by_action["close"]) / 2 if column == "average" else by_action[column]
            real[policy] = getattr(table[real_name], column)
            strata[policy] = [trials(policy, a) for a in (("open", "close") if column == "average" else (column,))]
        agreement = domain["agreement"][column]
        assert agreement["mmrv"] == pytest.approx(mmrv(sim, real), abs=1e-12)
        assert agreement["pearson_r"] == pytest.approx(pearson_r(sim, real), abs=1e-12)
        intervals = joint.domains["unedited"].columns[column]
        assert agreement["mmrv_interval"] == pytest.approx(list(intervals.mmrv_interval))
        assert agreement["pearson_r_interval"] == pytest.approx(list(intervals.pearson_r_interval))
        assert agreement["pearson_r_undefined_share"] == intervals.pearson_r_undefined_share
        assert agreement["reference_draws"] == "binomial"
        reported = {r["policy"]: r[column]["rate"] for r in domain["rates"]}
        assert reported == pytest.approx(sim)
        for rates in domain["rates"]:
            interval = rate_interval(strata[rates["policy"]], n_boot=10_000, seed=0)
            assert (rates[column]["low"], rates[column]["high"], rates[column]["method"]) == (
                pytest.approx(interval.low), pytest.approx(interval.high), interval.method)
    low, high = domain["rates"][1]["open"]["low"], domain["rates"][1]["open"]["high"]
    assert low < domain["rates"][1]["open"]["rate"] < high
    assert domain["rates"][1]["open"]["trials"] == 9 and domain["rates"][1]["average"]["trials"] == 18
    cells = [f"{agreement[name]:.3f} [{agreement[name + '_interval'][0]:.3f}, {agreement[name + '_interval'][1]:.3f}]"
             + (f" (undef. {agreement['pearson_r_undefined_share']:.0%})" if name == "pearson_r" else "")
             for agreement in (domain["agreement"][column] for column in ("average", "open", "close"))
             for name in ("mmrv", "pearson_r")]
    row = f"| unedited | {domain['episodes']} | " + " | ".join(cells) + " |"
    assert row in (run_dir / "report.md").read_text()


def test_plots_draw_intervals_that_do_not_contain_their_point(graded_run, tmp_path):
    _, report = graded_run
    (domain,) = report.domains
    average = domain.agreement["average"]
    # A percentile interval need not contain the point estimate (MMRV 0 here, its interval above it).
    shifted = replace(average, mmrv_interval=(average.mmrv + 0.1, average.mmrv + 0.2))
    report = replace(report, domains=[replace(domain, agreement={**domain.agreement, "average": shifted})])
    written = write_plots(report, tmp_path)
    assert sorted(path.name for path in written) == ["agreement.png", "policy_rates.png", "scatter_unedited.png"]


def load_script():
    spec = importlib.util.spec_from_file_location("eval_policies", REPO / "scripts" / "eval_policies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_runs_and_report_rebuilds_identically_from_the_database(tmp_path, capsys):
    script = load_script()
    run_dir = tmp_path / "run"
    command = ["--preset", "tiny", "--policies", "scripted-expert", "scripted-random", "--trials",
               "OpenTopDrawer/b1", "CloseTopDrawer/c0", "--domains", "unedited", "edited", "edited+composited",
               "--max-episode-steps", "6", "--num-envs", "2", "--run-dir", str(run_dir)]
    script.main(command)
    printed = capsys.readouterr().out
    assert "a miniature of the method, not real results" in printed
    first = {name: (run_dir / name).read_text() for name in ("report.md", "report.json")}
    assert "stand-in for RT-1 (Converged)" in first["report.md"]
    assert "## Edited vs edited+composited" in first["report.md"]
    plots = sorted(path.name for path in (run_dir / "plots").glob("*.png"))
    assert plots == ["agreement.png", "policy_rates.png", "scatter_edited-plus-composited-wood.png",
                     "scatter_edited-wood.png", "scatter_unedited.png"]
    for name in first:
        (run_dir / name).unlink()
    for path in (run_dir / "plots").glob("*.png"):
        path.unlink()
    script.main(["--report", str(run_dir)])
    assert {name: (run_dir / name).read_text() for name in first} == first
    assert len(list((run_dir / "plots").glob("*.png"))) == 5
    report = build_report(run_dir)
    assert [d.name for d in report.domains] == ["unedited", "edited/wood", "edited+composited/wood"]
    assert all(d.episodes == 4 for d in report.domains)
    # The same command again finds every episode stored, builds no env and runs nothing.
    script.main(command)
    assert "ran 0 episodes (12 were already done)" in capsys.readouterr().out
