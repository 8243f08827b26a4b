"""SIMPLER's Google-Robot drawer environments at the protocol's robot start poses.

SIMPLER (the GitHub repositories simpler-env/SimplerEnv and simpler-env/ManiSkill2_real2sim) is an optional
dependency: this module imports it only when an environment is made, and says how to install it when it is
missing.

    env = make_simpler_drawer("OpenTopDrawer", "b1", shader_dir="ibl")  # "ibl": rasterised, fast on a CPU
    env = make_simpler_variant_drawer("OpenTopDrawer", "darker/x0.65_y-0.20")  # variant aggregation
    obs, info = env.reset(seed=0)
    frame = obs["image"]["overhead_camera"]["rgb"]  # (512, 640, 3) uint8
    state = read_drawer_state(env)  # instruction, drawer joint position, success
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from envs.protocol import (
    CONTROL_FREQ,
    MAX_EPISODE_STEPS,
    SCENE_VARIANTS,
    SIM_FREQ,
    URDF_VERSIONS,
    DrawerTask,
    Trial,
    check_pose,
    check_variant,
    check_variant_pose,
    simpler_urdf_version,
)

#: The camera the policies see; SIMPLER overlays the real background image on it.
POLICY_CAMERA = "overhead_camera"
GOOGLE_ROBOT = "google_robot_static"
GOOGLE_ROBOT_CONTROL_MODE = (
    "arm_pd_ee_delta_pose_align_interpolate_by_planner_gripper_pd_joint_target_delta_pos_interpolate_by_planner"
)
#: Robot URDF variants of SIMPLER's visual-matching drawer evaluation (None is the original URDF), in the
#: order of its evaluation script (`envs.protocol.URDF_VERSIONS`, as SIMPLER takes them). The first one is
#: the default here.
VISUAL_MATCHING_URDF_VERSIONS: tuple[str | None, ...] = tuple(simpler_urdf_version(name) for name in URDF_VERSIONS)

SIMPLER_INSTALL_HINT = """\
envs.simpler needs SIMPLER: the packages mani_skill2_real2sim and simpler_env from the GitHub repositories
simpler-env/ManiSkill2_real2sim and simpler-env/SimplerEnv (not on PyPI; they need sapien==2.2.2, numpy<2 and
gymnasium<1.0, and sapien 2.2.2 needs setuptools<81). Install them into this Python environment:
    git clone --recurse-submodules https://github.com/simpler-env/SimplerEnv
    pip install "numpy<2" "gymnasium<1.0" "setuptools<81" -e SimplerEnv/ManiSkill2_real2sim -e SimplerEnv
It renders with Vulkan: an NVIDIA GPU with its driver, or on a CPU-only machine software Vulkan (Mesa lavapipe).
See the README section "Real SIMPLER (optional)" for details. Without SIMPLER, the tiny preset runs on the CPU
stand-in: gym.make("EditedDrawer-v0", preset="tiny"), scripts/eval_policies.py --preset tiny."""


def _import_simpler() -> Path:
    """Imports SIMPLER (registering its env ids) and returns its asset folder."""
    try:
        import mani_skill2_real2sim.envs  # noqa: F401  (registers the drawer env ids)
        from mani_skill2_real2sim import ASSET_DIR
    except ImportError as error:
        if error.name == "pkg_resources":
            raise ImportError(
                "sapien 2.2.2 (SIMPLER's simulator) imports pkg_resources, which setuptools>=81 no longer ships: "
                'run `pip install "setuptools>=77,<81"` in this environment.'
            ) from error
        raise ImportError(f"{SIMPLER_INSTALL_HINT}\n(import failed: {error})") from error
    return Path(ASSET_DIR)


def simpler_asset_dir() -> Path:
    """SIMPLER's asset folder (imports SIMPLER; raises ImportError with install instructions without it)."""
    return _import_simpler()


_shared_renderer: Any = None


def _keep_rendering_context_alive(renderer_kwargs: dict[str, Any]) -> None:
    """Holds one SAPIEN renderer for the life of the process.

    SAPIEN frees its Vulkan context, compiled shaders included, when its last renderer is freed, and every
    env makes its own renderer, which shares the context while another renderer exists. Without a renderer
    that outlives the envs, each env made after the previous one was closed compiles the shaders again:
    10-30 s with software Vulkan on a CPU instead of about 2 s.
    """
    global _shared_renderer
    if _shared_renderer is None:
        import sapien.core as sapien

        _shared_renderer = sapien.SapienRenderer(**renderer_kwargs)


