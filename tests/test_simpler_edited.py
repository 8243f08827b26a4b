"""EditedDrawer-v0 on the real SIMPLER simulator (rasterised), with a tiny specialist saved to disk.

Runs only where SIMPLER is installed (e.g. `. /opt/simpler/env.sh` on a CPU machine set up with
simpler-cpu); skipped elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mani_skill2_real2sim")
pytest.importorskip("simpler_env")

import gymnasium as gym

import envs
from envs.trial_env import DrawerTrialEnv
from sim2real_edit.specialist import EditSpecialist

pytestmark = [pytest.mark.simpler, pytest.mark.slow]
CAMERA = "overhead_camera"


@pytest.fixture(scope="module")
def specialist_folder(tmp_path_factory):
    model = EditSpecialist.tiny(0, style="wood", instruction="make the cupboard out of wood")
    style = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return model.save_pretrained(tmp_path_factory.mktemp("specialist"), exemplars=[style])


@pytest.fixture(scope="module")
def tiny_base_name(specialist_folder) -> str:
    """The tiny random base the specialist records: a full-size env loads a tiny specialist only when told
    its base (it refuses a demo specialist otherwise)."""
    return EditSpecialist.read_config(specialist_folder).base


def test_edited_simpler_changes_only_the_cabinet_pixels(specialist_folder, tiny_base_name):
    env = gym.make("EditedDrawer-v0", style="wood", specialist=specialist_folder, base=tiny_base_name,
                   task="OpenTopDrawer", pose="b1", shader_dir="ibl", num_steps=2, short_side=64)
    obs, info = env.reset(seed=3)
    for _ in range(2):
        camera = obs["image"][CAMERA]
        rgb, unedited = camera["rgb"], info["unedited_rgb"]
        assert rgb.shape == (512, 640, 3) and rgb.dtype == np.uint8
        mask = np.isin(camera["Segmentation"][..., 1], env.unwrapped.cabinet_ids())
        assert 0.1 < mask.mean() < 0.7
        np.testing.assert_array_equal(rgb[~mask], unedited[~mask])  # the robot arm stays as rendered
        assert (rgb[mask] != unedited[mask]).any()
        obs, _, _, _, info = env.step(np.zeros(7))
    assert env.unwrapped.get_language_instruction() == "open top drawer"
    env.close()


def test_vector_simpler_edits_equal_single_env_edits(specialist_folder, tiny_base_name):
    vec = envs.make_edited_vector_env(num_envs=2, style="wood", specialist=specialist_folder, base=tiny_base_name,
                                      shader_dir="ibl", num_steps=2, short_side=64, vectorization_mode="async")
    try:
        vec.set_next_trials(["CloseMiddleDrawer/a1", "OpenBottomDrawer/c2"])
        obs, info = vec.reset(seed=[5, 6])
        assert list(info["trial"]) == ["CloseMiddleDrawer/a1", "OpenBottomDrawer/c2"]
        batched = obs["image"][CAMERA]["rgb"]
    finally:
        vec.close()
    single = gym.make("EditedDrawer-v0", style="wood", specialist=specialist_folder, base=tiny_base_name,
                      task="OpenBottomDrawer", pose="c2", shader_dir="ibl", num_steps=2, short_side=64)
    single_obs, _ = single.reset(seed=6)
    diff = np.abs(batched[1].astype(int) - single_obs["image"][CAMERA]["rgb"].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    single.close()


def test_trial_env_reads_drawer_state_on_simpler():
    env = DrawerTrialEnv("simpler", task="CloseTopDrawer", pose="a0", shader_dir="ibl")
    _, info = env.reset(seed=0)
    assert info["trial"] == "CloseTopDrawer/a0"
    assert info["drawer_qpos"] == pytest.approx(0.2, abs=0.02) and not info["success"]
    env.close()
