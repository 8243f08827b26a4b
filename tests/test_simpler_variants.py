"""Variant aggregation on the real SIMPLER (rasterised, a reset and a step each): the scene variants build as
SIMPLER's script builds them, the cabinet is found in the segmentation, the edited env edits only the cabinet,
and a missing stage file is a clear error before SIMPLER builds anything.

Skipped where SimplerEnv and ManiSkill2_real2sim are not installed; on a CPU-only machine:
    . /opt/simpler/env.sh && python -m pytest -m simpler tests/test_simpler_variants.py -v
The tests without the `simpler` mark need no simulator.
"""

from __future__ import annotations

import numpy as np
import pytest

from envs.masks import cabinet_mask, cabinet_segmentation_ids
from envs.protocol import SCENE_VARIANTS, VARIANT_AGGREGATION
from envs.simpler import (
    MissingSimplerAssetError,
    check_variant_assets,
    make_simpler_drawer,
    variant_asset_files,
)

CAMERA = "overhead_camera"


def test_missing_variant_assets_are_named_with_how_to_get_them(tmp_path):
    for variant in SCENE_VARIANTS:
        for path in variant_asset_files(variant, tmp_path):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    check_variant_assets(list(SCENE_VARIANTS), tmp_path)  # all there: no error
    (tmp_path / "hab2_bench_assets" / "stages" / "modern_office_no_roof.glb").unlink()
    check_variant_assets(["base", "bedroom", "darker"], tmp_path)  # office not asked for
    with pytest.raises(MissingSimplerAssetError) as error:
        check_variant_assets(list(SCENE_VARIANTS), tmp_path)
    message = str(error.value)
    assert "hab2_bench_assets/stages/modern_office_no_roof.glb" in message
    assert "modern_bedroom_no_roof.glb" not in message
    assert "simpler-env/ManiSkill2_real2sim" in message and "MS2_REAL2SIM_ASSET_DIR" in message
    assert "--variants base bedroom brighter darker station2 station3" in message


def test_visual_matching_maker_refuses_a_variant_pose():
    with pytest.raises(ValueError, match="make_simpler_variant_drawer"):
        make_simpler_drawer("OpenTopDrawer", "base/x0.65_y-0.20")


@pytest.fixture(scope="module")
def simpler_assets():
    pytest.importorskip("mani_skill2_real2sim.envs", reason="SIMPLER (ManiSkill2_real2sim) is not installed")
    from envs.simpler import missing_variant_assets

    return missing_variant_assets(list(SCENE_VARIANTS))


def _available(missing: dict) -> list[str]:
    return [name for name in SCENE_VARIANTS if name not in missing]


@pytest.mark.simpler
def test_each_available_variant_builds_as_simplers_script_and_shows_the_cabinet(simpler_assets):
    from envs.simpler import make_simpler_variant_drawer

    available = _available(simpler_assets)
    assert "base" in available, "the base stage frl_apartment_stage_simple.glb must be there"
    for variant in available:
        env = make_simpler_variant_drawer("CloseMiddleDrawer", f"{variant}/x0.85_y+0.20", shader_dir="ibl")
        try:
            obs, info = env.reset(seed=0)
            simulator = env.unwrapped
            scene = SCENE_VARIANTS[variant]
            assert simulator.scene_name == scene.scene_name
            assert info["station_name"] == (scene.station_name or "mk_station")
            assert info["light_mode"] == scene.light_mode
            assert simulator.rgb_overlay_img is None  # no real background in variant aggregation
            assert simulator.urdf_version == ""  # SIMPLER's original robot URDF
            base = simulator.agent.robot.pose
            assert np.allclose(base.p[:2], [0.85, 0.2], atol=1e-3)
            assert np.allclose(base.q, [0, 0, 0, 1], atol=1e-3)
            ids = cabinet_segmentation_ids(env)
            assert len(ids) >= 4  # the body and its three drawers
            mask = cabinet_mask(obs["image"][CAMERA]["Segmentation"], ids)
            assert 0.05 < mask.mean() < 0.8, f"{variant}: cabinet covers {mask.mean():.2%} of the frame"
            obs, *_ = env.step(np.zeros(7))
            assert cabinet_mask(obs["image"][CAMERA]["Segmentation"], ids).any()
        finally:
            env.close()


@pytest.mark.simpler
def test_missing_background_is_refused_before_simpler_builds_it(simpler_assets):
    from envs.simpler import make_simpler_variant_drawer

    if "office" not in simpler_assets:
        pytest.skip("this SIMPLER asset folder has modern_office_no_roof.glb")
    with pytest.raises(MissingSimplerAssetError, match="modern_office_no_roof.glb.*--variants"):
        make_simpler_variant_drawer("OpenTopDrawer", "office/x0.65_y-0.20", shader_dir="ibl")


@pytest.mark.simpler
def test_trial_env_runs_variant_trials_and_changes_variant_at_reset(simpler_assets):
    from envs.trial_env import DrawerTrialEnv

    second = "station3" if "station3" not in simpler_assets else "base"
    env = DrawerTrialEnv("simpler", setting=VARIANT_AGGREGATION, shader_dir="ibl")
    try:
        _, info = env.reset(seed=0)
        assert info["trial"] == "OpenTopDrawer/base/x0.65_y-0.20" and info["urdf_version"] == "none"
        assert info["drawer_qpos"] == pytest.approx(0.0, abs=0.01) and not info["success"]
        _, info = env.reset(seed=1, options={"trial": f"CloseTopDrawer/{second}/x0.75_y+0.00"})
        assert info["trial"] == f"CloseTopDrawer/{second}/x0.75_y+0.00"
        assert info["station_name"] == (SCENE_VARIANTS[second].station_name or "mk_station")
        assert env.cabinet_ids()
    finally:
        env.close()


@pytest.mark.simpler
@pytest.mark.slow
def test_edited_env_edits_only_the_cabinet_in_a_variant_scene(simpler_assets, tmp_path):
    import gymnasium as gym

    import envs  # noqa: F401  (registers EditedDrawer-v0)
    from sim2real_edit.specialist import EditSpecialist

    model = EditSpecialist.tiny(0, style="wood", instruction="make the cupboard out of wood")
    style = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    folder = model.save_pretrained(tmp_path / "specialist", exemplars=[style])
    base = EditSpecialist.read_config(folder).base
    variant = "station2" if "station2" not in simpler_assets else "base"
    env = gym.make("EditedDrawer-v0", style="wood", specialist=folder, base=base, task="OpenTopDrawer",
                   pose=f"{variant}/x0.75_y+0.00", setting=VARIANT_AGGREGATION, shader_dir="ibl", num_steps=2,
                   short_side=64, composite=True)
    try:
        obs, info = env.reset(seed=3)
        camera = obs["image"][CAMERA]
        rgb, unedited = camera["rgb"], info["unedited_rgb"]
        mask = np.isin(camera["Segmentation"][..., 1], env.unwrapped.cabinet_ids())
        assert 0.05 < mask.mean() < 0.8
        np.testing.assert_array_equal(rgb[~mask], unedited[~mask])
        assert (rgb[mask] != unedited[mask]).any()
    finally:
        env.close()