def trial_reset_options(trial: Trial) -> dict[str, Any]:
    """The `env.reset(options=...)` that places SIMPLER's robot at the trial's start pose.

    SIMPLER reads the robot base position and orientation from the reset options (without them it places
    the base at random) and modifies the dictionary it is given, so build a fresh one for every reset.
    """
    x, y, _ = trial.robot_init_xyyaw
    return {
        "robot_init_options": {
            "init_xy": np.array([x, y]),
            "init_rot_quat": np.array(trial.robot_init_quaternion),
        },
        "obj_init_options": {"init_xy": np.array([0.0, 0.0])},
    }


class NoRenderingDeviceError(RuntimeError):
    """SAPIEN finds no Vulkan device: the machine lacks a (software) Vulkan driver."""


class RobotStartPose(gym.Wrapper):
    """Starts every episode with the robot at the start pose of one protocol trial.

    Keys of the caller's reset options replace the trial's (e.g. another trial's `robot_init_options`);
    observations, actions, rewards and infos are SIMPLER's, unchanged.
    """

    def __init__(self, env: gym.Env, trial: Trial):
        super().__init__(env)
        self.trial = trial

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        merged = trial_reset_options(self.trial)
        merged.update(copy.deepcopy(options or {}))
        return self.env.reset(seed=seed, options=merged)


#: `gym.make` arguments of both drawer settings: the robot, its controller and SIMPLER's clock and time limit.
_GOOGLE_ROBOT_KWARGS: dict[str, Any] = {
    "obs_mode": "rgbd",
    "robot": GOOGLE_ROBOT,
    "control_mode": GOOGLE_ROBOT_CONTROL_MODE,
    "sim_freq": SIM_FREQ,
    "control_freq": CONTROL_FREQ,
    "max_episode_steps": MAX_EPISODE_STEPS,
}


def visual_matching_kwargs(
    pose: str,
    asset_dir: Path,
    *,
    shader_dir: str = "rt",
    urdf_version: str | None = VISUAL_MATCHING_URDF_VERSIONS[0],
    add_segmentation: bool = True,
) -> dict[str, Any]:
    """`gym.make` keyword arguments of SIMPLER's visual-matching drawer evaluation at a robot start pose.

    `shader_dir="rt"` ray-traces at 32 samples per pixel with the denoiser (SIMPLER's setting); `"ibl"`
    rasterises, which is much faster but looks harder and lacks soft shadows.
    """
    return {
        **_GOOGLE_ROBOT_KWARGS,
        "scene_name": "dummy_drawer",
        "station_name": "mk_station_recolor",
        "light_mode": "simple",
        "disable_bad_material": True,
        "shader_dir": shader_dir,
        "urdf_version": urdf_version,
        "rgb_overlay_path": str(asset_dir / "real_inpainting" / f"open_drawer_{check_pose(pose)}.png"),
        "rgb_overlay_cameras": [POLICY_CAMERA],
        "camera_cfgs": {"add_segmentation": True} if add_segmentation else {},
    }


#: SIMPLER's cabinet where a variant names none (its drawer env's default ``station_name``).
DEFAULT_STATION = "mk_station"
#: Where SIMPLER's drawer envs find stages and cabinets, relative to its asset folder (its `DEFAULT_SCENE_ROOT`
#: and `DEFAULT_ASSET_ROOT`).
STAGES_FOLDER = Path("hab2_bench_assets") / "stages"
CABINETS_FOLDER = Path("custom")


class MissingSimplerAssetError(FileNotFoundError):
    """A file SIMPLER needs for a scene variant is not in its asset folder."""


def variant_asset_files(variant: str, asset_dir: Path) -> list[Path]:
    """The files of SIMPLER's asset folder that a variant-aggregation scene variant loads: its stage and its
    cabinet's URDF (the stock cabinets are boxes; `mk_station3`'s tabletop mesh lies beside it)."""
    scene = SCENE_VARIANTS[check_variant(variant)]
    return [asset_dir / STAGES_FOLDER / f"{scene.scene_name}.glb",
            asset_dir / CABINETS_FOLDER / f"{scene.station_name or DEFAULT_STATION}.urdf"]


