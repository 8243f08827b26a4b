"""The CPU experiment's policies: behaviour cloning in the miniature real world learns, its checkpoints are
graded, and their real-world table travels through the harness (EvalConfig.real_world_table, the report)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from evaluation import EvalConfig, ExecutionOptions, build_report, run_evaluation, tiny_config
from evaluation.config import CNN, cnn_policies, graded_stand_ins
from evaluation.miniature_real_world import (
    TinyPolicySettings,
    build_tiny_policies,
    measure_real_world,
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
    untrained = CNNPolicy.initialise(SMALL.training.policy, name="untrained").save_pretrained(
        tmp_path / "untrained"
    )
    before = measure_real_world([untrained], tmp_path / "run", SMALL.measurement, progress=False)["untrained"]
    after = built.real_world()[built.checkpoints[-1].name]
    assert after.average >= before.average + 0.25, (before, after)


def test_graded_checkpoints_get_better_with_training(built):
    table = built.real_world()
    assert list(table) == [checkpoint.name for checkpoint in built.checkpoints]
    averages = [table[checkpoint.name].average for checkpoint in built.checkpoints]
    one_episode = 1 / (2 * table[built.checkpoints[0].name].trials)
    assert all(later >= earlier - one_episode for earlier, later in itertools.pairwise(averages)), averages
    assert averages[-1] - averages[0] >= 0.25, averages
    # The table says what it measured: every policy's episodes of every trial and seed.
    assert {entry.trials for entry in table.values()} == {
        len(SMALL.measurement.trials) // 2 * SMALL.measurement.seeds
    }


def test_a_second_build_reuses_everything(built):
    stamps = {
        path: path.stat().st_mtime_ns
        for path in [built.table, *(c / "model.safetensors" for c in built.checkpoints)]
    }
    again = build_tiny_policies(built.folder, SMALL, progress=False)
    assert again == built
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps


def test_a_build_with_other_settings_is_refused(built):
    other = TinyPolicySettings(measurement=SMALL.measurement, training=SMALL.training)
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
