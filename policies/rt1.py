"""RT-1 policies from SIMPLER's TF SavedModel checkpoints, run with plain TensorFlow (tf-agents not needed).

A checkpoint is a tf-agents policy export. Its flat ``action`` signature takes the time step and the policy
state as ``arg_0_step_type``, ``arg_0_reward``, ``arg_0_discount``, ``arg_0_observation_<key>`` and
``arg_1_<state key>``, and returns ``action/<key>`` and ``state/<key>``; ``get_initial_state`` gives the
state of a new episode. Like SIMPLER, every step is fed as a mid-episode transition (step type 1, reward 0,
discount 1) with the frame resized with padding to 256x320 under ``image``, the instruction's Universal
Sentence Encoder embedding under ``natural_language_embedding``, and every other observation key zero.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from policies.base import PolicyStep
from policies.sentence_encoder import SentenceEncoder
from policies.tensorflow_runtime import import_tensorflow

logger = logging.getLogger(__name__)

#: The RT-1 checkpoints SIMPLER publishes (folder names).
PUBLISHED_CHECKPOINTS = (
    "rt_1_x_tf_trained_for_002272480_step",
    "rt_1_tf_trained_for_000400120",
    "rt_1_tf_trained_for_000058240",
    "rt_1_tf_trained_for_000001120",
)
CHECKPOINT_LAYOUT = ("saved_model.pb", "variables/", "policy_specs.pbtxt")

IMAGE_HEIGHT, IMAGE_WIDTH = 256, 320
GRIPPER_DEADBAND = 1e-2  # SIMPLER zeroes google-robot gripper actions smaller than this
_MIN_ROTATION_ANGLE = 1e-6
_STEP_TYPE_MID = 1

_OBSERVATION_PREFIX = "arg_0_observation_"
_STATE_INPUT_PREFIX = "arg_1_"
_IMAGE_INPUT = _OBSERVATION_PREFIX + "image"
_EMBEDDING_INPUT = _OBSERVATION_PREFIX + "natural_language_embedding"
_TIME_STEP_VALUES = {"arg_0_step_type": _STEP_TYPE_MID, "arg_0_reward": 0, "arg_0_discount": 1}
_ACTION_OUTPUTS = ("world_vector", "rotation_delta", "gripper_closedness_action", "terminate_episode")

SentenceEmbedder = Callable[[list[str]], np.ndarray]


class CheckpointNotFoundError(FileNotFoundError):
    """The RT-1 checkpoint folder is missing or incomplete."""


def rt1_outputs_to_actions(
    world_vector: np.ndarray,
    rotation_delta: np.ndarray,
    gripper_closedness_action: np.ndarray,
    terminate_episode: np.ndarray,
    action_scale: float = 1.0,
) -> PolicyStep:
    """Turns batched RT-1 outputs into Google-robot env actions, exactly as SIMPLER does.

    ``world_vector`` (N, 3) is scaled; ``rotation_delta`` (N, 3) is read as an axis-angle vector, split into
    axis and angle and scaled (an angle under 1e-6 keeps its size along the y axis, SIMPLER's fallback
    axis); the gripper passes through, zeroed where ``|g| < 0.01``; an env terminates where
    ``terminate_episode[:, 0] > 0``. Actions are ``concat(world_vector, axis_angle, gripper)`` in float64.
    """
    world = np.asarray(world_vector, dtype=np.float64).reshape(-1, 3) * action_scale
    rotation = np.asarray(rotation_delta, dtype=np.float64).reshape(-1, 3)
    angle = np.linalg.norm(rotation, axis=1, keepdims=True)
    has_axis = angle > _MIN_ROTATION_ANGLE
    axis = np.where(has_axis, rotation / np.where(has_axis, angle, 1.0), np.array([0.0, 1.0, 0.0]))
    axis_angle = axis * angle * action_scale
    # The deadband is applied to the raw (float32) output, before the float64 cast, as SIMPLER does.
    raw_gripper = np.asarray(gripper_closedness_action).reshape(-1, 1)
    gripper = np.where(np.abs(raw_gripper) < GRIPPER_DEADBAND, 0.0, raw_gripper).astype(np.float64)
    terminate = np.asarray(terminate_episode).reshape(len(world), -1)[:, 0] > 0
    return PolicyStep(actions=np.concatenate([world, axis_angle, gripper], axis=1), terminate=terminate)


def _state_input_name(state_key: str) -> str:
    """The action signature's input for a state entry: ``state/a/b`` or ``a/b`` -> ``arg_1_a_b``."""
    return _STATE_INPUT_PREFIX + state_key.removeprefix("state/").replace("/", "_")


def _check_checkpoint_dir(checkpoint_dir: Path) -> None:
    def present(entry: str) -> bool:
        path = checkpoint_dir / entry.rstrip("/")
        return path.is_dir() if entry.endswith("/") else path.is_file()

    missing = [entry for entry in CHECKPOINT_LAYOUT if not present(entry)]
    if missing:
        raise CheckpointNotFoundError(
            f"no RT-1 checkpoint at {checkpoint_dir} (missing: {', '.join(missing)}). A checkpoint is a folder "
            f"holding {', '.join(CHECKPOINT_LAYOUT)} - a tf-agents policy export. SIMPLER publishes "
            f"{', '.join(PUBLISHED_CHECKPOINTS)}; download one (e.g. from SIMPLER's README) and pass its folder."
        )


