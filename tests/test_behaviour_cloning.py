"""Demonstrations (the scripted expert with DART noise) and behaviour-cloning checkpoints (policies.*)."""

from __future__ import annotations

import itertools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields

import numpy as np
import pytest
import torch

from envs.protocol import protocol_trials
from envs.standin import DrawerStandIn
from miniature.behaviour_cloning import (
    CHECKPOINT_FRACTIONS,
    TrainingSettings,
    augment,
    augmentation_scaled,
    train_behaviour_cloning,
)
from miniature.demonstrations import (
    Demonstrations,
    DemonstrationSettings,
    collect_demonstrations,
    record_episode,
    standin_config,
)
from policies.cnn import CNNPolicy, CNNPolicyConfig

TRIALS = ("OpenTopDrawer/b1", "CloseBottomDrawer/a2")


@pytest.fixture(scope="module")
def demonstrations() -> Demonstrations:
    return collect_demonstrations(DemonstrationSettings(trials=TRIALS, noisy_per_trial=1), progress=False)


def test_demonstrations_hold_what_the_policy_sees_and_the_experts_labels(demonstrations):
    assert demonstrations.episodes_recorded == 4 and demonstrations.episodes_failed == 0
    n = len(demonstrations)
    assert demonstrations.images.shape == (n, 3, 64, 80) and demonstrations.images.dtype == np.uint8
    assert demonstrations.proprio.shape == (n, 7) and demonstrations.motion.shape == (n, 3)
    # One terminate per episode, at its last step; the open task closes the gripper, the close task never.
    ends = np.flatnonzero(np.diff(demonstrations.episode, append=demonstrations.episode[-1] + 1))
    np.testing.assert_array_equal(np.flatnonzero(demonstrations.terminate), ends)
    open_task, close_task = demonstrations.tasks == 0, demonstrations.tasks == 5
    assert demonstrations.close[open_task].any() and not demonstrations.close[close_task].any()
    assert np.abs(demonstrations.motion).max() <= 0.04 + 1e-6  # the expert's step


def test_dart_noise_moves_the_robot_but_not_the_labels():
    """With noise the executed motion (seen in the next proprioception) leaves the expert's label; without,
    it follows it."""
    settings = DemonstrationSettings()
    trial = protocol_trials()[0]
    env = DrawerStandIn(trial.task, trial.pose, config=standin_config(settings.camera), appearance="real")
    gaps = {}
    for sigma in (0.0, 0.005):
        steps, success = record_episode(env, trial, seed=3, dart_sigma=sigma, settings=settings)
        assert success
        executed = np.stack(steps["proprio"])[1:, 4:] * 0.04  # the tcp's last motion, base frame
        labels = np.stack(steps["motion"])[:-1]
        gaps[sigma] = np.abs(executed - labels).mean()
    assert gaps[0.0] < 1e-3 < gaps[0.005]


def test_demonstrations_do_not_depend_on_the_processes_that_record_them(demonstrations):
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        parallel = collect_demonstrations(
            DemonstrationSettings(trials=TRIALS, noisy_per_trial=1), progress=False, executor=pool
        )
    for field in fields(Demonstrations):
        np.testing.assert_array_equal(getattr(parallel, field.name), getattr(demonstrations, field.name))


def test_demonstrations_save_and_load(demonstrations, tmp_path):
    loaded = Demonstrations.load(demonstrations.save(tmp_path / "demos.npz"))
    for field in fields(Demonstrations):
        np.testing.assert_array_equal(getattr(loaded, field.name), getattr(demonstrations, field.name))


def test_checkpoints_are_saved_at_the_fractions_fixed_before_training(demonstrations, tmp_path):
    assert CHECKPOINT_FRACTIONS == (1 / 6, 1 / 3, 2 / 3, 1.0)
    assert TrainingSettings().checkpoint_steps() == [200, 400, 800, 1200]
    settings = TrainingSettings(steps=27, batch_size=8, warmup_steps=2, policy=CNNPolicyConfig(hidden=32))
    seen = []
    folders = train_behaviour_cloning(
        demonstrations, settings, tmp_path, progress=False, on_checkpoint=seen.append
    )
    assert [folder.name for folder in folders] == [
        "cnn-bc-00004",
        "cnn-bc-00009",
        "cnn-bc-00018",
        "cnn-bc-00027",
    ]
    assert seen == folders
    assert (tmp_path / "cnn-bc.training_log.jsonl").is_file()
    steps = [CNNPolicy.from_pretrained(folder).metadata["training_step"] for folder in folders]
    assert steps == [4, 9, 18, 27]
    weights = [CNNPolicy.from_pretrained(folder).network.head.weight for folder in folders]
    assert all(not torch.equal(a, b) for a, b in itertools.pairwise(weights))
    # One run, reproducible: the same settings give the same weights.
    again = train_behaviour_cloning(demonstrations, settings, tmp_path / "again", progress=False)
    torch.testing.assert_close(
        CNNPolicy.from_pretrained(again[-1]).network.head.weight, weights[-1], rtol=0, atol=0
    )
    with pytest.raises(ValueError, match="too few"):
        TrainingSettings(steps=2).checkpoint_steps()


def test_augmentation_shifts_and_brightens_within_its_bounds():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(16, 3, 64, 80)
    plain = augment(images, TrainingSettings(brightness=0.0, pixel_noise=0.0), generator)
    for image, shifted in zip(images, plain):  # each is the image moved by at most 2 pixels
        assert any(
            torch.equal(shifted[:, 2:-2, 2:-2], image[:, 2 + dy : 62 + dy, 2 + dx : 78 + dx])
            for dy in range(-2, 3)
            for dx in range(-2, 3)
        )
    flat = torch.full((64, 3, 64, 80), 0.5)
    brightened = augment(flat, TrainingSettings(max_shift=0, pixel_noise=0.0), generator)
    means = brightened.mean(dim=(1, 2, 3))
    assert 0.45 - 1e-6 <= means.min() < 0.48 and 0.52 < means.max() <= 0.55 + 1e-6


def test_augmentation_scaled_multiplies_every_strength_and_nothing_else():
    default = TrainingSettings()
    strong = augmentation_scaled(default, 2.0)
    assert (strong.max_shift, strong.brightness, strong.pixel_noise) == (4, 0.2, 0.04)
    none = augmentation_scaled(default, 0.0)
    assert (none.max_shift, none.brightness, none.pixel_noise) == (0, 0.0, 0.0)
    assert augmentation_scaled(strong, 0.5) == default
    with pytest.raises(ValueError, match="at least 0"):
        augmentation_scaled(default, -1.0)


def test_without_augmentation_the_student_sees_the_frames_as_recorded():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(8, 3, 64, 80)
    unchanged = augment(images, augmentation_scaled(TrainingSettings(), 0.0), generator)
    torch.testing.assert_close(unchanged, images, rtol=0, atol=0)
    assert not torch.equal(augment(images, TrainingSettings(), generator), images)
