"""The experiment's paired design: every domain runs the real world's trials and reset seeds, the ceiling and
floor are what they say, and the report measures every domain against the run's own real world."""

import json
import sqlite3

import numpy as np
import pytest

from envs.cabinet_gain import CabinetGainEditor, colour_transfer_gains, oracle_gains
from envs.standin import CABINET_ALBEDO, DrawerStandIn
from envs.tiny_base import tiny_camera_config
from evaluation.config import (
    CEILING,
    COLOUR_TRANSFER,
    FLOOR,
    GAIN_ORACLE,
    REAL,
    UNEDITED,
    ExecutionOptions,
    tiny_config,
)
from evaluation.report import write_report
from evaluation.runner import run_evaluation

CAMERA = tiny_camera_config()
PAIRED_DOMAINS = (UNEDITED, COLOUR_TRANSFER, GAIN_ORACLE, CEILING, FLOOR, REAL)
TRIALS = ("OpenTopDrawer/a0", "OpenMiddleDrawer/b1", "CloseTopDrawer/c2", "CloseBottomDrawer/b0")


def _start(appearance: str, noise_stream: int = 0, seed: int = 7, pose: str = "b1"):
    env = DrawerStandIn("OpenTopDrawer", pose, config=CAMERA, appearance=appearance, noise_stream=noise_stream)
    return env, env.reset(seed=seed)[0]["image"]["overhead_camera"]["rgb"]


def test_ceiling_frame_is_the_real_frame_inside_the_mask_and_the_sim_frame_outside_it():
    sim_env, sim = _start("sim")
    _, real = _start("real")
    _, ceiling = _start("ceiling")
    mask = sim_env.cabinet_mask()
    assert 0 < mask.sum() < mask.size
    np.testing.assert_array_equal(ceiling[mask], real[mask])
    np.testing.assert_array_equal(ceiling[~mask], sim[~mask])
    assert np.abs(ceiling[mask].astype(int) - sim[mask]).mean() > 10  # the cabinet really is another one


def test_floor_noise_stream_redraws_only_the_sensor_noise():
    _, real = _start("real")
    _, again = _start("real")
    _, fresh = _start("real", noise_stream=1)
    np.testing.assert_array_equal(real, again)
    difference = fresh.astype(int) - real
    assert (difference != 0).mean() > 0.5  # fresh noise nearly everywhere ...
    assert abs(difference.mean()) < 0.5 and difference.std() < 6  # ... of the camera's size (sigma 3, twice)


def test_noise_stream_must_be_a_non_negative_integer():
    with pytest.raises(ValueError, match="noise_stream"):
        DrawerStandIn("OpenTopDrawer", "a0", config=CAMERA, appearance="real", noise_stream=-1)


def test_cabinet_gain_changes_only_the_cabinet_and_keeps_its_shading():
    env, sim = _start("sim")
    mask = env.cabinet_mask()
    editor = CabinetGainEditor((1.2, 1.0, 0.5))
    edited = editor.edit(sim[None], [0], mask[None])[0]
    np.testing.assert_array_equal(edited[~mask], sim[~mask])
    expected = np.clip(np.rint(sim[mask] * np.array([1.2, 1.0, 0.5])), 0, 255)
    np.testing.assert_array_equal(edited[mask], expected)
    with pytest.raises(ValueError, match="masks"):
        editor.edit(sim[None], [0], None)


def test_gain_oracle_moves_the_sim_cabinet_to_the_real_mean_and_colour_transfer_to_the_exemplars():
    env, sim = _start("sim")
    _, real = _start("real")
    mask = env.cabinet_mask()
    gains = oracle_gains(sim[None], real[None], mask[None])
    edited = CabinetGainEditor(gains).edit(sim[None], [0], mask[None])[0]
    np.testing.assert_allclose(edited[mask].mean(axis=0), real[mask].mean(axis=0), atol=1.5)
    exemplar = np.full((8, 8, 3), (200, 100, 50), np.uint8)
    np.testing.assert_allclose(colour_transfer_gains([exemplar], CABINET_ALBEDO),
                               np.array([200, 100, 50]) / CABINET_ALBEDO)


def test_the_judges_and_the_stand_in_agree_on_the_simulator_cabinet_albedo():
    from sim2real_edit.feedback.analytic import STAND_IN_CABINET_ALBEDO

    assert tuple(CABINET_ALBEDO) == STAND_IN_CABINET_ALBEDO  # sim2real_edit cannot import envs: two copies


