"""A small CNN drawer policy that sees: camera pixels, the instruction and SIMPLER-available proprioception.

Inputs, and nothing else (the stand-in's privileged ``handle_pos`` / ``drawer_qpos`` are never read):

- the policy camera's RGB frame, ``obs["image"]["overhead_camera"]["rgb"]``, resized inside the policy to
  `CNNPolicyConfig.image_size` (antialiased);
- the instruction, parsed to one of the six drawer tasks (a learned embedding);
- the tcp position in the robot base frame (``obs["extra"]["tcp_pose"]`` moved into the frame of
  ``obs["agent"]["base_pose"]``), the gripper closedness (``obs["agent"]["qpos"][GRIPPER_QPOS_INDEX]``, a
  finger joint of the Google robot in SIMPLER as in the stand-in), and the tcp's motion over the last step
  (the policy remembers the previous tcp position; zero at an episode's first step).

Network: strided convolutions over the image plus two coordinate channels, a spatial soft-argmax that turns
feature maps into keypoints, and a global average of the last feature map; concatenated with the task
embedding and the proprioception into an MLP with three heads: the tcp motion in the base frame (in units
of `CNNPolicyConfig.action_scale` metres), a gripper close/open logit and a terminate logit. The env action is
``(motion, 0, 0, 0, +1 close | -1 open)``; the episode ends where the terminate probability passes 0.5, as
SIMPLER's evaluator ends an episode at the policy's terminate.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from envs.protocol import ALL_TASKS
from envs.simpler import POLICY_CAMERA
from policies.base import ACTION_DIM, PolicyStep

GRIPPER_QPOS_INDEX = 7
PROPRIO_DIM = 7  # tcp position (3), gripper closedness (1), last tcp motion (3)
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
POLICY_KIND = "cnn-drawer-policy"
_INSTRUCTIONS = {task.instruction: index for index, task in enumerate(ALL_TASKS)}
# Centre and scale of the tcp position in the base frame (metres) over the drawer workspace.
_TCP_CENTRE = np.array([0.55, -0.15, 0.65], dtype=np.float32)
_TCP_SCALE = np.float32(0.3)


@dataclass(frozen=True)
class CNNPolicyConfig:
    """Architecture of the CNN policy; saved with its weights."""

    image_size: tuple[int, int] = (64, 80)  # (height, width) the camera frame is resized to
    channels: tuple[int, ...] = (8, 16, 32)  # 3x3 convs, the first two of stride 2
    keypoints: int = 16
    task_embedding: int = 16
    hidden: int = 256
    action_scale: float = 0.04  # metres per unit of the motion head (the scripted expert's step)
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CNNPolicyConfig:
        values = dict(values)
        values["image_size"] = tuple(values["image_size"])
        values["channels"] = tuple(values["channels"])
        return cls(**values)


def task_index(instruction: str) -> int:
    """The index in `envs.protocol.ALL_TASKS` of a drawer instruction such as ``"open top drawer"``."""
    key = " ".join(instruction.strip().lower().split())
    if key not in _INSTRUCTIONS:
        raise ValueError(
            f"the CNN drawer policy knows the instructions {sorted(_INSTRUCTIONS)}, got {instruction!r}"
        )
    return _INSTRUCTIONS[key]


def _rotation_from_quaternion(quaternion: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotation matrices of (N, 4) unit quaternions (w, x, y, z), SAPIEN's order."""
    w, x, y, z = np.moveaxis(quaternion / np.linalg.norm(quaternion, axis=1, keepdims=True), 1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=1),
        ],
        axis=1,
    )


def tcp_in_base_frame(observations: dict[str, Any]) -> np.ndarray:
    """(N, 3) tcp positions in the robot base frame (forward, left, up) of a batched observation."""
    tcp = np.asarray(observations["extra"]["tcp_pose"], dtype=np.float64)[:, :3]
    base = np.asarray(observations["agent"]["base_pose"], dtype=np.float64)
    rotation = _rotation_from_quaternion(base[:, 3:7])
    return np.einsum("nji,nj->ni", rotation, tcp - base[:, :3])


