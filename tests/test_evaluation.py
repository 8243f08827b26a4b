"""The evaluation harness: resume after a kill, config refusal, report rebuild, graded order, metrics."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from dataclasses import astuple, replace
from pathlib import Path

import numpy as np
import pytest

from sim2real_edit.evaluation import (
    ConfigMismatchError,
    ExecutionOptions,
    ResultStore,
    build_report,
    graded_stand_ins,
    run_evaluation,
    tiny_config,
    write_report,
)
from sim2real_edit.evaluation.config import spread_trials
from sim2real_edit.evaluation.results import DATABASE_NAME
from sim2real_edit.evaluation.runner import _final_value, episode_reset_seed
from sim2real_edit.metrics import mmrv, pearson_r
from sim2real_edit.real_world import real_world_success

REPO = Path(__file__).resolve().parents[1]
SYNC = ExecutionOptions(num_envs=4, vectorization_mode="sync", progress=False)


@pytest.fixture(scope="module", autouse=True)
def isolated_home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIM2REAL_EDIT_HOME", str(tmp_path_factory.getbasetemp() / "home"))
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
    # A folder whose run stored no episode yet takes the new config.
    ResultStore.create(tmp_path, small_config())
    assert ResultStore.create(tmp_path, small_config(seeds=1)).config.seeds == 1


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
    for column in ("open", "close", "average"):
        sim, real = {}, {}
        for policy, real_name in stands_in_for.items():
            by_action = {a: np.mean([e.success for e in episodes if e.policy == policy and e.action == a])
                         for a in ("open", "close")}
            sim[policy] = (by_action["open"] + by_action["close"]) / 2 if column == "average" else by_action[column]
            real[policy] = getattr(table[real_name], column)
        assert domain["agreement"][column]["mmrv"] == pytest.approx(mmrv(sim, real), abs=1e-12)
        assert domain["agreement"][column]["pearson_r"] == pytest.approx(pearson_r(sim, real), abs=1e-12)
        reported = {r["policy"]: r[column]["rate"] for r in domain["rates"]}
        assert reported == pytest.approx(sim)
    low, high = domain["rates"][1]["open"]["low"], domain["rates"][1]["open"]["high"]
    assert low < domain["rates"][1]["open"]["rate"] < high
    metrics = [domain["agreement"][column][name] for column in ("average", "open", "close")
               for name in ("mmrv", "pearson_r")]
    row = f"| unedited | {domain['episodes']} | " + " | ".join(f"{value:.3f}" for value in metrics) + " |"
    assert row in (run_dir / "report.md").read_text()


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
    assert "demonstrates the machinery, not real results" in printed
    first = {name: (run_dir / name).read_text() for name in ("report.md", "report.json")}
    assert "stand-in for RT-1 (Converged)" in first["report.md"]
    assert "## Edited vs edited+composited" in first["report.md"]
    plots = sorted(path.name for path in (run_dir / "plots").glob("*.png"))
    assert plots == ["agreement.png", "scatter_edited-plus-composited-wood.png", "scatter_edited-wood.png",
                     "scatter_unedited.png"]
    for name in first:
        (run_dir / name).unlink()
    for path in (run_dir / "plots").glob("*.png"):
        path.unlink()
    script.main(["--report", str(run_dir)])
    assert {name: (run_dir / name).read_text() for name in first} == first
    assert len(list((run_dir / "plots").glob("*.png"))) == 4
    report = build_report(run_dir)
    assert [d.name for d in report.domains] == ["unedited", "edited/wood", "edited+composited/wood"]
    assert all(d.episodes == 4 for d in report.domains)
    # The same command again finds every episode stored, builds no env and runs nothing.
    script.main(command)
    assert "ran 0 episodes (12 were already done)" in capsys.readouterr().out