class RT1Policy:
    """An RT-1 SavedModel driving a batch of Google-robot envs, with one policy state per env.

    Build it with `from_pretrained`. ``batch=True`` runs all envs in one call of the SavedModel where its
    signature has a free batch dimension; otherwise (or with ``batch=False``) it calls once per env.
    """

    def __init__(
        self,
        saved_model: Any,
        sentence_encoder: SentenceEmbedder,
        name: str,
        action_scale: float = 1.0,
        batch: bool = True,
    ) -> None:
        self._tf = import_tensorflow()
        self.name = name
        self.action_scale = action_scale
        self._saved_model = saved_model
        self._sentence_encoder = sentence_encoder
        if "action" not in saved_model.signatures:
            raise ValueError(
                f"the SavedModel of {name!r} has no 'action' signature (it has {sorted(saved_model.signatures)}); "
                "it is not a tf-agents policy export like SIMPLER's RT-1 checkpoints"
            )
        self._action_fn = saved_model.signatures["action"]
        self._input_specs: dict[str, Any] = dict(self._action_fn.structured_input_signature[1])
        for required in (_IMAGE_INPUT, _EMBEDDING_INPUT):
            if required not in self._input_specs:
                raise ValueError(
                    f"the 'action' signature of {name!r} has no input {required!r}; its inputs are "
                    f"{sorted(self._input_specs)}. An RT-1 checkpoint takes image and natural_language_embedding."
                )
        self._state_inputs = sorted(key for key in self._input_specs if key.startswith(_STATE_INPUT_PREFIX))
        self._signature_batch_size = self._fixed_batch_size()
        if self._signature_batch_size not in (None, 1) and not batch:
            raise ValueError(
                f"the checkpoint {name!r} only takes batches of exactly {self._signature_batch_size} envs, "
                "so it cannot be called per env; use batch=True with that many envs"
            )
        self.batch = batch
        image_shape = self._input_specs[_IMAGE_INPUT].shape
        self._image_size = (image_shape[1] or IMAGE_HEIGHT, image_shape[2] or IMAGE_WIDTH)
        self._instructions: list[str] = []
        self._embeddings = np.zeros((0, 0), dtype=np.float32)
        self._state: dict[str, np.ndarray] = {}

    @classmethod
    def from_pretrained(
        cls,
        checkpoint_dir: str | Path,
        sentence_encoder: SentenceEmbedder | None = None,
        action_scale: float = 1.0,
        batch: bool = True,
        name: str | None = None,
    ) -> RT1Policy:
        """Loads a SIMPLER RT-1 checkpoint folder (``saved_model.pb``, ``variables/``, ``policy_specs.pbtxt``).

        Args:
            checkpoint_dir: the checkpoint folder, e.g. ``.../rt_1_x_tf_trained_for_002272480_step``.
            sentence_encoder: instructions -> (N, 512) embeddings; default: the Universal Sentence Encoder
                (large v5) from TF-Hub with the default on-disk cache (`policies.sentence_encoder`).
            action_scale: multiplies the translation and rotation actions.
            batch: run all envs in one SavedModel call where the checkpoint allows it.
            name: the policy's name; default: the checkpoint folder's name.
        """
        checkpoint_dir = Path(checkpoint_dir).expanduser()
        _check_checkpoint_dir(checkpoint_dir)
        tf = import_tensorflow()  # before loading: it sets TensorFlow up to share the GPU
        saved_model = tf.saved_model.load(str(checkpoint_dir))
        return cls(
            saved_model,
            sentence_encoder if sentence_encoder is not None else SentenceEncoder(),
            name=name or checkpoint_dir.resolve().name,
            action_scale=action_scale,
            batch=batch,
        )

    def reset(self, instructions: list[str]) -> None:
        """Starts one episode per instruction: fresh policy states and the instructions' embeddings."""
        instructions = list(instructions)
        self._instructions = instructions
        self._embeddings = self._embed(instructions)
        if self._calls_batched(len(instructions)):
            self._state = self._initial_state(len(instructions))
        else:
            single = self._initial_state(1)
            self._state = {key: np.repeat(value, len(instructions), axis=0) for key, value in single.items()}

    def act(self, observations: dict[str, Any], instructions: list[str]) -> PolicyStep:
        """One RT-1 step for every env; an env whose instruction changed starts a new episode first."""
        frames = np.asarray(observations["image"]["overhead_camera"]["rgb"])
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected (N, H, W, 3) uint8 camera frames, got {frames.shape} {frames.dtype}")
        n_envs = len(frames)
        if len(instructions) != n_envs:
            raise ValueError(f"got {len(instructions)} instructions for {n_envs} envs; pass one per env")
        if len(self._instructions) != n_envs:
            raise RuntimeError(
                f"the policy was reset for {len(self._instructions)} envs but is acting on {n_envs}; "
                "call reset(instructions) with one instruction per env first"
            )
        self._restart_changed_instructions(list(instructions))

        inputs = self._model_inputs(frames)
        if self._calls_batched(n_envs):
            outputs = self._call_action(inputs)
        else:
            per_env = [
                self._call_action({key: value[index : index + 1] for key, value in inputs.items()})
                for index in range(n_envs)
            ]
            outputs = {key: np.concatenate([step[key] for step in per_env]) for key in per_env[0]}

        next_state = {
            _state_input_name(key): value for key, value in outputs.items() if key.startswith("state/")
        }
        missing = [f"action/{key}" for key in _ACTION_OUTPUTS if f"action/{key}" not in outputs]
        missing += [key for key in self._state_inputs if key not in next_state]
        if missing:
            raise ValueError(f"the checkpoint's action outputs lack {missing}; it returned {sorted(outputs)}")
        self._state = {key: next_state[key] for key in self._state_inputs}
        return rt1_outputs_to_actions(
            *(outputs[f"action/{key}"] for key in _ACTION_OUTPUTS), self.action_scale
        )

    def _embed(self, instructions: Sequence[str]) -> np.ndarray:
        embeddings = np.array(self._sentence_encoder(list(instructions)), dtype=np.float32)
        expected_dim = self._input_specs[_EMBEDDING_INPUT].shape[-1]
        if embeddings.shape != (len(instructions), expected_dim):
            raise ValueError(
                f"the sentence encoder gave shape {embeddings.shape} for {len(instructions)} instructions; the "
                f"checkpoint takes ({len(instructions)}, {expected_dim})"
            )
        return embeddings

    def _restart_changed_instructions(self, instructions: list[str]) -> None:
        changed = [index for index, text in enumerate(instructions) if text != self._instructions[index]]
        if not changed:
            return
        self._embeddings[changed] = self._embed([instructions[index] for index in changed])
        fresh = self._initial_state(1)
        for key, value in fresh.items():
            self._state[key][changed] = value[0]
        for index in changed:
            self._instructions[index] = instructions[index]

    def _fixed_batch_size(self) -> int | None:
        """The batch size the ``action`` signature is fixed to, or None where it takes any."""
        fixed = {spec.shape[0] for spec in self._input_specs.values() if spec.shape.rank and spec.shape[0]}
        if len(fixed) > 1:
            raise ValueError(f"the checkpoint's inputs disagree on their batch size: {sorted(fixed)}")
        return fixed.pop() if fixed else None

    def _calls_batched(self, n_envs: int) -> bool:
        if self._signature_batch_size is None:
            return self.batch
        if self._signature_batch_size == n_envs and (self.batch or n_envs == 1):
            return True
        if self._signature_batch_size == 1:
            return False
        raise ValueError(
            f"the checkpoint {self.name!r} only takes batches of exactly {self._signature_batch_size} envs, "
            f"got {n_envs}; run it with {self._signature_batch_size} envs"
        )

    def _initial_state(self, batch_size: int) -> dict[str, np.ndarray]:
        """``get_initial_state(batch_size)``, keyed by the action signature's state input names."""
        tf = self._tf
        initial_state_fn = self._saved_model.signatures.get("get_initial_state")
        if initial_state_fn is None:
            raw_state = self._saved_model.get_initial_state(batch_size)
        else:
            size_inputs = list(initial_state_fn.structured_input_signature[1])
            # A checkpoint exported for a fixed batch size takes no batch_size input.
            raw_state = initial_state_fn(**{key: tf.constant(batch_size, tf.int32) for key in size_inputs})
        state = {_state_input_name(key): np.array(value) for key, value in dict(raw_state).items()}
        if set(state) != set(self._state_inputs):
            raise ValueError(
                f"get_initial_state returned {sorted(state)} but the action signature takes {self._state_inputs}"
            )
        return state

    def _model_inputs(self, frames: np.ndarray) -> dict[str, Any]:
        """The action signature's inputs for a batch of frames, keyed by input name (state included)."""
        tf = self._tf
        n_envs = len(frames)
        resized = tf.image.resize_with_pad(
            frames, target_height=self._image_size[0], target_width=self._image_size[1]
        )
        inputs: dict[str, Any] = {
            _IMAGE_INPUT: tf.cast(resized, tf.uint8).numpy(),
            _EMBEDDING_INPUT: self._embeddings,
            **self._state,
        }
        for key, spec in self._input_specs.items():
            if key in inputs:
                continue
            shape = [n_envs, *spec.shape[1:]]
            if spec.dtype == tf.string:
                inputs[key] = np.full(shape, b"", dtype=object)
            else:
                fill = _TIME_STEP_VALUES.get(key, 0)
                inputs[key] = np.full(shape, fill, dtype=spec.dtype.as_numpy_dtype)
        return inputs

    def _call_action(self, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        tf = self._tf
        tensors = {
            key: tf.convert_to_tensor(value, dtype=self._input_specs[key].dtype)
            for key, value in inputs.items()
        }
        return {key: np.array(value) for key, value in self._action_fn(**tensors).items()}