def camera_frames(observations: dict[str, Any]) -> np.ndarray:
    """(N, H, W, 3) uint8 policy camera frames of a batched observation."""
    return np.asarray(observations["image"][POLICY_CAMERA]["rgb"])


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W, 3) uint8 frames resized (antialiased bilinear) to (N, 3, h, w) uint8, the policy's input."""
    images = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    if tuple(images.shape[2:]) != tuple(size):
        images = F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
    return images.round().clamp(0, 255).to(torch.uint8).numpy()


class ProprioceptionTracker:
    """Builds the proprioception vector of each env, remembering its tcp between steps."""

    def __init__(self) -> None:
        self._previous_tcp: np.ndarray | None = None

    def reset(self) -> None:
        self._previous_tcp = None

    def __call__(self, observations: dict[str, Any]) -> np.ndarray:
        """(N, PROPRIO_DIM) float32: normalised tcp position, gripper closedness, tcp motion of the last step
        (in units of the expert's step)."""
        tcp = tcp_in_base_frame(observations).astype(np.float32)
        gripper = np.asarray(observations["agent"]["qpos"], dtype=np.float32)[
            :, GRIPPER_QPOS_INDEX : GRIPPER_QPOS_INDEX + 1
        ]
        motion = np.zeros_like(tcp) if self._previous_tcp is None else tcp - self._previous_tcp
        self._previous_tcp = tcp
        return np.concatenate([(tcp - _TCP_CENTRE) / _TCP_SCALE, gripper, motion / 0.04], axis=1).astype(
            np.float32
        )