def missing_variant_assets(variants: list[str] | tuple[str, ...], asset_dir: Path | None = None
                           ) -> dict[str, list[Path]]:
    """The variants (of ``variants``) whose files are missing from SIMPLER's asset folder, with those files.
    Imports SIMPLER to find the folder unless ``asset_dir`` is given."""
    asset_dir = asset_dir if asset_dir is not None else _import_simpler()
    missing = {variant: [path for path in variant_asset_files(variant, asset_dir) if not path.is_file()]
               for variant in variants}
    return {variant: paths for variant, paths in missing.items() if paths}


def missing_assets_message(missing: dict[str, list[Path]], asset_dir: Path) -> str:
    """What is missing and how to get it or leave it out."""
    files = sorted({path for paths in missing.values() for path in paths})
    listed = ", ".join(str(path.relative_to(asset_dir)) if path.is_relative_to(asset_dir) else str(path)
                       for path in files)
    available = [name for name in SCENE_VARIANTS if name not in missing]
    return (
        f"SIMPLER's asset folder {asset_dir} lacks {listed}, needed by the variant-aggregation scene "
        f"variant(s) {', '.join(missing)}. A full clone of https://github.com/simpler-env/ManiSkill2_real2sim "
        "has them under data/ (a partial snapshot may leave large files out): copy them to the same place under "
        f"{asset_dir}, or point MS2_REAL2SIM_ASSET_DIR at a complete data folder. Or run only the variants that "
        f"are there: --variants {' '.join(available)} (the report then averages over those only)."
    )


def check_variant_assets(variants: list[str] | tuple[str, ...], asset_dir: Path | None = None) -> None:
    """Raises `MissingSimplerAssetError` naming every missing file of ``variants`` and how to get it."""
    asset_dir = asset_dir if asset_dir is not None else _import_simpler()
    missing = missing_variant_assets(variants, asset_dir)
    if missing:
        raise MissingSimplerAssetError(missing_assets_message(missing, asset_dir))


def variant_aggregation_kwargs(
    variant: str, *, shader_dir: str = "rt", add_segmentation: bool = True
) -> dict[str, Any]:
    """`gym.make` keyword arguments of SIMPLER's variant-aggregation drawer evaluation in one scene variant.

    No real background overlay; SIMPLER's script ray-traces every variant (`shader_dir="rt"`); the robot URDF
    is SIMPLER's original (its script names none). The robot start pose comes with each reset
    (`trial_reset_options`).
    """
    return {
        **_GOOGLE_ROBOT_KWARGS,
        **SCENE_VARIANTS[check_variant(variant)].build_kwargs(),
        "shader_dir": shader_dir,
        "rgb_overlay_path": None,
        "camera_cfgs": {"add_segmentation": True} if add_segmentation else {},
    }


def make_simpler_variant_drawer(
    task: DrawerTask | str,
    pose: str,
    *,
    shader_dir: str = "rt",
    urdf_version: str | None = None,
    add_segmentation: bool = True,
    **overrides: Any,
) -> gym.Env:
    """Makes SIMPLER's drawer env for `task` in one variant-aggregation trial, `pose` = ``variant/grid pose``
    (e.g. ``"office/x0.65_y-0.20"``, see `envs.protocol.VARIANT_POSES` and `SCENE_VARIANTS`).

    Uses `variant_aggregation_kwargs`; `overrides` replace or add `gym.make` keyword arguments. `urdf_version`
    None is SIMPLER's original robot URDF, the one its variant aggregation uses. Before SIMPLER builds the
    scene, a stage or cabinet file missing from its asset folder raises `MissingSimplerAssetError` naming it.
    Every reset starts at the grid pose (`RobotStartPose`).
    """
    task = task if isinstance(task, DrawerTask) else DrawerTask.parse(task)
    trial = Trial(task, check_variant_pose(pose))
    asset_dir = _import_simpler()
    check_variant_assets([trial.variant], asset_dir)
    kwargs = variant_aggregation_kwargs(trial.variant, shader_dir=shader_dir, add_segmentation=add_segmentation)
    if urdf_version is not None:
        kwargs["urdf_version"] = urdf_version
    kwargs.update(overrides)
    return RobotStartPose(_make_env(task, kwargs), trial)


