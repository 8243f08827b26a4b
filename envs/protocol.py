"""The SIMPLER Google-Robot drawer protocol as data: six tasks, nine robot start poses, 54 trials.

Numbers from SIMPLER's visual-matching drawer evaluation (see README, "The protocol"), and its second setting,
variant aggregation (`VARIANT_AGGREGATION`): the six tasks at a 3 x 3 grid of robot start poses in seven
scene variants, 378 trials. A variant-aggregation trial's pose names its variant and its grid pose,
``"office/x0.65_y-0.20"`` (trial key ``"OpenTopDrawer/office/x0.65_y-0.20"``), so that everything keyed by
(task, pose) keeps each variant's episodes apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DRAWERS: tuple[str, ...] = ("top", "middle", "bottom")
ACTIONS: tuple[str, ...] = ("open", "close")

#: Robot base start poses (x, y, yaw in radians) of the visual-matching protocol.
ROBOT_POSES: dict[str, tuple[float, float, float]] = {
    "a0": (0.644, -0.179, -0.03),
    "a1": (0.765, -0.182, -0.02),
    "a2": (0.889, -0.203, -0.06),
    "b0": (0.652, 0.009, 0.0),
    "b1": (0.752, 0.009, 0.0),
    "b2": (0.851, 0.035, 0.0),
    "c0": (0.665, 0.224, 0.0),
    "c1": (0.765, 0.222, -0.025),
    "c2": (0.865, 0.222, -0.025),
}

MAX_EPISODE_STEPS = 113
CONTROL_FREQ = 3
SIM_FREQ = 513
OPEN_SUCCESS_QPOS = 0.15
CLOSE_SUCCESS_QPOS = 0.05
CLOSE_START_QPOS = 0.2

#: Robot URDF versions of SIMPLER's visual-matching drawer evaluation, in the order of its script
#: (`scripts/rt1_drawer_visual_matching.sh`); ``"none"`` is SIMPLER's ``urdf_version=None`` (the original
#: URDF). Its published visual-matching numbers average the four; the paper ran only the first.
URDF_VERSIONS: tuple[str, ...] = (
    "recolor_cabinet_visual_matching_1",
    "recolor_tabletop_visual_matching_1",
    "recolor_tabletop_visual_matching_2",
    "none",
)
DEFAULT_URDF_VERSION = URDF_VERSIONS[0]


@dataclass(frozen=True)
class DrawerTask:
    """One of the six drawer tasks, e.g. ``DrawerTask("open", "top")``."""

    action: str
    drawer: str

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown drawer action {self.action!r}; choose one of {ACTIONS}")
        if self.drawer not in DRAWERS:
            raise ValueError(f"unknown drawer {self.drawer!r}; choose one of {DRAWERS}")

    @property
    def name(self) -> str:
        """SIMPLER's task name, e.g. ``OpenTopDrawer``."""
        return f"{self.action.capitalize()}{self.drawer.capitalize()}Drawer"

    @property
    def simpler_env_id(self) -> str:
        return f"{self.name}CustomInScene-v0"

    @property
    def instruction(self) -> str:
        return f"{self.action} {self.drawer} drawer"

    def is_success(self, drawer_qpos: float) -> bool:
        if self.action == "open":
            return drawer_qpos >= OPEN_SUCCESS_QPOS
        return drawer_qpos <= CLOSE_SUCCESS_QPOS

    @classmethod
    def parse(cls, name: str) -> DrawerTask:
        """Accepts ``OpenTopDrawer``, ``OpenTopDrawerCustomInScene-v0`` or ``open_top``."""
        for task in ALL_TASKS:
            if name in (task.name, task.simpler_env_id, f"{task.action}_{task.drawer}"):
                return task
        known = ", ".join(t.name for t in ALL_TASKS)
        raise ValueError(f"unknown drawer task {name!r}; known tasks: {known}")


ALL_TASKS: tuple[DrawerTask, ...] = tuple(DrawerTask(a, d) for a in ACTIONS for d in DRAWERS)


