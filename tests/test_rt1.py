"""The RT-1 adapter on a tiny RT-1-shaped SavedModel built here, and the sentence-embedding cache.

The tiny model has the signature of SIMPLER's RT-1 exports (flat ``arg_0_*`` / ``arg_1_*`` inputs,
``action/*`` and ``state/*`` outputs, a ``get_initial_state`` signature, ``policy_specs.pbtxt``) and
outputs that are easy to compute by hand:

    brightness     = mean of the 256x320 image it receives / 255
    world_vector   = [brightness + off_protocol, emb[0], 0.1 * t]
    rotation_delta = [emb[1], emb[2], 0.01 * memory[1]]
    gripper        = emb[3]
    terminate      = [t >= 2, t < 2, 0]
    state          t -> t + 1, memory -> memory + [brightness, 1]

where ``off_protocol`` is 0 exactly when the time step and the extra observation keys are fed as SIMPLER
feeds them (step type 1, reward 0, discount 1, zeros, empty strings).
"""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from policies.base import Policy
from policies.rt1 import (
    CHECKPOINT_LAYOUT,
    PUBLISHED_CHECKPOINTS,
    CheckpointNotFoundError,
    RT1Policy,
    rt1_outputs_to_actions,
)
from policies.sentence_encoder import SentenceEncoder, load_universal_sentence_encoder

EMBEDDING_DIM = 512
OPEN_TOP = "open top drawer"
CLOSE_MIDDLE = "close middle drawer"
STAND_IN_EMBEDDINGS = {OPEN_TOP: [0.1, 0.2, 0.3, 0.5], CLOSE_MIDDLE: [-0.2, 0.0, 0.0, 0.005]}


@pytest.fixture(scope="module")
def tf():
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed (pip install 'sim2real-edit[rt1]')")
    from policies.tensorflow_runtime import import_tensorflow

    return import_tensorflow()


def stand_in_encoder(texts: list[str]) -> np.ndarray:
    embeddings = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
    for row, text in enumerate(texts):
        embeddings[row, :4] = STAND_IN_EMBEDDINGS[text]
    return embeddings


def build_tiny_rt1(tf, folder: Path, batch_size: int | None) -> Path:
    """Saves a tiny RT-1-shaped tf-agents-style policy export to ``folder``."""
    n = batch_size
    time_step_specs = [
        tf.TensorSpec([n], tf.int32, name="arg_0_step_type"),
        tf.TensorSpec([n], tf.float32, name="arg_0_reward"),
        tf.TensorSpec([n], tf.float32, name="arg_0_discount"),
        tf.TensorSpec([n, 256, 320, 3], tf.uint8, name="arg_0_observation_image"),
        tf.TensorSpec([n, EMBEDDING_DIM], tf.float32, name="arg_0_observation_natural_language_embedding"),
        tf.TensorSpec([n], tf.string, name="arg_0_observation_natural_language_instruction"),
        tf.TensorSpec([n, 3], tf.float32, name="arg_0_observation_vector_to_go"),
    ]
    state_specs = [
        tf.TensorSpec([n, 1], tf.int32, name="arg_1_t"),
        tf.TensorSpec([n, 2], tf.float32, name="arg_1_memory"),
    ]

    class TinyRT1(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.step_gain = tf.Variable(0.1)

    module = TinyRT1()

    @tf.function(input_signature=time_step_specs + state_specs)
    def action(step_type, reward, discount, image, embedding, instruction, vector_to_go, t, memory):
        brightness = tf.reduce_mean(tf.cast(image, tf.float32), axis=[1, 2, 3]) / 255.0
        off_protocol = (
            tf.abs(tf.cast(step_type, tf.float32) - 1.0)
            + tf.abs(reward)
            + tf.abs(discount - 1.0)
            + tf.reduce_sum(tf.abs(vector_to_go), axis=1)
            + tf.cast(tf.strings.length(instruction), tf.float32)
        )
        steps = tf.cast(t[:, 0], tf.float32)
        return {
            "action/world_vector": tf.stack(
                [brightness + off_protocol, embedding[:, 0], module.step_gain * steps], 1
            ),
            "action/rotation_delta": tf.stack([embedding[:, 1], embedding[:, 2], 0.01 * memory[:, 1]], 1),
            "action/gripper_closedness_action": embedding[:, 3:4],
            "action/terminate_episode": tf.cast(
                tf.stack([steps >= 2, steps < 2, tf.zeros_like(steps, dtype=tf.bool)], 1), tf.int32
            ),
            "state/t": t + 1,
            "state/memory": memory + tf.stack([brightness, tf.ones_like(brightness)], 1),
        }

    if batch_size is None:

        @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name="batch_size")])
        def get_initial_state(batch_size):
            return {"t": tf.zeros([batch_size, 1], tf.int32), "memory": tf.zeros([batch_size, 2], tf.float32)}

    else:

        @tf.function(input_signature=[])
        def get_initial_state():
            return {"t": tf.zeros([batch_size, 1], tf.int32), "memory": tf.zeros([batch_size, 2], tf.float32)}

    module.action, module.get_initial_state = action, get_initial_state
    tf.saved_model.save(
        module, str(folder), signatures={"action": action, "get_initial_state": get_initial_state}
    )
    (folder / "policy_specs.pbtxt").write_text(_policy_specs_pbtxt(tf, time_step_specs, state_specs))
    return folder


