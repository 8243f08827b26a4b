"""The SIMPLER Google-Robot drawer protocol as data: six tasks, nine robot start poses, 54 trials.

Numbers from SIMPLER's visual-matching drawer evaluation (see README, "The protocol").
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
        return ROBOT_POSES[self.pose]

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
    if pose not in ROBOT_POSES:
        raise ValueError(f"unknown robot start pose {pose!r}; choose one of {', '.join(ROBOT_POSES)}")
    return pose
