"""Scripted drawer policies of graded skill for the stand-in env (`envs.standin.DrawerStandIn`).

They read the stand-in's privileged observations (``obs["extra"]["handle_pos"]``, ``["drawer_qpos"]``), so
they run on the stand-in only. They exist to give the evaluation harness, its tests and the CPU demo a set
of policies whose true order is known: skill 1 is a near-perfect script, skill 0 acts at random.

Skill degrades the script in three ways:
- misreading the instruction: with probability ``(1 - skill) * 2/3`` the episode targets a random drawer
  of the other two (so skill 0 picks uniformly);
- aim: a per-episode offset of standard deviation ``max_aim_error * (1 - skill)`` on every reach target,
  which makes a gripper miss the handle;
- distraction: each step, with probability ``(1 - skill) ** 2``, a random action (small random motion and
  random gripper command) replaces the scripted one; the script does not advance on such steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from envs.protocol import DRAWERS, DrawerTask
from envs.standin import PULL_DIRECTION
from policies.base import ACTION_DIM, PolicyStep

#: Named skills of `graded_policies`, best first.
GRADED_SKILLS: dict[str, float] = {
    "scripted-expert": 0.9,
    "scripted-good": 0.6,
    "scripted-poor": 0.3,
    "scripted-random": 0.0,
}

_GRIPPER_OPEN, _GRIPPER_CLOSE, _GRIPPER_HOLD = -1.0, 1.0, 0.0


class _Phase(IntEnum):
    APPROACH = 0  # to a stand-off point in front of the aim point, gripper open
    INSERT = 1  # open: into the handle
    GRASP = 2  # open: close the gripper
    PULL = 3  # open: drag the handle out
    PUSH = 4  # close: press the drawer front in
    RETREAT = 5  # release and back off
    DONE = 6


@dataclass(frozen=True)
class ScriptedPolicyConfig:
    """Motion constants of the script (metres, per 3 Hz control step)."""

    speed: float = 0.04
    reach_tolerance: float = 0.01
    stall_distance: float = 0.002  # a step that moves the tcp less than this counts as blocked
    standoff: float = 0.10
    pull_distance: float = 0.25
    push_height: float = 0.04  # push the drawer front this far above its handle
    push_depth: float = 0.30  # aim this far behind the front; the env stops the tcp at the front
    closed_drawer_qpos: float = 0.01
    retreat_steps: int = 2
    max_aim_error: float = 0.06
    distraction_motion: float = 0.03


def parse_instruction(instruction: str) -> DrawerTask:
    """``"open top drawer"`` -> ``DrawerTask("open", "top")``."""
    words = instruction.strip().lower().split()
    if len(words) != 3 or words[2] != "drawer":
        raise ValueError(
            "scripted drawer policies understand '<open|close> <top|middle|bottom> drawer', "
            f"got {instruction!r}"
        )
    return DrawerTask(words[0], words[1])


def _heading_from_quaternion(quaternion: np.ndarray) -> float:
    """Yaw of a (w, x, y, z) rotation about z."""
    return 2.0 * math.atan2(float(quaternion[3]), float(quaternion[0]))


def _world_to_base(vector: np.ndarray, heading: float) -> np.ndarray:
    c, s = math.cos(heading), math.sin(heading)
    return np.array([c * vector[0] + s * vector[1], -s * vector[0] + c * vector[1], vector[2]])


class ScriptedDrawerPolicy:
    """A batched scripted drawer policy; ``skill`` in [0, 1] (see the module docstring), ``seed`` fixes its
    randomness (the same seed and the same calls give the same actions)."""

    def __init__(
        self, skill: float, seed: int = 0, name: str | None = None, config: ScriptedPolicyConfig | None = None
    ) -> None:
        if not 0.0 <= skill <= 1.0:
            raise ValueError(f"skill must lie in [0, 1], got {skill}")
        self.skill = float(skill)
        self.name = name or f"scripted-skill{skill:.2f}"
        self.config = config or ScriptedPolicyConfig()
        self._rng = np.random.default_rng(seed)
        self._tasks: list[DrawerTask] = []
        self._drawer_index = np.zeros(0, dtype=int)
        self._aim_error = np.zeros((0, 3))
        self._phase = np.zeros(0, dtype=int)
        self._phase_steps = np.zeros(0, dtype=int)
        self._pull_start = np.zeros((0, 3))
        self._last_tcp: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"ScriptedDrawerPolicy(name={self.name!r}, skill={self.skill})"

    @property
    def distraction_probability(self) -> float:
        return (1.0 - self.skill) ** 2

    def reset(self, instructions: list[str]) -> None:
        n = len(instructions)
        self._tasks = [parse_instruction(text) for text in instructions]
        misread = self._rng.random(n) < (1.0 - self.skill) * 2.0 / 3.0
        other = self._rng.integers(1, len(DRAWERS), size=n)
        true_index = np.array([DRAWERS.index(task.drawer) for task in self._tasks], dtype=int)
        self._drawer_index = np.where(misread, (true_index + other) % len(DRAWERS), true_index)
        self._aim_error = self._rng.normal(0.0, self.config.max_aim_error * (1.0 - self.skill), size=(n, 3))
        self._phase = np.full(n, _Phase.APPROACH, dtype=int)
        self._phase_steps = np.zeros(n, dtype=int)
        self._pull_start = np.zeros((n, 3))
        self._last_tcp = None

    def act(self, observations: dict[str, Any], instructions: list[str]) -> PolicyStep:
        n = len(instructions)
        if n != len(self._tasks):
            raise ValueError(
                f"{self.name} was reset for {len(self._tasks)} envs but act() got {n} instructions; "
                "call reset(instructions) at the start of every batch of episodes"
            )
        extra = observations["extra"]
        if "handle_pos" not in extra:
            raise KeyError(
                "scripted drawer policies need the stand-in's privileged obs['extra']['handle_pos']; "
                "run them on envs.standin.DrawerStandIn, not on SIMPLER"
            )
        tcp = np.asarray(extra["tcp_pose"], dtype=np.float64)[:, :3]
        handles = np.asarray(extra["handle_pos"], dtype=np.float64)
        drawer_qpos = np.asarray(extra["drawer_qpos"], dtype=np.float64)
        base_quaternions = np.asarray(observations["agent"]["base_pose"], dtype=np.float64)[:, 3:]
        moved = np.full(n, np.inf) if self._last_tcp is None else np.linalg.norm(tcp - self._last_tcp, axis=1)
        self._last_tcp = tcp.copy()

        actions = np.zeros((n, ACTION_DIM))
        distracted = self._rng.random(n) < self.distraction_probability
        random_motion = self._rng.normal(0.0, self.config.distraction_motion, size=(n, 3))
        random_gripper = self._rng.uniform(-1.0, 1.0, size=n)
        for i in range(n):
            if self._phase[i] == _Phase.DONE:
                continue
            if distracted[i]:
                actions[i, :3], actions[i, 6] = random_motion[i], random_gripper[i]
                continue
            index = self._drawer_index[i]
            world_delta, gripper = self._scripted_step(
                i, tcp[i], handles[i, index], drawer_qpos[i, index], moved[i]
            )
            actions[i, :3] = _world_to_base(world_delta, _heading_from_quaternion(base_quaternions[i]))
            actions[i, 6] = gripper
        return PolicyStep(actions=actions, terminate=self._phase == _Phase.DONE)

    def _scripted_step(
        self, i: int, tcp: np.ndarray, handle: np.ndarray, drawer_qpos: float, moved: float
    ) -> tuple[np.ndarray, float]:
        """World-frame tcp motion and gripper command of env ``i``; advances its phase."""
        c = self.config
        phase = self._phase[i]
        blocked = moved < c.stall_distance
        opening = self._tasks[i].action == "open"
        aim = handle + self._aim_error[i] + (0.0 if opening else c.push_height) * np.array([0.0, 0.0, 1.0])
        self._phase_steps[i] += 1

        if phase == _Phase.APPROACH:
            target = aim + c.standoff * PULL_DIRECTION
            if np.linalg.norm(target - tcp) < c.reach_tolerance:
                self._advance(i, _Phase.INSERT if opening else _Phase.PUSH)
            return self._towards(tcp, target), _GRIPPER_OPEN
        if phase == _Phase.INSERT:
            if np.linalg.norm(aim - tcp) < c.reach_tolerance or (blocked and self._phase_steps[i] > 1):
                self._advance(i, _Phase.GRASP)
            return self._towards(tcp, aim), _GRIPPER_OPEN
        if phase == _Phase.GRASP:
            self._pull_start[i] = tcp
            self._advance(i, _Phase.PULL)
            return np.zeros(3), _GRIPPER_CLOSE
        if phase == _Phase.PULL:
            target = self._pull_start[i] + c.pull_distance * PULL_DIRECTION
            if np.linalg.norm(target - tcp) < c.reach_tolerance or (blocked and self._phase_steps[i] > 1):
                self._advance(i, _Phase.RETREAT)
            return self._towards(tcp, target), _GRIPPER_CLOSE
        if phase == _Phase.PUSH:
            if drawer_qpos <= c.closed_drawer_qpos or (blocked and self._phase_steps[i] > 1):
                self._advance(i, _Phase.RETREAT)
            return self._towards(tcp, aim - c.push_depth * PULL_DIRECTION), _GRIPPER_OPEN
        if phase == _Phase.RETREAT:
            if self._phase_steps[i] >= c.retreat_steps:
                self._advance(i, _Phase.DONE)
            return c.speed * PULL_DIRECTION, _GRIPPER_OPEN
        return np.zeros(3), _GRIPPER_HOLD

    def _advance(self, i: int, phase: _Phase) -> None:
        self._phase[i] = phase
        self._phase_steps[i] = 0

    def _towards(self, tcp: np.ndarray, target: np.ndarray) -> np.ndarray:
        offset = target - tcp
        distance = float(np.linalg.norm(offset))
        return offset if distance <= self.config.speed else offset * (self.config.speed / distance)


def graded_policies(seed: int = 0) -> list[ScriptedDrawerPolicy]:
    """The named scripted policies of `GRADED_SKILLS`, best first; their success rates fall in this order."""
    return [
        ScriptedDrawerPolicy(skill, seed=seed + rank, name=name)
        for rank, (name, skill) in enumerate(GRADED_SKILLS.items())
    ]
