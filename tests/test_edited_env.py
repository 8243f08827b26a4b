"""EditedDrawer-v0 on the stand-in with a tiny specialist: the Gymnasium contract, seeds, vector edits."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import envs
from envs.edited import EditSettings, composite
from envs.trial_env import DrawerTrialEnv

pytestmark = pytest.mark.usefixtures("tiny_base")  # the tiny preset's base: the session's small build

CAMERA = "overhead_camera"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SIM2REAL_EDIT_HOME", str(tmp_path_factory.getbasetemp() / "home"))


def make(**kwargs):
    kwargs = {"style": "wood", "preset": "tiny", "task": "OpenTopDrawer", "pose": "b1", "num_steps": 2,
              "short_side": 32, **kwargs}
    return gym.make("EditedDrawer-v0", **kwargs)


def leaves(tree, prefix=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from leaves(value, f"{prefix}/{key}")
    else:
        yield prefix, np.asarray(tree)


def test_gymnasium_env_checker_passes():
    check_env(make(), skip_render_check=True)


def test_only_the_camera_frame_changes_and_only_inside_the_cabinet():
    edited_env = make()
    plain = DrawerTrialEnv("standin", task="OpenTopDrawer", pose="b1")
    obs, info = edited_env.reset(seed=5)
    ref_obs, _ = plain.reset(seed=5)
    for step in range(3):
        for (key, a), (_, b) in zip(leaves(obs), leaves(ref_obs)):
            if key == f"/image/{CAMERA}/rgb":
                assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
                np.testing.assert_array_equal(info["unedited_rgb"], b)
                mask = plain.unwrapped._env.cabinet_mask()
                assert not np.array_equal(a, b)
                np.testing.assert_array_equal(a[~mask], b[~mask])  # compositing: outside is the render
            else:
                np.testing.assert_array_equal(a, b, err_msg=key)
        action = np.array([0.3, 0.0, -0.2, 0.0, 0.0, 0.0, 0.0])
        obs, reward, terminated, truncated, info = edited_env.step(action)
        ref_obs, ref_reward, ref_terminated, ref_truncated, _ = plain.step(action)
        assert (reward, terminated, truncated) == (ref_reward, ref_terminated, ref_truncated)


def test_same_seed_reproduces_an_episode_and_the_edit_noise_is_fixed_per_episode():
    def episode(seed):
        env = make()
        obs, info = env.reset(seed=seed)
        frames, seeds = [obs["image"][CAMERA]["rgb"]], [info["edit_seed"]]
        for _ in range(2):
            obs, *_, info = env.step(np.zeros(7))
            frames.append(obs["image"][CAMERA]["rgb"])
            seeds.append(info["edit_seed"])
        return np.stack(frames), seeds

    a, seeds_a = episode(11)
    b, seeds_b = episode(11)
    np.testing.assert_array_equal(a, b)
    assert len(set(seeds_a)) == 1 and seeds_a == seeds_b
    c, seeds_c = episode(12)
    assert seeds_c[0] != seeds_a[0] and not np.array_equal(a[0], c[0])


def test_vector_edits_equal_single_env_edits():
    seeds = [21, 22, 23]
    vec = envs.make_edited_vector_env(num_envs=3, style="wood", preset="tiny", task="CloseMiddleDrawer",
                        pose="a1", num_steps=2, short_side=32, vectorization_mode="sync")
    vec.reset(seed=seeds)
    actions = np.tile([0.2, 0.1, -0.1, 0, 0, 0, 1.0], (3, 1))
    obs, *_ = vec.step(actions)
    vec.close()
    for i, seed in enumerate(seeds):
        single = make(task="CloseMiddleDrawer", pose="a1")
        single.reset(seed=seed)
        single_obs, *_ = single.step(actions[i])
        # Equal up to float reordering in batched convolutions: a few pixels may round the other way.
        diff = np.abs(obs["image"][CAMERA]["rgb"][i].astype(int) - single_obs["image"][CAMERA]["rgb"].astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_skipped_envs_come_back_as_rendered_and_the_others_as_edited_until_the_next_reset():
    vec = envs.make_edited_vector_env(num_envs=3, style="wood", preset="tiny", task="CloseMiddleDrawer",
                                      pose="a1", num_steps=2, short_side=32, vectorization_mode="sync")
    actions = np.tile([0.2, 0.1, -0.1, 0, 0, 0, 1.0], (3, 1))
    vec.reset(seed=[21, 22, 23])
    all_edited, *_ = vec.step(actions)
    vec.reset(seed=[21, 22, 23])
    vec.skip_edits([False, True, False])
    obs, _, _, _, info = vec.step(actions)
    rgb = obs["image"][CAMERA]["rgb"]
    np.testing.assert_array_equal(rgb[1], info["unedited_rgb"][1])
    assert (rgb[[0, 2]] != info["unedited_rgb"][[0, 2]]).any()
    diff = np.abs(rgb[[0, 2]].astype(int) - all_edited["image"][CAMERA]["rgb"][[0, 2]].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # per-frame seeds: the batch's make-up does not matter
    vec.reset(seed=[21, 22, 23])  # a reset edits every env again
    obs, _, _, _, info = vec.step(actions)
    np.testing.assert_array_equal(obs["image"][CAMERA]["rgb"], all_edited["image"][CAMERA]["rgb"])
    with pytest.raises(ValueError, match="one flag per env"):
        vec.skip_edits([True])
    vec.close()


def test_edit_options_given_as_an_object_or_as_keywords_make_the_same_env():
    options = envs.EditOptions(style="wood", preset="tiny", num_steps=2, short_side=32)
    by_object = gym.make("EditedDrawer-v0", options=options, task="OpenTopDrawer", pose="b1")
    by_keywords = make()
    np.testing.assert_array_equal(by_object.reset(seed=5)[0]["image"][CAMERA]["rgb"],
                                  by_keywords.reset(seed=5)[0]["image"][CAMERA]["rgb"])
    # keywords override the object's fields; None leaves an optional one as it is; the rest are the simulator's
    assert envs.EditOptions.split(options, {"num_steps": 3, "feather": None, "appearance": "real"}) == (
        envs.EditOptions(style="wood", preset="tiny", num_steps=3, short_side=32), {"appearance": "real"})


def test_the_vector_env_is_a_gymnasium_vector_wrapper():
    vec = envs.make_edited_vector_env(num_envs=2, preset="tiny", vectorization_mode="sync", edit=False)
    try:
        assert isinstance(vec, gym.vector.VectorEnv)
        assert isinstance(vec.unwrapped, gym.vector.SyncVectorEnv) and vec.num_envs == 2
        assert vec.single_action_space == vec.unwrapped.single_action_space
    finally:
        vec.close()


def test_async_vector_env_runs_different_trials_in_subprocesses():
    vec = envs.make_edited_vector_env(num_envs=2, preset="tiny", num_steps=1, short_side=32)
    try:
        vec.set_next_trials(["OpenTopDrawer/a0", "CloseBottomDrawer/c2"])
        obs, info = vec.reset(seed=[1, 2])
        assert list(info["trial"]) == ["OpenTopDrawer/a0", "CloseBottomDrawer/c2"]
        assert list(vec.call("get_language_instruction")) == ["open top drawer", "close bottom drawer"]
        assert obs["image"][CAMERA]["rgb"].shape == (2, 512, 640, 3)
    finally:
        vec.close()


def test_composite_keeps_outside_pixels_for_any_edit():
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (2, 40, 50, 3), dtype=np.uint8)
    edited = rng.integers(0, 256, (2, 40, 50, 3), dtype=np.uint8)
    masks = np.zeros((2, 40, 50), bool)
    masks[0, 5:30, 10:40] = True
    out = composite(original, edited, masks, feather=4)
    np.testing.assert_array_equal(out[~masks], original[~masks])
    np.testing.assert_array_equal(out[0, 15:20, 20:30], edited[0, 15:20, 20:30])  # deep inside: the edit
    border = out[0, 5, 20].astype(int)  # on the border the blend is mostly the original
    assert np.abs(border - original[0, 5, 20]).max() <= np.abs(border - edited[0, 5, 20]).max()


def test_unknown_style_lists_the_known_ones():
    with pytest.raises(ValueError, match="(?s)plywood.*wood"):
        make(style="plywood")


def test_unknown_dtype_names_the_choices():
    with pytest.raises(ValueError, match="(?s)float8.*bfloat16"):
        make(dtype="float8")


def test_style_without_a_trained_specialist_says_how_to_train_one():
    with pytest.raises(FileNotFoundError, match="train_specialist.py --style gold"):
        gym.make("EditedDrawer-v0", style="gold", task="OpenTopDrawer", pose="a0")


def test_compositing_off_edits_the_whole_frame():
    env = make(composite=False)
    obs, info = env.reset(seed=0)
    changed = (obs["image"][CAMERA]["rgb"] != info["unedited_rgb"]).any(-1)
    mask = env.unwrapped._env.cabinet_mask()
    assert changed[~mask].mean() > 0.5


def test_edit_settings_defaults_are_the_papers():
    settings = EditSettings()
    assert (settings.num_steps, settings.guidance, settings.short_side) == (20, (7.5, 1.5, 3.0), 256)
    assert torch.get_num_threads() == 1


def test_composite_in_the_bounding_box_equals_the_full_frame_formula():
    from scipy.ndimage import distance_transform_edt

    rng = np.random.default_rng(1)
    original = rng.integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    edited = rng.integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    masks = np.zeros((2, 48, 64), bool)
    masks[0, 10:30, 5:40] = True
    masks[1, 0:20, 0:12] = True  # touches the frame's edge
    masks[1, 30:33, 50:64] = True
    expected = original.copy()
    for i, mask in enumerate(masks):
        weight = np.clip(distance_transform_edt(mask) / 3, 0, 1)[mask][:, None]
        expected[i][mask] = np.round(edited[i][mask] * weight + original[i][mask] * (1 - weight)).astype(np.uint8)
    np.testing.assert_array_equal(composite(original, edited, masks, feather=3), expected)


def test_crop_option_edits_the_cabinet_box_of_the_loaded_specialist():
    env = make(crop=True, crop_margin=0.2)
    assert env.get_wrapper_attr("editor").settings.crop_margin == 0.2
    obs, info = env.reset(seed=5)
    mask = env.unwrapped._env.cabinet_mask()
    cropped = obs["image"][CAMERA]["rgb"]
    np.testing.assert_array_equal(cropped[~mask], info["unedited_rgb"][~mask])
    whole_frame = make().reset(seed=5)[0]["image"][CAMERA]["rgb"]
    assert (cropped[mask] != info["unedited_rgb"][mask]).any() and (cropped[mask] != whole_frame[mask]).any()
    vec = envs.make_edited_vector_env(num_envs=1, style="wood", preset="tiny", num_steps=2, short_side=32,
                                      crop=True, vectorization_mode="sync")
    try:
        assert vec.editor.settings.crop
        vec.reset(seed=[5])
    finally:
        vec.close()
    with pytest.raises(ValueError, match="crop=True needs composite=True"):
        make(crop=True, composite=False)
