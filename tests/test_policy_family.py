"""The CPU experiment's policies: behaviour cloning in the miniature real world learns, a family of runs that
differ as documented gives graded checkpoints, a rule fixed in advance selects from their real-world rates
measured on seeds the evaluation never uses, and the table travels through the harness (EvalConfig.real_world_table,
the report)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from evaluation import EvalConfig, ExecutionOptions, build_report, run_evaluation, tiny_config
from evaluation.config import CNN, cnn_policies, graded_stand_ins
from evaluation.runner import episode_reset_seed
from miniature.behaviour_cloning import CHECKPOINT_FRACTIONS, TrainingSettings
from miniature.experiment import MiniatureSettings
from miniature.policy_family import (
    RUN_DIR,
    RealWorldMeasurement,
    SelectionRule,
    TinyPolicySettings,
    build_tiny_policies,
    family_runs,
    measure_real_world,
    read_measured_episodes,
    write_real_world_table,
)
from policies.cnn import CNNPolicy, CNNPolicyConfig
from sim2real_edit.real_world import RealWorldSuccess, checkpoint_policy_names, real_world_success

SMALL = TinyPolicySettings.small()


@pytest.fixture(scope="module")
def built(small_tiny_policies):
    """The small build (conftest): demonstrations on three start poses, a short training run, one seed per trial."""
    return small_tiny_policies


def test_the_table_round_trips_through_real_world_success(tmp_path):
    rates = {
        "cnn-bc-00010": RealWorldSuccess(open=0.0, close=0.25, trials=54, checkpoint="cnn-bc-00010"),
        "cnn-bc-00090": RealWorldSuccess(open=0.5, close=0.875, trials=54, checkpoint="cnn-bc-00090"),
    }
    path = write_real_world_table(tmp_path / "real_world.yaml", rates, source="a test")
    assert real_world_success(path) == rates
    assert checkpoint_policy_names(path) == {"cnn-bc-00010": "cnn-bc-00010", "cnn-bc-00090": "cnn-bc-00090"}


def test_training_beats_the_untrained_policy_in_the_real_world(built, tmp_path):
    untrained = CNNPolicy.initialise(SMALL.runs[-1].policy, name="untrained").save_pretrained(
        tmp_path / "untrained"
    )
    before = measure_real_world([untrained], tmp_path / "run", SMALL.measurement, progress=False)["untrained"]
    after = built.real_world()[built.checkpoints[-1].name]
    assert after.average >= before.average + 0.25, (before, after)


def _run_of(checkpoint) -> str:
    return CNNPolicy.from_pretrained(checkpoint).metadata["training"]["name_prefix"]


def test_each_runs_checkpoints_get_better_with_training(built):
    rates = {entry["name"]: entry for entry in json.loads(built.selection.read_text())["candidates"]}
    assert list(rates) == [candidate.name for candidate in built.candidates]
    for run in SMALL.runs:
        averages = [rates[run.checkpoint_name(step)]["average"] for step in run.checkpoint_steps()]
        one_episode = 1 / (2 * rates[run.checkpoint_name(run.steps)]["episodes_per_action"])
        assert all(later >= earlier - one_episode for earlier, later in itertools.pairwise(averages)), averages
        assert averages[-1] >= averages[0] + one_episode, (run.name_prefix, averages)


def test_the_family_runs_differ_in_seed_and_augmentation_as_documented():
    runs = family_runs()
    default = TrainingSettings()
    assert [(run.seed, run.policy.seed) for run in runs] == [(0, 0), (1, 1), (2, 2)]
    assert [(run.max_shift, run.brightness, run.pixel_noise) for run in runs] == [
        (0, 0.0, 0.0),
        (default.max_shift, default.brightness, default.pixel_noise),
        (2 * default.max_shift, 2 * default.brightness, 2 * default.pixel_noise),
    ]
    assert len({run.name_prefix for run in runs}) == 3
    assert all(run.steps == default.steps and run.policy.channels == default.policy.channels for run in runs)
    with pytest.raises(ValueError, match="name_prefix"):
        TinyPolicySettings(runs=(runs[0], runs[0]))


def test_the_small_build_holds_checkpoints_of_two_runs_with_different_weights(built):
    by_run: dict[str, list] = {}
    for candidate in built.candidates:
        by_run.setdefault(_run_of(candidate), []).append(candidate)
    assert sorted(by_run) == sorted(run.name_prefix for run in SMALL.runs) and len(by_run) >= 2
    assert all(len(checkpoints) == len(CHECKPOINT_FRACTIONS) for checkpoints in by_run.values())
    last = [CNNPolicy.from_pretrained(checkpoints[-1]) for checkpoints in by_run.values()]
    assert last[0].metadata["training"]["max_shift"] != last[1].metadata["training"]["max_shift"]
    assert not torch.equal(last[0].network.head.weight, last[1].network.head.weight)


def test_the_table_and_the_checkpoints_are_the_selected_candidates(built):
    document = json.loads(built.selection.read_text())
    kept = [entry["name"] for entry in document["candidates"] if entry["selected"]]
    assert kept == document["selected"] == [checkpoint.name for checkpoint in built.checkpoints]
    assert len(kept) >= SMALL.selection.at_least
    assert set(built.checkpoints) <= set(built.candidates)
    assert list(built.real_world()) == kept
    steps = [CNNPolicy.from_pretrained(checkpoint).metadata["training_step"] for checkpoint in built.checkpoints]
    assert steps == sorted(steps)  # least trained first
    assert all(entry["reason"] for entry in document["candidates"])
    assert document["rule"]["statement"] == SMALL.selection.statement()
    # The table's rates are the selection's, and both are what the stored episodes say.
    for entry in document["candidates"]:
        episodes = read_measured_episodes(built.folder / RUN_DIR / entry["name"])
        opened = [e.success for e in episodes if e.action == "open"]
        assert entry["open"] == pytest.approx(sum(opened) / len(opened), abs=1e-6)
        if entry["selected"]:
            assert built.real_world()[entry["name"]].open == pytest.approx(entry["open"], abs=1e-6)


def test_the_selection_seeds_are_not_the_evaluations(built):
    evaluation_seeds = max(MiniatureSettings().seeds, MiniatureSettings.small().seeds)
    for candidate in built.candidates:
        episodes = read_measured_episodes(built.folder / RUN_DIR / candidate.name)
        assert {e.seed for e in episodes} == set(SMALL.measurement.seed_indices())
        assert min(SMALL.measurement.seed_indices()) >= evaluation_seeds
        measured = {e.reset_seed for e in episodes}
        assert measured == {episode_reset_seed(e.seed, e.trial) for e in episodes}
        evaluated = {episode_reset_seed(seed, e.trial) for seed in range(evaluation_seeds) for e in episodes}
        assert not measured & evaluated


def test_the_selection_rule_keeps_the_band_and_fills_up_to_its_minimum():
    def rate(average: float) -> RealWorldSuccess:
        return RealWorldSuccess(open=average, close=average, trials=9, checkpoint=None)

    rates = {"zero": rate(0.0), "low": rate(0.05), "mid": rate(0.5), "edge": rate(0.1), "top": rate(1.0)}
    decisions = SelectionRule(min_average=0.1, max_average=0.95, at_least=2).apply(rates)
    assert {name: kept for name, (kept, _) in decisions.items()} == {
        "zero": False, "low": False, "mid": True, "edge": True, "top": False
    }
    assert "below 0.1" in decisions["zero"][1] and "above 0.95" in decisions["top"][1]
    assert "in [0.1, 0.95]" in decisions["mid"][1]
    # Two short of four: the nearest outside the band, 0.05 below it and then 0.05 above it (less trained first).
    filled = SelectionRule(min_average=0.1, max_average=0.95, at_least=4).apply(rates)
    assert [name for name, (kept, _) in filled.items() if kept] == ["low", "mid", "edge", "top"]
    assert "kept to reach 4" in filled["low"][1] and "kept to reach 4" in filled["top"][1]
    with pytest.raises(ValueError, match="min_average"):
        SelectionRule(min_average=0.6, max_average=0.5)


def test_a_second_build_reuses_everything(built):
    stamps = {
        path: path.stat().st_mtime_ns
        for path in [built.table, built.selection, *(c / "model.safetensors" for c in built.candidates)]
    }
    again = build_tiny_policies(built.folder, SMALL, progress=False)
    assert again == built
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps


def test_a_build_with_other_settings_is_refused(built):
    other = TinyPolicySettings(measurement=SMALL.measurement, runs=SMALL.runs)
    with pytest.raises(ValueError, match="other settings.*demonstrations"):
        build_tiny_policies(built.folder, other, progress=False)


def test_cnn_checkpoints_evaluate_with_their_table_in_the_harness(built, tmp_path):
    specs = cnn_policies(built.checkpoints[-1:], real_world_table=built.table)
    assert specs[0].kind == CNN and specs[0].real_world_name == built.checkpoints[-1].name
    config = tiny_config(
        policies=specs, trials=("OpenTopDrawer/b1",), domains=("unedited",), real_world_table=str(built.table)
    )
    run_evaluation(
        config, tmp_path / "run", ExecutionOptions(num_envs=1, vectorization_mode="sync", progress=False)
    )
    report = build_report(tmp_path / "run")
    assert report.real_world == real_world_success(built.table)
    assert "real_world.yaml" in report.to_markdown()


def test_the_real_world_table_is_part_of_the_config_and_its_hash(tmp_path):
    plain = tiny_config()
    chosen = tiny_config(real_world_table=str(tmp_path / "real_world.yaml"))
    assert chosen.config_hash != plain.config_hash
    assert EvalConfig.from_dict(chosen.to_dict()) == chosen
    # Unset, the field is left out, so that stored configs from before it existed keep their hash.
    assert "real_world_table" not in plain.to_dict()
    assert EvalConfig.from_dict(json.loads(json.dumps(plain.to_dict()))).config_hash == plain.config_hash


def test_the_report_compares_with_the_configs_table(tmp_path):
    stand_ins = graded_stand_ins(["scripted-expert", "scripted-random"])
    table = write_real_world_table(
        tmp_path / "table.yaml",
        {
            spec.real_world_name: RealWorldSuccess(open=value, close=value, trials=2, checkpoint=None)
            for spec, value in zip(stand_ins, (0.1, 0.9))
        },
        source="reversed on purpose",
    )
    config = tiny_config(
        policies=stand_ins,
        trials=("OpenTopDrawer/b1", "CloseTopDrawer/b1"),
        domains=("unedited",),
        real_world_table=str(table),
    )
    run_evaluation(
        config, tmp_path / "run", ExecutionOptions(num_envs=2, vectorization_mode="sync", progress=False)
    )
    report = build_report(tmp_path / "run")
    unedited = report.domains[0]
    real = {rates.policy: report.real_world[rates.real_world_name].average for rates in unedited.rates}
    assert real == {"scripted-expert": 0.1, "scripted-random": 0.9}
    simulated = {rates.policy: rates.average.rate for rates in unedited.rates}
    if simulated["scripted-expert"] > simulated["scripted-random"]:  # the table ranks them the other way
        assert unedited.agreement["average"].pearson_r < 0


def test_cnn_policy_specs_need_a_checkpoint():
    with pytest.raises(ValueError, match="checkpoint folder"):
        from evaluation import PolicySpec

        PolicySpec("cnn-x", CNN)


def test_an_untrained_policy_is_deterministic_in_the_real_world(tmp_path):
    folder = CNNPolicy.initialise(CNNPolicyConfig(seed=9), name="u").save_pretrained(tmp_path / "u")
    small = SMALL.measurement
    measurement = type(small)(trials=small.trials[::9], seeds=1, num_envs=2, max_episode_steps=6)
    first = measure_real_world([folder], tmp_path / "a", measurement, progress=False)
    second = measure_real_world([folder], tmp_path / "b", measurement, progress=False)
    assert first == second
    assert np.isfinite(first["u"].average)
    stored = (tmp_path / "a" / "episodes.json").stat().st_mtime_ns
    assert measure_real_world([folder], tmp_path / "a", measurement, progress=False) == first
    assert (tmp_path / "a" / "episodes.json").stat().st_mtime_ns == stored  # read back, not run again
    other = RealWorldMeasurement(trials=measurement.trials, seeds=1, seed_offset=0, num_envs=2, max_episode_steps=6)
    with pytest.raises(ValueError, match="other checkpoints or settings"):
        measure_real_world([folder], tmp_path / "a", other, progress=False)
