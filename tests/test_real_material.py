"""The real world's material is a parameter (issue 24 item 9): any style of configs/styles.yaml can be the real
cabinet, cut from a texture seed its exemplars never use; it reaches every real-world domain through
``EvalConfig.env_kwargs``, the miniature caches another material's pieces beside white marble's, and white marble
renders, stores and hashes exactly as before the material was a choice."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from envs.appearance import (
    REAL_CABINET_STYLE,
    REAL_CABINET_TEXTURE_SEED,
    TEXTURE_SIZE,
    real_cabinet_material,
    real_cabinet_texture_seed,
)
from envs.cabinet_gain import mean_colour, standin_oracle_gains
from envs.standin import CABINET_LINK_IDS, DrawerStandIn
from envs.tiny_base import tiny_camera_config
from evaluation.config import (
    CEILING,
    FLOOR,
    FLOOR_NOISE_STREAM,
    GAIN_ORACLE,
    REAL,
    UNEDITED,
    ExecutionOptions,
    tiny_config,
)
from evaluation.runner import gain_editor, make_domain_env
from miniature.experiment import Miniature, MiniatureSettings
from miniature.policy_family import (
    REAL_WORLD_ENV_KWARGS,
    RealWorldMeasurement,
    TinyPolicies,
    TinyPolicySettings,
    measurement_config,
    write_real_world_table,
    write_selection,
)
from sim2real_edit.real_world import RealWorldSuccess
from sim2real_edit.styles import StyleRegistry, tiny_home

REPO_ROOT = Path(__file__).resolve().parents[1]
CAMERA = "overhead_camera"
#: SHA-256 prefixes of white-marble frames rendered by the code before the material was a parameter (see
#: `scene_digest`): white marble must keep rendering these bytes.
WHITE_MARBLE_DIGESTS = {
    "real": "a7b3b321be72a220",
    "ceiling": "3b90fed3ce21ffa4",
    "floor": "014c0c15fa141b56",
}
LOOKS = {"real": {"appearance": "real"}, "ceiling": {"appearance": "ceiling"},
         "floor": {"appearance": "real", "noise_stream": 1}}


def scene_frames(**kwargs) -> np.ndarray:
    """Start frame and one step's frame of the open-middle-drawer task at three poses, tiny camera, seed 7."""
    frames = []
    for pose in ("a0", "b1", "c2"):
        env = DrawerStandIn("OpenMiddleDrawer", pose, config=tiny_camera_config(), **kwargs)
        frames.append(env.reset(seed=7)[0]["image"][CAMERA]["rgb"])
        frames.append(env.step(np.array([0.3, 0.1, -0.2, 0, 0, 0, 1.0]))[0]["image"][CAMERA]["rgb"])
    return np.stack(frames)