@dataclass(frozen=True)
class Trial:
    """One trial of the protocol: a task at a robot start pose."""

    task: DrawerTask
    pose: str

    @property
    def robot_init_xyyaw(self) -> tuple[float, float, float]:
        if self.variant is None:
            return ROBOT_POSES[self.pose]
        return VARIANT_POSES[self.robot_pose]

    @property
    def robot_init_quaternion(self) -> tuple[float, float, float, float]:
        """Base orientation (w, x, y, z): [0, 0, 0, 1] pre-multiplied by the yaw rotation about z."""
        yaw = self.robot_init_xyyaw[2]
        cz, sz = math.cos(yaw / 2), math.sin(yaw / 2)
        # (cz, 0, 0, sz) * (0, 0, 0, 1)
        return (-sz, 0.0, 0.0, cz)

    @property
    def key(self) -> str:
        return f"{self.task.name}/{self.pose}"

    @property
    def variant(self) -> str | None:
        """The scene variant of a variant-aggregation trial; None for a visual-matching trial."""
        variant, separator, _ = self.pose.partition("/")
        return variant if separator else None

    @property
    def robot_pose(self) -> str:
        """The robot start pose's name: ``a0`` ... ``c2``, or a variant-aggregation grid pose such as
        ``x0.65_y-0.20``."""
        return self.pose.rpartition("/")[2]

    @property
    def setting(self) -> str:
        return VISUAL_MATCHING if self.variant is None else VARIANT_AGGREGATION


def protocol_trials() -> list[Trial]:
    """The 54 trials of the paper's protocol: 9 poses x 3 drawers x 2 tasks, in a fixed order."""
    return [Trial(task, pose) for task in ALL_TASKS for pose in ROBOT_POSES]


def check_urdf_version(name: str) -> str:
    """A URDF version name of the protocol (``"None"`` is accepted for ``"none"``)."""
    if name == "None":
        name = "none"
    if name not in URDF_VERSIONS:
        raise ValueError(f"unknown robot URDF version {name!r}; choose from {', '.join(URDF_VERSIONS)}")
    return name


def simpler_urdf_version(name: str) -> str | None:
    """The ``urdf_version`` argument SIMPLER takes for a protocol URDF version name."""
    name = check_urdf_version(name)
    return None if name == "none" else name


def check_pose(pose: str) -> str:
    """A robot start pose of the visual-matching protocol (a0 ... c2)."""
    if pose not in ROBOT_POSES:
        raise ValueError(f"unknown robot start pose {pose!r}; choose one of {', '.join(ROBOT_POSES)}")
    return pose


# SIMPLER's second drawer setting, variant aggregation (its script `scripts/rt1_drawer_variant_agg.sh`): no
# real background overlay; the robot on a grid of start poses in a simulated apartment, and the scene varied
# one way at a time (background, lighting, cabinet), every variant ray-traced; success averaged over variants.
VISUAL_MATCHING = "visual-matching"
VARIANT_AGGREGATION = "variant-aggregation"
SETTINGS: tuple[str, ...] = (VISUAL_MATCHING, VARIANT_AGGREGATION)

#: The robot start grid as SIMPLER's script passes it (`--robot-init-x 0.65 0.85 3 --robot-init-y -0.2 0.2 3`):
#: (first, last, count) of evenly spaced values, both ends included; yaw 0 (`--robot-init-rot-rpy-range` all 0).
VARIANT_GRID_X: tuple[float, float, int] = (0.65, 0.85, 3)
VARIANT_GRID_Y: tuple[float, float, int] = (-0.2, 0.2, 3)
#: The robot URDF of variant aggregation: SIMPLER's original (its script passes no urdf_version).
VARIANT_AGGREGATION_URDF_VERSION = "none"
#: SIMPLER's stage (in ManiSkill2_real2sim's data/hab2_bench_assets/stages) of every variant but the backgrounds.
VARIANT_BASE_SCENE = "frl_apartment_stage_simple"


def _evenly_spaced(first: float, last: float, count: int) -> tuple[float, ...]:
    step = (last - first) / (count - 1)
    return tuple(first + index * step for index in range(count - 1)) + (last,)


def variant_pose_name(x: float, y: float) -> str:
    return f"x{x:.2f}_y{y:+.2f}"


