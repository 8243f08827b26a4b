"""The CNN drawer policy (policies.cnn): it sees pixels, never privileged state, and saves/loads exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.protocol import protocol_trials
from envs.standin import DrawerStandIn
from miniature.demonstrations import standin_config
from policies.base import Policy
from policies.cnn import CNNPolicy, CNNPolicyConfig, resize_frames, task_index, tcp_in_base_frame

CONFIG = standin_config((160, 128))


def batched_observations(trials: list[tuple[str, str]], seed: int = 0) -> tuple[dict, list[str]]:
    """Reset observations of several stand-in envs stacked along axis 0, with the privileged keys removed."""
    rows, instructions = [], []
    for task, pose in trials:
        env = DrawerStandIn(task, pose, config=CONFIG, appearance="real")
        obs, _ = env.reset(seed=seed)
        rows.append(obs)
        instructions.append(env.get_language_instruction())
    stacked = _stack(rows)
    for key in ("handle_pos", "drawer_qpos"):
        del stacked["extra"][key]
    return stacked, instructions


def _stack(rows: list) -> dict | np.ndarray:
    if isinstance(rows[0], dict):
        return {key: _stack([row[key] for row in rows]) for key in rows[0]}
    return np.stack(rows)


def test_it_is_a_policy_that_acts_without_privileged_state():
    policy = CNNPolicy.initialise(CNNPolicyConfig(seed=1))
    assert isinstance(policy, Policy)
    observations, instructions = batched_observations([("OpenTopDrawer", "a0"), ("CloseBottomDrawer", "c2")])
    assert "handle_pos" not in observations["extra"] and "drawer_qpos" not in observations["extra"]
    policy.reset(instructions)
    step = policy.act(observations, instructions)
    assert step.actions.shape == (2, 7) and step.terminate.shape == (2,)
    assert np.all(step.actions[:, 3:6] == 0) and set(np.abs(step.actions[:, 6])) == {1.0}


def test_its_action_changes_when_only_the_image_changes():
    policy = CNNPolicy.initialise(CNNPolicyConfig(seed=2))
    observations, instructions = batched_observations([("OpenMiddleDrawer", "b1")])
    policy.reset(instructions)
    first = policy.act(observations, instructions).actions
    other = {
        **observations,
        "image": {
            "overhead_camera": {
                **observations["image"]["overhead_camera"],
                "rgb": np.ascontiguousarray(observations["image"]["overhead_camera"]["rgb"][:, ::-1]),
            }
        },
    }
    policy.reset(instructions)  # the same proprioceptive memory: only the frame differs
    assert not np.allclose(policy.act(other, instructions).actions[:, :3], first[:, :3])
    policy.reset(instructions)
    np.testing.assert_array_equal(policy.act(observations, instructions).actions, first)


def test_the_instruction_and_proprioception_matter_too():
    policy = CNNPolicy.initialise(CNNPolicyConfig(seed=3))
    observations, _ = batched_observations([("OpenTopDrawer", "b1")])
    actions = []
    for instruction in ("open top drawer", "close bottom drawer"):
        policy.reset([instruction])
        actions.append(policy.act(observations, [instruction]).actions[:, :3])
    assert not np.allclose(*actions)
    policy.reset(["open top drawer"])
    moved = {
        **observations,
        "extra": {
            **observations["extra"],
            "tcp_pose": observations["extra"]["tcp_pose"] + [0.1, 0, 0, 0, 0, 0, 0],
        },
    }
    assert not np.allclose(policy.act(moved, ["open top drawer"]).actions[:, :3], actions[0])


def test_save_and_load_round_trip(tmp_path):
    policy = CNNPolicy.initialise(CNNPolicyConfig(seed=4, keypoints=8, hidden=64))
    folder = policy.save_pretrained(tmp_path / "cnn-test", metadata={"training_step": 7})
    loaded = CNNPolicy.from_pretrained(folder)
    assert loaded.name == "cnn-test" and loaded.config == policy.config
    assert loaded.metadata["training_step"] == 7
    for key, value in policy.network.state_dict().items():
        torch.testing.assert_close(loaded.network.state_dict()[key], value, rtol=0, atol=0)
    observations, instructions = batched_observations([(t.task.name, t.pose) for t in protocol_trials()[::9]])
    policy.reset(instructions)
    loaded.reset(instructions)
    for _ in range(2):
        expected = policy.act(observations, instructions)
        got = loaded.act(observations, instructions)
        np.testing.assert_array_equal(got.actions, expected.actions)
        np.testing.assert_array_equal(got.terminate, expected.terminate)


def test_the_same_seed_gives_the_same_weights_and_another_seed_does_not():
    a, b, c = (CNNPolicy.initialise(CNNPolicyConfig(seed=s)) for s in (5, 5, 6))
    for key, value in a.network.state_dict().items():
        torch.testing.assert_close(b.network.state_dict()[key], value, rtol=0, atol=0)
    assert any(
        not torch.equal(c.network.state_dict()[key], value) for key, value in a.network.state_dict().items()
    )


def test_tcp_is_read_in_the_robot_base_frame():
    env = DrawerStandIn("OpenTopDrawer", "a2", config=CONFIG)  # a2: the base is turned by -0.06 rad
    obs, _ = env.reset(seed=0)
    batch = {
        key: {k: v[None] for k, v in group.items()} for key, group in obs.items() if key in ("agent", "extra")
    }
    start = tcp_in_base_frame(batch)[0]
    obs, *_ = env.step(np.r_[0.05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # forward along the base's x axis
    batch = {
        key: {k: v[None] for k, v in group.items()} for key, group in obs.items() if key in ("agent", "extra")
    }
    np.testing.assert_allclose(tcp_in_base_frame(batch)[0] - start, [0.05, 0.0, 0.0], atol=1e-5)


def test_frames_are_resized_with_their_mean_kept():
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 128, 160, 3), dtype=np.uint8)
    small = resize_frames(frames, (64, 80))
    assert small.shape == (2, 3, 64, 80) and small.dtype == np.uint8
    np.testing.assert_allclose(small.mean(axis=(2, 3)), frames.mean(axis=(1, 2)), atol=0.6)


def test_errors_name_the_problem_and_the_fix(tmp_path):
    with pytest.raises(ValueError, match="open top drawer"):
        task_index("open the fridge")
    with pytest.raises(FileNotFoundError, match="config.json"):
        CNNPolicy.from_pretrained(tmp_path)
    policy = CNNPolicy.initialise()
    policy.reset(["open top drawer"])
    observations, _ = batched_observations([("OpenTopDrawer", "a0"), ("OpenTopDrawer", "a1")])
    with pytest.raises(ValueError, match="reset"):
        policy.act(observations, ["open top drawer", "open top drawer"])