def test_real_world_domains_need_the_stand_in_and_the_real_domain():
    from evaluation.config import RT1, EvalConfig, PolicySpec

    with pytest.raises(ValueError, match="add 'real'"):
        tiny_config(domains=(UNEDITED, CEILING))
    rt1 = (PolicySpec("rt1", RT1, checkpoint="ckpt"),)
    with pytest.raises(ValueError, match="stand-in"):
        EvalConfig(preset="full", policies=rt1, domains=(UNEDITED, REAL))
    with pytest.raises(ValueError, match="albedo"):  # refused when the config is made, not when its env is
        EvalConfig(preset="full", policies=rt1, domains=(UNEDITED, COLOUR_TRANSFER))


@pytest.fixture(scope="module")
def paired_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("paired-run")
    config = tiny_config(trials=TRIALS, seeds=2, domains=PAIRED_DOMAINS, styles=("white_marble",),
                         max_episode_steps=6, standin_camera=(160, 128))
    run_evaluation(config, run_dir, ExecutionOptions(num_envs=8, vectorization_mode="sync", progress=False))
    return run_dir, config


def test_every_domain_runs_the_real_worlds_trials_and_reset_seeds(paired_run):
    run_dir, config = paired_run
    with sqlite3.connect(run_dir / "episodes.sqlite") as connection:
        rows = connection.execute("SELECT domain, policy, task, pose, seed, reset_seed FROM episodes").fetchall()
    by_domain: dict[str, set] = {}
    for domain, *episode in rows:
        by_domain.setdefault(domain, set()).add(tuple(episode))
    assert set(by_domain) == set(PAIRED_DOMAINS)
    twins = by_domain[REAL]
    assert len(twins) == len(config.policies) * len(TRIALS) * 2
    for domain, episodes in by_domain.items():
        assert episodes == twins, domain


def test_paired_report_has_ceiling_floor_mae_and_differences(paired_run):
    run_dir, _ = paired_run
    write_report(run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    domains = {entry["domain"]: entry for entry in report["domains"]}
    assert {CEILING, FLOOR, GAIN_ORACLE, UNEDITED, REAL} <= set(domains)
    for name in (UNEDITED, CEILING, FLOOR, GAIN_ORACLE):
        average = domains[name]["agreement"]["average"]
        assert average["reference"] == REAL
        low, high = average["mae_interval"]
        assert 0 <= low <= average["mae"] <= high <= 1
        assert {"mmrv", "pearson_r"} <= set(average)
    # Scripted stand-ins read the simulator's state, not the camera: every domain has the real outcomes.
    for name in (UNEDITED, CEILING, FLOOR):
        assert domains[name]["agreement"]["average"]["mae"] == 0
        assert domains[name]["agreement"]["average"]["episode_agreement"] == 1
    assert domains[REAL]["agreement"]["average"] is None
    differences = [d for d in report["differences"] if d["column"] == "average"]
    assert {(d["domain"], d["metric"]) for d in differences} >= {(CEILING, "mae"), (FLOOR, "mmrv"),
                                                                 (GAIN_ORACLE, "pearson_r")}
    assert all(d["versus"] == UNEDITED for d in differences)
    assert {policy["kind"] for policy in report["policies"]} == {"scripted"}
    # No domain differs from the real world here, so there is no gap to close and nothing to detect.
    assert report["power"]["baseline_mae"] == report["power"]["ceiling_mae"] == 0
    assert report["power"]["power"] == 0
    markdown = (run_dir / "report.md").read_text()
    assert "Paired with the real world" in markdown and "| ceiling |" in markdown


def test_an_incomplete_paired_run_falls_back_to_the_table_and_says_so(paired_run, tmp_path):
    import shutil

    run_dir, _ = paired_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("run.lock"))
    with sqlite3.connect(copy / "episodes.sqlite") as connection:
        connection.execute("DELETE FROM episodes WHERE domain = 'real' AND pose = 'a0'")
    write_report(copy)
    report = json.loads((copy / "report.json").read_text())
    assert "incomplete" in report["paired_note"]
    unedited = next(d for d in report["domains"] if d["domain"] == UNEDITED)
    assert unedited["agreement"]["average"]["reference"] == "table"
    assert report["differences"] == [] and report["power"] is None
    assert "Not paired" in (copy / "report.md").read_text()