def _policy_specs_pbtxt(tf, time_step_specs, state_specs) -> str:
    """The specs as tf-agents writes them next to the SavedModel (a text StructuredValue proto)."""
    from google.protobuf import text_format
    from tensorflow.python.saved_model import nested_structure_coder

    def unbatched(spec, prefix):
        return tf.TensorSpec(spec.shape[1:], spec.dtype, name=spec.name.removeprefix(prefix))

    specs = {
        "collect_data_spec": {spec.name: unbatched(spec, "arg_0_") for spec in time_step_specs},
        "policy_state_spec": {spec.name: unbatched(spec, "arg_1_") for spec in state_specs},
    }
    return text_format.MessageToString(nested_structure_coder.encode_structure(specs))


@pytest.fixture(scope="module")
def free_batch_checkpoint(tf, tmp_path_factory) -> Path:
    return build_tiny_rt1(tf, tmp_path_factory.mktemp("ckpt") / "tiny_rt1", batch_size=None)


@pytest.fixture(scope="module")
def single_env_checkpoint(tf, tmp_path_factory) -> Path:
    return build_tiny_rt1(tf, tmp_path_factory.mktemp("ckpt") / "tiny_rt1_single", batch_size=1)


def observations(frames: np.ndarray) -> dict:
    return {"image": {"overhead_camera": {"rgb": frames}}}


def white_and_black_frames() -> np.ndarray:
    # A white square frame gets padded to 256x320 with 32 black columns on each side: brightness 256/320.
    frames = np.zeros((2, 100, 100, 3), dtype=np.uint8)
    frames[0] = 255
    return frames


def expected_step(t: int, memory_y: float, action_scale: float) -> np.ndarray:
    """Hand-computed env actions of the tiny model for (white frame, OPEN_TOP), (black frame, CLOSE_MIDDLE)."""
    open_env = [0.8, 0.1, 0.1 * t, 0.2, 0.3, 0.01 * memory_y, 0.5]
    close_rotation = [0.0, 0.0, 0.01 * memory_y]  # norm 0 -> SIMPLER's fallback axis times angle 0 = 0
    close_env = [0.0, -0.2, 0.1 * t, *close_rotation, 0.0]  # gripper 0.005 is inside the deadband
    actions = np.array([open_env, close_env])
    actions[:, :6] *= action_scale
    return actions


# --------------------------------------------------------------------------- action conversion (no TF)


