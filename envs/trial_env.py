"""DrawerTrialEnv: one Gymnasium env that can run any trial of the drawer protocol on either backend.

SIMPLER fixes the task (env class) and the real background overlay (per robot pose) when an env is made,
so a different trial needs a different underlying env. This env makes them as needed (one at a time)
and picks the trial from, in order: `reset(options={"trial": Trial | "OpenTopDrawer/a0"})`, a trial set with
the `next_trial` attribute (per env of a vector env via `set_attr("next_trial", [...])`), the fixed `task`/`pose`
given at construction, or the protocol by seed (trial = protocol[seed % 54]).

`setting` picks the protocol (`envs.protocol.SETTINGS`): a trial chosen by seed, and the trial the env starts
with, come from its trials (variant aggregation: `variant_aggregation_trials`). A trial of the other setting is
still accepted by name. Variant aggregation runs on SIMPLER only: the stand-in has no scene variants.

`urdf_version` (default: the setting's, `DEFAULT_URDF_VERSION` or `VARIANT_AGGREGATION_URDF_VERSION`) picks the
robot URDF of SIMPLER's visual-matching protocol (`envs.protocol.URDF_VERSIONS`).
The stand-in has no URDFs: it accepts and records the name (in `info["urdf_version"]`) and renders the same
robot for all four, so the harness's URDF bookkeeping runs on a CPU but only SIMPLER shows the difference.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym

from sim2real_edit.seeding import check_reset_seed

from .masks import cabinet_segmentation_ids
from .protocol import (
    DEFAULT_URDF_VERSION,
    SETTINGS,
    VARIANT_AGGREGATION,
    VARIANT_AGGREGATION_URDF_VERSION,
    VISUAL_MATCHING,
    DrawerTask,
    Trial,
    check_trial_pose,
    check_urdf_version,
    setting_trials,
    simpler_urdf_version,
)

BACKENDS = ("standin", "simpler")


def preset_backend(preset: str | None) -> str:
    """The simulator of a preset: the CPU stand-in for ``"tiny"``, SIMPLER otherwise."""
    return "standin" if preset == "tiny" else "simpler"


#: SIMPLER's shader folders that rasterise: their frames are a function of the scene state. "rt" (SIMPLER's
#: default) ray-traces with random samples per pixel, and on a GPU with the OptiX denoiser; that it repeats
#: itself exactly has not been shown, so ray-traced episodes are not taken as repeatable.
RASTERISING_SHADERS = ("ibl", "default")


def reset_seed_changes_episode(backend: str, appearance: str = "sim", config: Any = None,
                               shader_dir: str = "rt", **other_build_kwargs: Any) -> bool:
    """Whether an episode of a trial can differ between reset seeds (or runs) when the policy's actions are
    the same, for an env built on ``backend`` with these keyword arguments (the others do not matter here).

    SIMPLER: only where it ray-traces (`RASTERISING_SHADERS`). Each of our envs is made for one task (a
    one-drawer env class) with the trial's start pose, background overlay and robot URDF given as options, so
    its reset draws nothing from the seed, and SAPIEN's physics and rasteriser repeat themselves (checked on the
    real SIMPLER in tests/test_simpler_integration.py). The stand-in: the seed jitters the gripper's start
    (``DrawerStandInConfig.tcp_start_jitter``) and fixes the sensor noise of every look but ``"sim"``; with no
    jitter, its ``"sim"`` look depends on the actions alone.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend == "simpler":
        return shader_dir not in RASTERISING_SHADERS
    from .standin import DrawerStandInConfig

    return appearance != "sim" or (config or DrawerStandInConfig()).tcp_start_jitter > 0


def parse_trial(value: Trial | str) -> Trial:
    if isinstance(value, Trial):
        return value
    task, _, pose = str(value).partition("/")
    if not pose:
        raise ValueError(f"a trial is written 'Task/pose', e.g. 'OpenTopDrawer/a0' or (variant aggregation) "
                         f"'OpenTopDrawer/base/x0.65_y-0.20'; got {value!r}")
    return Trial(DrawerTask.parse(task), check_trial_pose(pose))


