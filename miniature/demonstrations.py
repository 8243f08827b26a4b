"""Demonstrations for behaviour cloning: the scripted expert on the drawer stand-in, with DART noise.

The teacher is `policies.scripted.ScriptedDrawerPolicy` at skill 1 (it reads the stand-in's privileged
state, which a teacher may). Each trial of the protocol is demonstrated ``clean_per_trial`` times as the
expert acts and ``noisy_per_trial`` times with Gaussian noise added to the *executed* tcp motion (DART,
Laskey et al. 2017) while the recorded label stays the expert's own action, so that the student sees
states off the expert's path together with the expert's way back. Only episodes the expert completes
successfully are kept. What is recorded is exactly what the CNN policy sees (`policies.cnn`): the frame
resized to the policy's input size, the task, the proprioception.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from envs.appearance import REAL_CABINET_STYLE
from envs.protocol import Trial, protocol_trials
from envs.standin import DrawerStandIn, DrawerStandInConfig
from envs.trial_env import parse_trial
from policies.cnn import ProprioceptionTracker, camera_frames, resize_frames, task_index
from policies.scripted import ScriptedDrawerPolicy

_SIMPLER_WIDTH, _SIMPLER_FOCAL_LENGTH = 640, 425.0


def standin_config(camera: tuple[int, int]) -> DrawerStandInConfig:
    """The stand-in at a (width, height) camera with SIMPLER's field of view."""
    width, height = camera
    return DrawerStandInConfig(
        image_width=width, image_height=height, focal_length=_SIMPLER_FOCAL_LENGTH * width / _SIMPLER_WIDTH
    )


@dataclass(frozen=True)
class DemonstrationSettings:
    """Which demonstrations to record (decided before training; see the module docstring)."""

    trials: tuple[str, ...] = tuple(trial.key for trial in protocol_trials())
    clean_per_trial: int = 1
    noisy_per_trial: int = 2
    # Metres per axis of executed tcp motion, an eighth of the expert's step. At 0.01 the expert, which grasps
    # only within 1 cm of the handle, dithered in front of it: a third of its open-drawer demonstrations ran
    # out of time and the rest taught the student not to close the gripper near the handle.
    dart_sigma: float = 0.005
    appearance: str = "real"
    camera: tuple[int, int] = (160, 128)  # (width, height) of the stand-in's camera
    image_size: tuple[int, int] = (64, 80)  # the policy's input (height, width)
    max_steps: int = 48
    seed: int = 0


@dataclass
class Demonstrations:
    """Recorded steps: inputs as the policy sees them and the expert's labels."""

    images: np.ndarray  # (N, 3, h, w) uint8
    tasks: np.ndarray  # (N,) int64
    proprio: np.ndarray  # (N, PROPRIO_DIM) float32
    motion: np.ndarray  # (N, 3) float32: the expert's tcp motion in the base frame (metres)
    close: np.ndarray  # (N,) float32: 1 where the expert closes the gripper
    terminate: np.ndarray  # (N,) float32: 1 at the expert's last step
    episode: np.ndarray  # (N,) int64
    episodes_recorded: int
    episodes_failed: int

    def __len__(self) -> int:
        return len(self.tasks)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial.npz")
        np.savez_compressed(partial, **asdict(self))
        partial.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Demonstrations:
        with np.load(path) as data:
            return cls(
                **{f.name: data[f.name] if data[f.name].ndim else data[f.name].item() for f in fields(cls)}
            )


def _demo_seed(settings: DemonstrationSettings, trial_index: int, demo_index: int) -> int:
    # A namespace of its own (the evaluation derives its reset seeds differently), fixed by the settings' seed.
    return int(np.random.SeedSequence([settings.seed, 0xDE30, trial_index, demo_index]).generate_state(1)[0])


def _row(observations: dict) -> dict:
    """A single env observation as a batch of one."""
    return {
        key: _row(value) if isinstance(value, dict) else np.asarray(value)[None]
        for key, value in observations.items()
    }