def test_action_conversion_matches_hand_computed_values():
    step = rt1_outputs_to_actions(
        world_vector=np.array([[0.1, -0.2, 0.3], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], dtype=np.float32),
        rotation_delta=np.array([[0.3, 0.0, 0.4], [1e-7, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32),
        gripper_closedness_action=np.array([[-0.3], [0.009], [-0.01]], dtype=np.float32),
        terminate_episode=np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.int32),
        action_scale=2.0,
    )
    expected = np.array(
        [
            [0.2, -0.4, 0.6, 0.6, 0.0, 0.8, -0.3],
            [0.0, 0.0, 0.0, 0.0, 2e-7, 0.0, 0.0],  # angle 1e-7 < 1e-6: kept along SIMPLER's fallback y axis
            [2.0, 2.0, 2.0, 0.0, 0.0, 0.0, -0.01],  # |g| = 0.01 is not below the deadband
        ]
    )
    assert step.actions.dtype == np.float64 and step.actions.shape == (3, 7)
    np.testing.assert_allclose(step.actions, expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(step.terminate, [False, True, False])


def test_action_conversion_reads_rotation_as_axis_angle_not_euler():
    # A large rotation: the axis-angle vector passes through unchanged (Euler-to-axis-angle would not).
    step = rt1_outputs_to_actions(
        np.zeros((1, 3)), np.array([[1.0, 1.0, 0.0]]), np.zeros((1, 1)), np.zeros((1, 3)), action_scale=0.5
    )
    np.testing.assert_allclose(step.actions[0, 3:6], [0.5, 0.5, 0.0], rtol=1e-12)


# --------------------------------------------------------------------------- missing checkpoint (no TF)


def test_missing_checkpoint_names_layout_and_published_checkpoints(tmp_path):
    with pytest.raises(CheckpointNotFoundError) as error:
        RT1Policy.from_pretrained(
            tmp_path / "rt_1_x_tf_trained_for_002272480_step", sentence_encoder=stand_in_encoder
        )
    message = str(error.value)
    for part in (*CHECKPOINT_LAYOUT, *PUBLISHED_CHECKPOINTS):
        assert part in message


def test_incomplete_checkpoint_names_what_is_missing(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"")
    (tmp_path / "variables").mkdir()
    with pytest.raises(CheckpointNotFoundError, match=r"missing: policy_specs\.pbtxt\)"):
        RT1Policy.from_pretrained(tmp_path, sentence_encoder=stand_in_encoder)


# --------------------------------------------------------------------------- the adapter on the tiny model


def test_adapter_follows_the_protocol_and_round_trips_state(free_batch_checkpoint):
    policy = RT1Policy.from_pretrained(
        free_batch_checkpoint, sentence_encoder=stand_in_encoder, action_scale=2.0
    )
    assert isinstance(policy, Policy) and policy.name == "tiny_rt1"
    instructions = [OPEN_TOP, CLOSE_MIDDLE]
    frames = white_and_black_frames()
    policy.reset(instructions)
    memory_y = [0.0, 1.0, 2.0]  # memory[1] counts steps: the state fed back drives the rotation's z
    for t in range(3):
        step = policy.act(observations(frames), instructions)
        np.testing.assert_allclose(step.actions, expected_step(t, memory_y[t], 2.0), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(step.terminate, [t >= 2, t >= 2])

    policy.reset(instructions)  # a new episode starts from get_initial_state again
    step = policy.act(observations(frames), instructions)
    np.testing.assert_allclose(step.actions, expected_step(0, 0.0, 2.0), rtol=1e-5, atol=1e-6)


def test_changed_instruction_restarts_only_that_env(free_batch_checkpoint):
    policy = RT1Policy.from_pretrained(free_batch_checkpoint, sentence_encoder=stand_in_encoder)
    frames = np.zeros((2, 64, 80, 3), dtype=np.uint8)
    policy.reset([OPEN_TOP, OPEN_TOP])
    policy.act(observations(frames), [OPEN_TOP, OPEN_TOP])
    step = policy.act(observations(frames), [OPEN_TOP, CLOSE_MIDDLE])
    np.testing.assert_allclose(step.actions[:, 2], [0.1, 0.0], atol=1e-7)  # t: env 0 at 1, env 1 back at 0
    np.testing.assert_allclose(step.actions[1, 1], -0.2, atol=1e-7)  # env 1 uses the new embedding


def test_batched_and_per_env_calls_agree(free_batch_checkpoint, single_env_checkpoint):
    rng = np.random.default_rng(0)
    instructions = [OPEN_TOP, CLOSE_MIDDLE, OPEN_TOP]
    batched = RT1Policy.from_pretrained(free_batch_checkpoint, sentence_encoder=stand_in_encoder)
    per_env = RT1Policy.from_pretrained(free_batch_checkpoint, sentence_encoder=stand_in_encoder, batch=False)
    fixed_single = RT1Policy.from_pretrained(single_env_checkpoint, sentence_encoder=stand_in_encoder)
    calls = {}
    for label, policy in (("batched", batched), ("per_env", per_env), ("fixed_single", fixed_single)):
        action_fn = policy._action_fn
        calls[label] = []

        def counting_action_fn(*args, _action_fn=action_fn, _calls=calls[label], **kwargs):
            _calls.append(len(kwargs["arg_0_step_type"]))
            return _action_fn(*args, **kwargs)

        policy._action_fn = counting_action_fn
        policy.reset(instructions)

    for _ in range(3):
        frames = rng.integers(0, 256, size=(3, 120, 150, 3), dtype=np.uint8)
        steps = [
            policy.act(observations(frames), instructions) for policy in (batched, per_env, fixed_single)
        ]
        for other in steps[1:]:
            np.testing.assert_allclose(other.actions, steps[0].actions, rtol=1e-6, atol=1e-7)
            np.testing.assert_array_equal(other.terminate, steps[0].terminate)
    assert steps[0].terminate.all()  # the third step of the tiny model terminates
    assert calls == {"batched": [3, 3, 3], "per_env": [1] * 9, "fixed_single": [1] * 9}


def test_act_before_reset_and_wrong_frames_are_refused(free_batch_checkpoint):
    policy = RT1Policy.from_pretrained(free_batch_checkpoint, sentence_encoder=stand_in_encoder)
    frames = white_and_black_frames()
    with pytest.raises(RuntimeError, match="call reset"):
        policy.act(observations(frames), [OPEN_TOP, CLOSE_MIDDLE])
    policy.reset([OPEN_TOP, CLOSE_MIDDLE])
    with pytest.raises(ValueError, match="uint8"):
        policy.act(observations(frames.astype(np.float32)), [OPEN_TOP, CLOSE_MIDDLE])


# --------------------------------------------------------------------------- sentence-embedding cache


class CountingEncoder:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        return stand_in_encoder(texts)


def test_sentence_cache_encodes_each_instruction_once_across_instances(tmp_path):
    counting = CountingEncoder()
    encoder = SentenceEncoder(handle="stand-in", cache_dir=tmp_path, encode_fn=counting)
    first = encoder([OPEN_TOP, CLOSE_MIDDLE, OPEN_TOP])
    encoder([CLOSE_MIDDLE])
    assert counting.batches == [[OPEN_TOP, CLOSE_MIDDLE]]
    np.testing.assert_array_equal(first, stand_in_encoder([OPEN_TOP, CLOSE_MIDDLE, OPEN_TOP]))

    def unavailable(texts):
        raise AssertionError(f"the encoder was called for cached texts {texts}")

    reloaded = SentenceEncoder(handle="stand-in", cache_dir=tmp_path, encode_fn=unavailable)
    np.testing.assert_array_equal(reloaded([CLOSE_MIDDLE, OPEN_TOP]), first[[1, 0]])
    stored = json.loads(reloaded.cache_path.read_text())
    assert stored["encoder"] == "stand-in" and sorted(stored["embeddings"]) == sorted(
        [OPEN_TOP, CLOSE_MIDDLE]
    )


def test_sentence_cache_is_per_encoder_and_checks_width(tmp_path):
    SentenceEncoder(handle="stand-in", cache_dir=tmp_path, encode_fn=stand_in_encoder)([OPEN_TOP])
    counting = CountingEncoder()
    SentenceEncoder(handle="another-encoder", cache_dir=tmp_path, encode_fn=counting)([OPEN_TOP])
    assert counting.batches == [[OPEN_TOP]]
    narrow = SentenceEncoder(
        handle="narrow", cache_dir=tmp_path, encode_fn=lambda texts: np.zeros((len(texts), 8))
    )
    with pytest.raises(ValueError, match="512"):
        narrow([OPEN_TOP])


def _save_tiny_sentence_encoder(tf, folder: Path) -> Path:
    class TinySentenceEncoder(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, texts):
            lengths = tf.cast(tf.strings.length(texts), tf.float32)
            return lengths[:, None] * tf.ones([1, EMBEDDING_DIM]) / 100.0

    tf.saved_model.save(TinySentenceEncoder(), str(folder))
    return folder


def test_sentence_encoder_loads_a_local_folder_and_a_compressed_url(tf, tmp_path):
    module_dir = _save_tiny_sentence_encoder(tf, tmp_path / "tiny_use")
    expected = np.full((2, EMBEDDING_DIM), [[0.15], [0.19]], dtype=np.float32)

    cached = SentenceEncoder(handle=module_dir, cache_dir=tmp_path / "cache")  # loads the folder lazily
    np.testing.assert_allclose(cached([OPEN_TOP, CLOSE_MIDDLE]), expected, rtol=1e-6)

    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for path in module_dir.rglob("*"):
            tar.add(path, arcname=str(path.relative_to(module_dir)), recursive=False)
    archive_path = tmp_path / "tiny_use.tar.gz"
    archive_path.write_bytes(archive.getvalue())
    encode = load_universal_sentence_encoder(archive_path.as_uri(), download_dir=tmp_path / "modules")
    np.testing.assert_allclose(encode([OPEN_TOP, CLOSE_MIDDLE]), expected, rtol=1e-6)
    assert len(list((tmp_path / "modules").glob("*/saved_model.pb"))) == 1