class SpatialSoftArgmax(nn.Module):
    """Expected (x, y) in [-1, 1] of each channel's softmax over positions, with a learned temperature."""

    def __init__(self) -> None:
        super().__init__()
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        n, c, h, w = features.shape
        weights = torch.softmax(features.reshape(n, c, h * w) / self.log_temperature.exp(), dim=-1)
        ys = torch.linspace(-1.0, 1.0, h, device=features.device, dtype=features.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=features.device, dtype=features.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        x = (weights * grid_x.reshape(1, 1, -1)).sum(-1)
        y = (weights * grid_y.reshape(1, 1, -1)).sum(-1)
        return torch.cat([x, y], dim=1)


class CNNPolicyNetwork(nn.Module):
    """Image + task + proprioception -> (motion (N, 3), gripper close logit (N,), terminate logit (N,))."""

    def __init__(self, config: CNNPolicyConfig) -> None:
        super().__init__()
        self.config = config
        height, width = config.image_size
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("coordinates", torch.stack([xs, ys])[None], persistent=False)
        widths = (5, *config.channels)
        layers: list[nn.Module] = []
        for index, (inputs, outputs) in enumerate(itertools.pairwise(widths)):
            layers += [nn.Conv2d(inputs, outputs, 3, 2 if index < 2 else 1, 1), nn.ReLU()]
        self.encoder = nn.Sequential(*layers)
        self.keypoint_logits = nn.Conv2d(config.channels[-1], config.keypoints, 1)
        self.soft_argmax = SpatialSoftArgmax()
        self.task_embedding = nn.Embedding(len(ALL_TASKS), config.task_embedding)
        features = 2 * config.keypoints + config.channels[-1] + config.task_embedding + PROPRIO_DIM
        self.trunk = nn.Sequential(
            nn.Linear(features, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.hidden), nn.ReLU()
        )
        self.head = nn.Linear(config.hidden, 5)
        # Channels-last convolutions are about a quarter faster on a CPU; the weights save as usual.
        self.to(memory_format=torch.channels_last)

    def forward(
        self, images: torch.Tensor, tasks: torch.Tensor, proprio: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``images`` (N, 3, h, w) float in [0, 1] at the config's size, ``tasks`` (N,) long, ``proprio``
        (N, PROPRIO_DIM)."""
        x = torch.cat([images - 0.5, self.coordinates.expand(len(images), -1, -1, -1)], dim=1)
        feature_map = self.encoder(x.contiguous(memory_format=torch.channels_last))
        keypoints = self.soft_argmax(self.keypoint_logits(feature_map))
        pooled = feature_map.mean(dim=(2, 3))
        hidden = self.trunk(torch.cat([keypoints, pooled, self.task_embedding(tasks), proprio], dim=1))
        out = self.head(hidden)
        return out[:, :3], out[:, 3], out[:, 4]


class CNNPolicy:
    """The `policies.base.Policy` of a `CNNPolicyNetwork`: batched ``reset`` / ``act`` on env observations."""

    def __init__(self, network: CNNPolicyNetwork, name: str = "cnn", metadata: dict[str, Any] | None = None):
        self.network = network.eval()
        self.name = name
        self.metadata = dict(metadata or {})
        self._proprioception = ProprioceptionTracker()
        self._tasks = np.zeros(0, dtype=np.int64)

    @classmethod
    def initialise(cls, config: CNNPolicyConfig | None = None, name: str = "cnn") -> CNNPolicy:
        """A new policy with weights drawn from ``config.seed`` (the same seed gives the same weights)."""
        config = config or CNNPolicyConfig()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(config.seed)
        try:
            network = CNNPolicyNetwork(config)
        finally:
            torch.random.set_rng_state(generator_state)
        return cls(network, name)

    @property
    def config(self) -> CNNPolicyConfig:
        return self.network.config

    def reset(self, instructions: list[str]) -> None:
        self._tasks = np.array([task_index(text) for text in instructions], dtype=np.int64)
        self._proprioception.reset()

    def act(self, observations: dict[str, Any], instructions: list[str]) -> PolicyStep:
        if len(instructions) != len(self._tasks):
            raise ValueError(
                f"{self.name} was reset for {len(self._tasks)} envs but act() got {len(instructions)} "
                "instructions; call reset(instructions) at the start of every batch of episodes"
            )
        images = resize_frames(camera_frames(observations), self.config.image_size)
        proprio = self._proprioception(observations)
        with torch.no_grad():
            motion, close_logit, terminate_logit = self.network(
                torch.from_numpy(images).float() / 255.0,
                torch.from_numpy(self._tasks),
                torch.from_numpy(proprio),
            )
        actions = np.zeros((len(instructions), ACTION_DIM))
        actions[:, :3] = motion.double().numpy() * self.config.action_scale
        actions[:, 6] = np.where(close_logit.numpy() > 0, 1.0, -1.0)
        return PolicyStep(actions=actions, terminate=terminate_logit.numpy() > 0)

    def save_pretrained(self, folder: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Writes ``model.safetensors`` and ``config.json`` (architecture and metadata) to ``folder``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.metadata.update(metadata or {})
        tensors = {key: value.detach().contiguous() for key, value in self.network.state_dict().items()}
        save_file(tensors, str(folder / WEIGHTS_NAME))
        document = {"kind": POLICY_KIND, "config": asdict(self.config), "metadata": self.metadata}
        (folder / CONFIG_NAME).write_text(json.dumps(document, indent=2) + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, name: str | None = None) -> CNNPolicy:
        """The policy saved in ``folder``; named after the folder unless ``name`` is given."""
        from safetensors.torch import load_file

        folder = Path(folder)
        config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        if not config_path.is_file() or not weights_path.is_file():
            raise FileNotFoundError(
                f"{folder} is not a CNN policy checkpoint: it needs {CONFIG_NAME} and {WEIGHTS_NAME} "
                "(written by CNNPolicy.save_pretrained; build them with scripts/build_miniature.py)"
            )
        document = json.loads(config_path.read_text())
        if document.get("kind") != POLICY_KIND:
            raise ValueError(f"{config_path} describes a {document.get('kind')!r}, not a {POLICY_KIND!r}")
        network = CNNPolicyNetwork(CNNPolicyConfig.from_dict(document["config"]))
        network.load_state_dict(load_file(str(weights_path)))
        return cls(network, name or folder.name, document.get("metadata"))