def record_episode(
    env: DrawerStandIn, trial: Trial, seed: int, dart_sigma: float, settings: DemonstrationSettings
) -> tuple[dict[str, list], bool]:
    """One expert episode: per step the policy's inputs and the expert's labels, and whether it succeeded."""
    rng = np.random.default_rng(seed)
    expert = ScriptedDrawerPolicy(1.0, seed=seed, name="expert")
    instruction = trial.task.instruction
    expert.reset([instruction])
    proprioception = ProprioceptionTracker()
    observations, info = env.reset(seed=seed)
    steps: dict[str, list] = {key: [] for key in ("images", "proprio", "motion", "close", "terminate")}
    for _ in range(settings.max_steps):
        batch = _row(observations)
        decision = expert.act(batch, [instruction])
        steps["images"].append(resize_frames(camera_frames(batch), settings.image_size)[0])
        steps["proprio"].append(proprioception(batch)[0])
        steps["motion"].append(decision.actions[0, :3].astype(np.float32))
        steps["close"].append(np.float32(decision.actions[0, 6] > 0))
        steps["terminate"].append(np.float32(decision.terminate[0]))
        executed = decision.actions[0].copy()
        executed[:3] += rng.normal(0.0, dart_sigma, size=3) if dart_sigma > 0 else 0.0
        observations, _, _, _, info = env.step(executed)
        if decision.terminate[0]:
            break
    return steps, bool(info["success"]) and bool(steps["terminate"][-1])


def record_trials(
    settings: DemonstrationSettings, trial_keys: list[str], real_material: str = REAL_CABINET_STYLE
) -> list[tuple[int, int, dict | None]]:
    """The demonstrations of some of ``settings.trials``: ``(protocol index, demo index, steps)`` per episode,
    steps None where the expert failed. An episode depends only on its trial and demo index (its seed), so
    trials can be recorded in any grouping, in any process."""
    config = standin_config(settings.camera)
    protocol = protocol_trials()
    recorded = []
    for key in trial_keys:
        trial = parse_trial(key)
        trial_index = protocol.index(trial)
        env = DrawerStandIn(
            trial.task, trial.pose, config=config, appearance=settings.appearance, add_segmentation=False,
            real_material=real_material,
        )
        for demo_index in range(settings.clean_per_trial + settings.noisy_per_trial):
            sigma = 0.0 if demo_index < settings.clean_per_trial else settings.dart_sigma
            steps, success = record_episode(
                env, trial, _demo_seed(settings, trial_index, demo_index), sigma, settings
            )
            recorded.append((trial_index, demo_index, steps if success else None))
        env.close()
    return recorded


def collect_demonstrations(
    settings: DemonstrationSettings,
    progress: bool = True,
    executor: Executor | None = None,
    real_material: str = REAL_CABINET_STYLE,
) -> Demonstrations:
    """Records the expert over ``settings.trials`` (see the module docstring), one trial at a time, in the
    ``executor``'s processes where one is given; the result does not depend on it."""
    keys = [trial.key for trial in protocol_trials() if trial.key in set(settings.trials)]
    if executor is None:
        parts = (record_trials(settings, [key], real_material) for key in keys)
    else:
        parts = executor.map(record_trials, [settings] * len(keys), [[key] for key in keys],
                             [real_material] * len(keys))
    episodes = []
    for part in tqdm(parts, total=len(keys), desc="demonstrations", unit="trial", disable=not progress):
        episodes += part
    return assemble_demonstrations(episodes)


def assemble_demonstrations(episodes: list[tuple[int, int, dict | None]]) -> Demonstrations:
    """The recorded episodes (see `record_trials`) in protocol order, the failed ones left out."""
    columns: dict[str, list] = {key: [] for key in ("images", "proprio", "motion", "close", "terminate")}
    tasks: list[int] = []
    episode_ids: list[int] = []
    recorded = failed = 0
    protocol = protocol_trials()
    for trial_index, _, steps in sorted(episodes, key=lambda episode: episode[:2]):
        if steps is None:
            failed += 1
            continue
        for key, values in steps.items():
            columns[key] += values
        tasks += [task_index(protocol[trial_index].task.instruction)] * len(steps["images"])
        episode_ids += [recorded] * len(steps["images"])
        recorded += 1
    if not recorded:
        raise RuntimeError(
            f"the expert completed none of the {len(episodes)} demonstration episodes; check the env"
        )
    return Demonstrations(
        images=np.stack(columns["images"]),
        tasks=np.array(tasks, dtype=np.int64),
        proprio=np.stack(columns["proprio"]).astype(np.float32),
        motion=np.stack(columns["motion"]).astype(np.float32),
        close=np.array(columns["close"], dtype=np.float32),
        terminate=np.array(columns["terminate"], dtype=np.float32),
        episode=np.array(episode_ids, dtype=np.int64),
        episodes_recorded=recorded,
        episodes_failed=failed,
    )