def scene_digest(**kwargs) -> str:
    return hashlib.sha256(np.ascontiguousarray(scene_frames(**kwargs)).tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("look", sorted(LOOKS))
def test_white_marble_renders_the_bytes_of_before(look: str):
    assert scene_digest(**LOOKS[look]) == WHITE_MARBLE_DIGESTS[look]
    assert scene_digest(**LOOKS[look], real_material="marble") == WHITE_MARBLE_DIGESTS[look]  # the alias


def start_frame(appearance: str, real_material: str = REAL_CABINET_STYLE) -> tuple[np.ndarray, np.ndarray]:
    env = DrawerStandIn("OpenTopDrawer", "b1", config=tiny_camera_config(), appearance=appearance,
                        real_material=real_material)
    frame = env.reset(seed=3)[0]["image"][CAMERA]["rgb"]
    return frame, env.cabinet_mask()


def test_another_material_renders_another_real_cabinet_in_the_same_scene():
    marble, mask = start_frame("real")
    wood, wood_mask = start_frame("real", "wood")
    np.testing.assert_array_equal(mask, wood_mask)  # appearance never moves geometry
    registry = StyleRegistry.load()
    wood_exemplars, marble_exemplars = (mean_colour(registry.get(name).exemplars())
                                        for name in ("wood", REAL_CABINET_STYLE))
    wood_cabinet = mean_colour([wood], [mask])
    # The wood cabinet looks like wood, not like marble (under the real world's warm light).
    assert np.linalg.norm(wood_cabinet - wood_exemplars) < np.linalg.norm(wood_cabinet - marble_exemplars) - 50
    assert np.linalg.norm(wood_cabinet - mean_colour([marble], [mask])) > 50
    # Away from the cabinet (beyond the camera blur) the two real worlds are the same bytes, noise included.
    near = np.zeros_like(mask)
    rows, cols = np.nonzero(mask)
    near[max(rows.min() - 3, 0):rows.max() + 4, max(cols.min() - 3, 0):cols.max() + 4] = True
    np.testing.assert_array_equal(marble[~near], wood[~near])
    # The sim ignores the material.
    np.testing.assert_array_equal(start_frame("sim", "wood")[0], start_frame("sim")[0])


def test_the_ceiling_of_another_material_shows_that_real_cabinet():
    ceiling, mask = start_frame("ceiling", "wood")
    real, _ = start_frame("real", "wood")
    sim, _ = start_frame("sim")
    np.testing.assert_array_equal(ceiling[mask], real[mask])
    np.testing.assert_array_equal(ceiling[~mask], sim[~mask])


def test_the_real_cabinets_texture_is_held_out_for_every_style():
    registry = StyleRegistry.load()
    seeds = {name: real_cabinet_texture_seed(name) for name in registry.names}
    assert seeds[REAL_CABINET_STYLE] == REAL_CABINET_TEXTURE_SEED == 3450382709  # the white-marble seed of before
    assert len(set(seeds.values())) == len(seeds)
    for name, seed in seeds.items():
        style = registry.get(name)
        assert seed not in style.procedural_exemplar_seeds()
        material = real_cabinet_material(tuple(CABINET_LINK_IDS.values()), name)
        np.testing.assert_array_equal(material.levels[0], style.procedural_texture((TEXTURE_SIZE, TEXTURE_SIZE), seed))
        for exemplar_seed in style.procedural_exemplar_seeds():
            exemplar = style.procedural_texture((TEXTURE_SIZE, TEXTURE_SIZE), exemplar_seed)
            assert not np.array_equal(material.levels[0], exemplar), (name, exemplar_seed)


def test_an_unknown_material_is_refused_with_the_known_ones():
    for make in (lambda: DrawerStandIn(appearance="real", real_material="oak"),
                 lambda: MiniatureSettings(material="oak"),
                 lambda: RealWorldMeasurement(material="oak")):
        with pytest.raises(ValueError, match="oak.*Known styles: wood"):
            make()


def domain_frame(config, domain: str) -> np.ndarray:
    """The start frame of OpenTopDrawer/b1 (reset seed 3) in ``domain``'s vector env."""
    env = make_domain_env(config, ExecutionOptions(num_envs=1, vectorization_mode="sync"), domain, "wood",
                          config.urdf_versions[0], 1)
    try:
        env.set_next_trials(["OpenTopDrawer/b1"])
        return env.reset(seed=[3])[0]["image"][CAMERA]["rgb"][0]
    finally:
        env.close()


def test_the_material_reaches_the_real_floor_and_ceiling_domain_envs():
    config = tiny_config(env_kwargs={"real_material": "wood"}, domains=(UNEDITED, REAL, FLOOR, CEILING),
                         trials=("OpenTopDrawer/b1",))
    camera = config.env_options()["config"]

    def expected(**kwargs) -> np.ndarray:
        env = DrawerStandIn("OpenTopDrawer", "b1", config=camera, **kwargs)
        return env.reset(seed=3)[0]["image"][CAMERA]["rgb"]

    wood_real = expected(appearance="real", real_material="wood")
    assert not np.array_equal(wood_real, expected(appearance="real"))
    np.testing.assert_array_equal(domain_frame(config, REAL), wood_real)
    np.testing.assert_array_equal(domain_frame(config, FLOOR), expected(
        appearance="real", real_material="wood", noise_stream=FLOOR_NOISE_STREAM))
    np.testing.assert_array_equal(domain_frame(config, CEILING), expected(appearance="ceiling", real_material="wood"))
    np.testing.assert_array_equal(domain_frame(config, UNEDITED), expected())


def test_the_gain_oracle_aims_at_the_chosen_material():
    camera = tiny_camera_config()
    wood = standin_oracle_gains(camera, real_material="wood")
    marble = standin_oracle_gains(camera)
    np.testing.assert_allclose(standin_oracle_gains(camera, real_material=REAL_CABINET_STYLE), marble)
    # Wood is darker and redder than marble: its gains are lower, most of all in blue.
    assert np.all(wood < marble) and wood[2] / wood[0] < marble[2] / marble[0]


def test_the_gain_oracle_domain_gets_the_material():
    config = tiny_config(env_kwargs={"real_material": "wood"}, domains=(GAIN_ORACLE, REAL))
    np.testing.assert_allclose(gain_editor(config, GAIN_ORACLE, "wood").gains,
                               standin_oracle_gains(config.env_options()["config"], real_material="wood"))


def without_material(values):
    """``values`` with every ``material`` entry and ``real_material`` env kwarg left out, at any depth."""
    if isinstance(values, dict):
        return {key: without_material(value) for key, value in values.items()
                if key != "material" and not (key == "env_kwargs" and value == {"real_material": "wood"})}
    if isinstance(values, list):
        return [without_material(value) for value in values]
    return values


def test_white_marble_settings_and_measurement_configs_are_those_of_before():
    """Stored settings.json, episodes.json claims and measurement config hashes of white marble were written
    without a material: its dicts hold none, and another material differs from them only by its material."""
    for white, wood in ((TinyPolicySettings(), TinyPolicySettings(material="wood")),
                        (MiniatureSettings.small(), replace(MiniatureSettings.small(), material="wood"))):
        assert "material" not in json.dumps(white.to_dict())
        assert json.dumps(wood.to_dict()).count('"material": "wood"') >= 2
        assert without_material(wood.to_dict()) == white.to_dict()
    white_measurement, wood_measurement = TinyPolicySettings().measurement, TinyPolicySettings(material="wood").measurement
    assert wood_measurement.material == "wood" and "material" not in white_measurement.to_dict()
    checkpoints = [Path("/policies/cnn-a"), Path("/policies/cnn-b")]
    white_config = measurement_config(checkpoints, white_measurement)
    wood_config = measurement_config(checkpoints, wood_measurement)
    assert white_config.env_kwargs == REAL_WORLD_ENV_KWARGS
    assert wood_config.env_kwargs == {**REAL_WORLD_ENV_KWARGS, "real_material": "wood"}
    assert replace(wood_config, env_kwargs=dict(REAL_WORLD_ENV_KWARGS)).config_hash == white_config.config_hash


def fake_miniature(settings: MiniatureSettings, folder: Path) -> Miniature:
    """A miniature without specialist whose policy files are written here (what `eval_config` reads)."""
    policies = TinyPolicySettings.small()
    name = policies.candidate_names()[0]
    folder.mkdir(parents=True)
    (folder / "settings.json").write_text(json.dumps(settings.policies.to_dict()))
    rates = {name: RealWorldSuccess(open=0.5, close=0.5, trials=9, checkpoint=name)}
    table = write_real_world_table(folder / "real_world.yaml", rates, "a test")
    write_selection(folder / "selection.json", policies, rates, "a test")
    built = TinyPolicies(folder, (folder / name,), (folder / name,), table, folder / "selection.json")
    return Miniature(settings, None, None, built, [], [], [], {})


def test_another_materials_miniature_caches_elsewhere_and_evaluates_in_that_material(tmp_path, monkeypatch):
    monkeypatch.setenv("SIM2REAL_EDIT_HOME", str(tmp_path / "home"))
    white, wood = MiniatureSettings(), MiniatureSettings(material="wood")
    assert (white.policies_folder(), white.scorecard_cache()) == (
        tiny_home() / "policies", tiny_home() / "miniature" / "scorecard.json")  # the folders of before
    assert wood.policies_folder() == tiny_home() / "policies-wood"
    assert wood.scorecard_cache() not in (white.scorecard_cache(), white.policies_folder())
    assert (wood.style, wood.policies.material, wood.policies.measurement.material) == ("wood",) * 3
    assert replace(wood, material="marble").policies.material == REAL_CABINET_STYLE

    white_config = fake_miniature(white, tmp_path / "white").eval_config()
    wood_config = fake_miniature(wood, tmp_path / "wood").eval_config()
    assert white_config.env_kwargs == {} and white_config.styles == (REAL_CABINET_STYLE,)
    assert wood_config.env_kwargs == {"real_material": "wood"} and wood_config.styles == ("wood",)
    for domain in (REAL, FLOOR, CEILING, GAIN_ORACLE):
        assert domain in wood_config.domains
    assert wood_config.env_options()["real_material"] == "wood"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildCalled(Exception):
    """Stops a script at its miniature build, carrying the settings it asked for."""


def test_both_scripts_build_the_miniature_of_the_material_they_are_given(monkeypatch):
    import miniature.experiment

    def stop(settings, progress=True):
        raise BuildCalled(settings)

    monkeypatch.setattr(miniature.experiment, "build_miniature", stop)
    with pytest.raises(BuildCalled) as built:
        load_script("build_miniature").main(["--small", "--material", "wood", "--no-progress"])
    assert built.value.args[0] == replace(MiniatureSettings.small(), material="wood")
    script = load_script("eval_policies")
    with pytest.raises(BuildCalled) as built:
        script.build_config(script.parse_args(["--preset", "tiny", "--small", "--material", "wood"]))
    assert built.value.args[0].material == "wood"
    with pytest.raises(BuildCalled) as built:
        script.build_config(script.parse_args(["--preset", "tiny", "--small"]))
    assert built.value.args[0] == MiniatureSettings.small()


def test_eval_policies_runs_another_material_in_its_own_run_folder():
    script = load_script("eval_policies")
    assert script.default_run_dir("tiny", None) == script.default_run_dir("tiny", "marble") == "runs/eval-tiny"
    assert script.default_run_dir("tiny", "wood") == "runs/eval-tiny-wood"
    with pytest.raises(SystemExit):
        script.parse_args(["--material", "wood"])  # the full preset has no miniature real world
    config, _, miniature = script.build_config(
        script.parse_args(["--preset", "tiny", "--policies", "scripted-expert", "--material", "wood"]))
    assert miniature is None and config.env_kwargs == {"real_material": "wood"}