class DrawerTrialEnv(gym.Env):
    """A drawer task at a robot start pose, on the stand-in or on the real SIMPLER simulator."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(
        self,
        backend: str = "standin",
        task: DrawerTask | str | None = None,
        pose: str | None = None,
        urdf_version: str | None = None,
        success_ends_episode: bool = True,
        setting: str = VISUAL_MATCHING,
        **backend_kwargs: Any,
    ):
        """``success_ends_episode=False`` keeps the episode going after success: SIMPLER's envs report
        ``terminated = success`` at every step, but its evaluator ends an episode only at the policy's
        terminate or the time limit and reads success at the last step (the evaluation harness's rule)."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        if (task is None) != (pose is None):
            raise ValueError("give both task= and pose=, or neither (then the protocol's trial is picked by seed)")
        if setting not in SETTINGS:
            raise ValueError(f"unknown setting {setting!r}; choose one of {SETTINGS}")
        self.backend = backend
        self.setting = setting
        if urdf_version is None:  # the setting's: the paper's for visual matching, SIMPLER's original otherwise
            urdf_version = DEFAULT_URDF_VERSION if setting == VISUAL_MATCHING else VARIANT_AGGREGATION_URDF_VERSION
        self.urdf_version = check_urdf_version(urdf_version)
        self.success_ends_episode = success_ends_episode
        self.backend_kwargs = backend_kwargs
        self.fixed_trial = Trial(DrawerTask.parse(task) if isinstance(task, str) else task,
                                 check_trial_pose(pose)) if task is not None else None
        self.next_trial: Trial | str | None = None
        self.trial = self.fixed_trial or setting_trials(setting)[0]
        self._env = self._make(self.trial)
        self.observation_space = self._env.observation_space
        self.action_space = self._env.action_space

    def _make(self, trial: Trial) -> gym.Env:
        if self.backend == "standin":
            if trial.variant is not None:
                raise ValueError(
                    f"the CPU stand-in has no scene variants, so it cannot run the {VARIANT_AGGREGATION} trial "
                    f"{trial.key!r}: run variant aggregation on the real SIMPLER (backend 'simpler', not --preset "
                    "tiny), or run visual-matching trials such as 'OpenTopDrawer/a0' on the stand-in"
                )
            from .standin import DrawerStandIn

            return DrawerStandIn(task=trial.task, pose=trial.pose, **self.backend_kwargs)
        if trial.variant is not None:
            from .simpler import make_simpler_variant_drawer

            return make_simpler_variant_drawer(trial.task, trial.pose,
                                               urdf_version=simpler_urdf_version(self.urdf_version),
                                               **self.backend_kwargs)
        from .simpler import make_simpler_drawer

        return make_simpler_drawer(trial.task, trial.pose, urdf_version=simpler_urdf_version(self.urdf_version),
                                   **self.backend_kwargs)

    def _choose_trial(self, seed: int | None, options: dict) -> Trial:
        if "trial" in options:
            return parse_trial(options["trial"])
        if self.next_trial is not None:
            return parse_trial(self.next_trial)
        if self.fixed_trial is not None:
            return self.fixed_trial
        if seed is not None:
            trials = setting_trials(self.setting)
            return trials[seed % len(trials)]
        return self.trial

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        seed = check_reset_seed(seed)
        super().reset(seed=seed)
        options = dict(options or {})
        trial = self._choose_trial(seed, options)
        options.pop("trial", None)
        if trial != self.trial:
            self._env.close()
            self._env = self._make(trial)
            self.trial = trial
        obs, info = self._env.reset(seed=seed, options=options or None)
        return obs, self._info(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self._env.step(action)
        return obs, reward, bool(terminated) and self.success_ends_episode, truncated, self._info(info)

    def _info(self, info: dict) -> dict:
        """The backend's info plus the same episode keys on both backends: trial, urdf_version (the protocol
        name), success, drawer_qpos."""
        qpos = self.drawer_qpos()
        return {**info, "trial": self.trial.key, "urdf_version": self.urdf_version, "drawer_qpos": qpos,
                "success": self.trial.task.is_success(qpos)}

    def reset_seed_changes_episode(self) -> bool:
        """See the module function `reset_seed_changes_episode`."""
        return reset_seed_changes_episode(self.backend, **self.backend_kwargs)

    def get_language_instruction(self) -> str:
        return self._env.unwrapped.get_language_instruction()

    def cabinet_ids(self) -> tuple[int, ...]:
        """Segmentation ids of the cabinet's links in the current scene (read after reset)."""
        return cabinet_segmentation_ids(self._env)

    def drawer_qpos(self) -> float:
        """Opening of the trial's drawer (metres)."""
        if self.backend == "standin":
            return float(self._env.unwrapped.drawer_qpos[self._env.unwrapped.target_index])
        from .simpler import read_drawer_state

        return float(read_drawer_state(self._env).drawer_qpos)

    def close(self):
        self._env.close()