def _make_env(task: DrawerTask, kwargs: dict[str, Any]) -> gym.Env:
    """`gym.make` of SIMPLER's drawer env, with one renderer kept alive and a clear error without Vulkan."""
    try:
        if kwargs.get("renderer", "sapien") == "sapien":
            _keep_rendering_context_alive(kwargs.get("renderer_kwargs") or {})
        return gym.make(task.simpler_env_id, **kwargs)
    except RuntimeError as error:
        if "rendering device" in str(error) or "vulkan" in str(error).lower():
            raise NoRenderingDeviceError(
                f"SAPIEN found no Vulkan device to render with ({error}). On a GPU machine install the NVIDIA "
                "Vulkan driver; on a CPU-only machine install software Vulkan (Mesa lavapipe): see the README "
                "section 'Real SIMPLER (optional)'."
            ) from error
        raise


def make_simpler_drawer(
    task: DrawerTask | str,
    pose: str,
    *,
    shader_dir: str = "rt",
    urdf_version: str | None = VISUAL_MATCHING_URDF_VERSIONS[0],
    add_segmentation: bool = True,
    **overrides: Any,
) -> gym.Env:
    """Makes SIMPLER's drawer env for `task` with the robot at start pose `pose` (a0 ... c2).

    Uses SIMPLER's visual-matching settings (see `visual_matching_kwargs`); `overrides` replace any of those
    `gym.make` keyword arguments or add others, e.g. `light_mode="darker"` or `rgb_overlay_path=None`.
    With `add_segmentation` the cameras also return `Segmentation`, from which `envs.masks` reads the
    cabinet's exact pixels (SIMPLER's background overlay needs it too). `shader_dir="rt"` ray-traces as
    SIMPLER's evaluation does (about a minute per step on a CPU); `"ibl"` rasterises (about 0.1-0.5 s).

    The env is SIMPLER's own (`env.unwrapped`), wrapped only so that every reset starts at `pose`. The first
    call also keeps one SAPIEN renderer alive for the process, so that later envs skip shader compilation.
    """
    task = task if isinstance(task, DrawerTask) else DrawerTask.parse(task)
    if "/" in pose:
        raise ValueError(f"{pose!r} is a variant-aggregation trial pose: make its env with "
                         "make_simpler_variant_drawer (make_simpler_drawer makes visual-matching envs)")
    check_pose(pose)
    if not add_segmentation and overrides.get("rgb_overlay_path", "") is not None:
        raise ValueError(
            "SIMPLER pastes the real background image outside the simulated objects using the camera's "
            "segmentation: keep add_segmentation=True, or turn the overlay off with rgb_overlay_path=None."
        )
    asset_dir = _import_simpler()
    kwargs = visual_matching_kwargs(
        pose, asset_dir, shader_dir=shader_dir, urdf_version=urdf_version, add_segmentation=add_segmentation
    )
    kwargs.update(overrides)
    overlay = kwargs.get("rgb_overlay_path")
    if overlay is not None and not Path(overlay).is_file():
        raise FileNotFoundError(
            f"SIMPLER's real background image {overlay} is missing. SIMPLER finds its assets in the `data` folder "
            "of a source checkout of ManiSkill2_real2sim (install it with `pip install -e`), or in the folder "
            "named by the environment variable MS2_REAL2SIM_ASSET_DIR."
        )
    return RobotStartPose(_make_env(task, kwargs), Trial(task, pose))


@dataclass(frozen=True)
class DrawerState:
    """What SIMPLER reports about the episode: the instruction, the task drawer's joint position, success."""

    instruction: str
    drawer_qpos: float
    success: bool


def read_drawer_state(env: gym.Env) -> DrawerState:
    simulator = env.unwrapped
    evaluation = simulator.evaluate()
    return DrawerState(
        instruction=simulator.get_language_instruction(),
        drawer_qpos=float(evaluation["qpos"]),
        success=bool(evaluation["success"]),
    )