#: Robot base start poses (x, y, yaw) of variant aggregation, in SIMPLER's order (x outer, y inner).
VARIANT_POSES: dict[str, tuple[float, float, float]] = {
    variant_pose_name(x, y): (x, y, 0.0) for x in _evenly_spaced(*VARIANT_GRID_X) for y in _evenly_spaced(*VARIANT_GRID_Y)
}


@dataclass(frozen=True)
class SceneVariant:
    """One scene variant of variant aggregation: SIMPLER's ``scene_name`` and the env build arguments its script
    adds (`--additional-env-build-kwargs`); None leaves SIMPLER's default (``station_name="mk_station"``, the
    cabinet; ``light_mode=None``, its default lighting)."""

    name: str
    scene_name: str = VARIANT_BASE_SCENE
    station_name: str | None = None
    light_mode: str | None = None

    def build_kwargs(self) -> dict[str, str]:
        """The `gym.make` arguments that make this variant (besides the shared ones)."""
        kwargs = {"scene_name": self.scene_name}
        if self.station_name is not None:
            kwargs["station_name"] = self.station_name
        if self.light_mode is not None:
            kwargs["light_mode"] = self.light_mode
        return kwargs


#: The variants in the order of SIMPLER's script: the base scene, two backgrounds, two lightings, two cabinets.
SCENE_VARIANTS: dict[str, SceneVariant] = {
    variant.name: variant
    for variant in (
        SceneVariant("base"),
        SceneVariant("bedroom", scene_name="modern_bedroom_no_roof"),
        SceneVariant("office", scene_name="modern_office_no_roof"),
        SceneVariant("brighter", light_mode="brighter"),
        SceneVariant("darker", light_mode="darker"),
        SceneVariant("station2", station_name="mk_station2"),
        SceneVariant("station3", station_name="mk_station3"),
    )
}


def check_variant(name: str) -> str:
    if name not in SCENE_VARIANTS:
        raise ValueError(f"unknown scene variant {name!r}; choose from {', '.join(SCENE_VARIANTS)}")
    return name


def check_variant_pose(pose: str) -> str:
    """A variant-aggregation trial pose, ``variant/grid pose`` (e.g. ``office/x0.65_y-0.20``)."""
    variant, separator, grid = pose.partition("/")
    if not separator:
        raise ValueError(f"a variant-aggregation pose is written 'variant/grid pose', e.g. 'base/x0.65_y-0.20'; "
                         f"got {pose!r}")
    check_variant(variant)
    if grid not in VARIANT_POSES:
        raise ValueError(f"unknown variant-aggregation robot start pose {grid!r}; choose one of "
                         f"{', '.join(VARIANT_POSES)}")
    return pose


def check_trial_pose(pose: str) -> str:
    """A trial pose of either setting: ``a0`` ... ``c2`` (visual matching) or ``variant/grid pose``."""
    return check_variant_pose(pose) if "/" in pose else check_pose(pose)


def variant_trial(task: DrawerTask, variant: str, grid_pose: str) -> Trial:
    return Trial(task, check_variant_pose(f"{variant}/{grid_pose}"))


def variant_aggregation_trials(variants: tuple[str, ...] | list[str] | None = None) -> list[Trial]:
    """The trials of variant aggregation, 7 variants x 6 tasks x 9 grid poses = 378, variant by variant (in
    `SCENE_VARIANTS` order), then task, then pose; ``variants`` keeps only those variants (protocol order)."""
    chosen = list(SCENE_VARIANTS) if variants is None else [check_variant(name) for name in variants]
    return [variant_trial(task, variant, pose)
            for variant in SCENE_VARIANTS if variant in chosen for task in ALL_TASKS for pose in VARIANT_POSES]


def setting_trials(setting: str) -> list[Trial]:
    """All trials of a setting, in protocol order."""
    if setting == VISUAL_MATCHING:
        return protocol_trials()
    if setting == VARIANT_AGGREGATION:
        return variant_aggregation_trials()
    raise ValueError(f"unknown setting {setting!r}; choose one of {', '.join(SETTINGS)}")
