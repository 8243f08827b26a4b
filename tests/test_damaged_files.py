"""Damaged files: a truncated checkpoint falls back to the last intact step, a damaged episode database is
named with what to do, and checkpoints are read without running pickled code."""

from __future__ import annotations

import logging
import sqlite3

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from evaluation.results import ResultStore
from sim2real_edit.components import (
    TINY_BASE_ENV_VAR,
    TINY_TRAINED_BASE,
    DamagedWeightsError,
    tiny_base_components,
)
from sim2real_edit.d3po import tiny_config, train
from sim2real_edit.feedback import Feedback, FeedbackConfig
from sim2real_edit.frames import TrainingFrames
from sim2real_edit.specialist import WEIGHTS_NAME, EditSpecialist

pytestmark = pytest.mark.usefixtures("tiny_base")  # the tiny preset's base: the session's small build


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("SIM2REAL_EDIT_HOME", str(tmp_path / "home"))


def run(folder, steps: int):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(4, 32, 32, 3), dtype=np.uint8)
    masks = np.zeros((4, 32, 32), bool)
    masks[:, 8:24, 8:24] = True
    config = tiny_config(output_dir=str(folder), short_side=32, num_denoising_steps=2, samples_per_step=4,
                         sample_batch_size=2, train_batch_size=2, optimizer_steps=steps, keep_checkpoints=3,
                         learning_rate=1e-3)
    inputs = {"frames": TrainingFrames(images, masks, np.ones(4, bool), [str(i) for i in range(4)]),
              "exemplars": [np.full((32, 32, 3), (200, 140, 30), np.uint8)],
              "feedback": Feedback.analytic(FeedbackConfig(style_mask="full")), "progress": False}
    return config, inputs


def test_a_truncated_checkpoint_resumes_from_the_last_intact_step(tmp_path, caplog, monkeypatch):
    folder = tmp_path / "run"
    config, inputs = run(folder, steps=3)
    train(config, **inputs)
    straight = load_file(str(folder / WEIGHTS_NAME))

    # A full disk (or a kill) truncated the newest checkpoint's files, and the last log line is half written.
    newest = folder / "checkpoints" / "step-0002"
    for name in ("trainable.safetensors", "optimizer.pt"):
        data = (newest / name).read_bytes()
        (newest / name).write_bytes(data[: len(data) // 3])
    with open(folder / "log.jsonl", "a") as log:
        log.write('{"step": 2, "loss": 0.6')

    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: loads.append(kwargs) or real_load(*args, **kwargs))
    with caplog.at_level(logging.WARNING, logger="sim2real_edit.d3po"):
        result = train(config, resume=True, **inputs)
    assert "step-0002 is unreadable" in caplog.text and "resuming from step-0001" in caplog.text
    assert [entry["step"] for entry in result.log] == [0, 1, 2]  # step 2 trained again
    resumed = load_file(str(folder / WEIGHTS_NAME))
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=1e-6, msg=key)
    assert loads and all(kwargs.get("weights_only") is True for kwargs in loads)


def test_a_checkpoint_holding_pickled_code_is_not_run(tmp_path, caplog):
    folder = tmp_path / "run"
    config, inputs = run(folder, steps=2)
    train(config, **inputs)
    marker = tmp_path / "code-ran"

    class RunsCode:
        def __reduce__(self):
            return (marker.touch, ())

    torch.save({"state": RunsCode()}, folder / "checkpoints" / "step-0001" / "optimizer.pt")
    with caplog.at_level(logging.WARNING, logger="sim2real_edit.d3po"):
        train(config, resume=True, **inputs)
    assert not marker.exists()
    assert "step-0001 is unreadable" in caplog.text


def test_a_damaged_episode_database_is_named_with_what_to_do(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    database = run_dir / "episodes.sqlite"
    database.write_bytes(b"this is not an sqlite database, it was overwritten" * 100)
    with pytest.raises(sqlite3.DatabaseError) as error:
        ResultStore.open(run_dir)
    message = str(error.value)
    assert str(database) in message and "mv " in message and "run the same command again" in message


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_tiny_base_is_named_as_damaged_with_the_command_that_rebuilds_it(damage, tmp_path, monkeypatch):
    folder = tmp_path / "tiny-base"
    tiny_base_components(0).instruct_pix2pix_pipeline().save_pretrained(folder)
    monkeypatch.setenv(TINY_BASE_ENV_VAR, str(folder))
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"")
    with pytest.raises(DamagedWeightsError) as error:
        EditSpecialist.from_pretrained(base=TINY_TRAINED_BASE)
    message = str(error.value)
    assert f"the unet of the local model folder {folder} is damaged" in message
    assert f"mv {folder} {folder}.damaged" in message and "python scripts/build_miniature.py" in message
    assert "hf download" not in message  # not a download that is missing
    # Another local folder is named as damaged too, with how to fetch it again.
    with pytest.raises(DamagedWeightsError, match=f"{folder} is damaged .*hf download .* --local-dir {folder}"):
        EditSpecialist.from_pretrained(base=str(folder))
