"""Offline machines: no network is detected once and loaders fail fast; every missing model is named in one
error with its `hf download` command and the flag that points the job at the downloaded folder."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest

from sim2real_edit import offline
from sim2real_edit.components import WeightsNotFoundError, load_base_components
from sim2real_edit.d3po import TrainConfig, required_models, train, with_models_dir
from sim2real_edit.feedback import FeedbackConfig
from sim2real_edit.frames import TrainingFrames

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("SIM2REAL_EDIT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))  # empty cache


def full_config(tmp_path, **overrides) -> TrainConfig:
    return TrainConfig(output_dir=str(tmp_path / "out"), frames=str(tmp_path / "frames"),
                       feedback=FeedbackConfig(embedder_model=str(tmp_path / "no-dreamsim")), **overrides)


def test_an_unreachable_hub_is_detected_once_and_loading_fails_fast(monkeypatch):
    for name in offline.OFFLINE_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    probes = []
    # The network check is the one thing replaced: this machine may or may not have a network.
    monkeypatch.setattr(offline, "hub_reachable", lambda: probes.append(1) or False)

    started = time.perf_counter()
    for _ in range(2):
        with pytest.raises(WeightsNotFoundError) as error:
            load_base_components("no-such-org/no-such-model")
    assert time.perf_counter() - started < 30  # retrying the hub takes about a minute
    assert probes == [1]  # checked once; from then on this process (and its children) work offline
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True
    message = str(error.value)
    assert "hf download no-such-org/no-such-model --local-dir" in message and "--base" in message
    assert "huggingface-cli" not in message  # the installed huggingface_hub has no such command


def test_every_missing_model_is_listed_in_one_error_with_its_download_and_flag(tmp_path):
    config = full_config(tmp_path)
    frames = TrainingFrames(np.zeros((2, 32, 32, 3), np.uint8), np.zeros((2, 32, 32), bool), np.zeros(2, bool),
                            ["a", "b"])
    started = time.perf_counter()
    with pytest.raises(offline.MissingModelsError) as error:
        train(config, frames=frames, progress=False)
    assert time.perf_counter() - started < 30  # nothing was loaded or retried
    message = str(error.value)
    assert message.startswith("5 pretrained models are missing")
    for command in (("hf download timbrooks/instruct-pix2pix --local-dir models/instruct-pix2pix   then pass "
                     "--base models/instruct-pix2pix"),
                    ("hf download depth-anything/Depth-Anything-V2-Large-hf --local-dir "
                     "models/Depth-Anything-V2-Large-hf   then pass --depth-model"),
                    "hf download IDEA-Research/grounding-dino-tiny --local-dir models/grounding-dino-tiny",
                    "hf download facebook/sam2.1-hiera-large --local-dir models/sam2.1-hiera-large",
                    f"cache_dir='{tmp_path / 'no-dreamsim'}'", "--embedder-model", "--models-dir models"):
        assert command in message
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_models_dir_points_every_model_at_its_downloaded_folder(tmp_path):
    models = tmp_path / "models"
    config = with_models_dir(full_config(tmp_path), models)
    assert config.base == str(models / "instruct-pix2pix")
    assert config.feedback.depth_model == str(models / "Depth-Anything-V2-Large-hf")
    assert config.feedback.detector_model == str(models / "grounding-dino-tiny")
    assert config.feedback.segmenter_model == str(models / "sam2.1-hiera-large")
    assert config.feedback.embedder_source == str(models / "dreamsim")
    with pytest.raises(offline.MissingModelsError, match=f"there is no folder {models / 'grounding-dino-tiny'}"):
        offline.require_models(required_models(config))
    for model in required_models(config):  # what `hf download --local-dir` (or dreamsim) leaves there
        for name in model.files:
            (Path(model.source) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(model.source) / name).write_text(json.dumps({}))
    offline.require_models(required_models(config))


def test_the_train_script_takes_a_folder_flag_for_every_model(tmp_path):
    spec = importlib.util.spec_from_file_location("train_specialist", REPO_ROOT / "scripts" / "train_specialist.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    frames = tmp_path / "frames"
    frames.mkdir()
    with pytest.raises(offline.MissingModelsError) as error:
        script.main(["--style", "wood", "--frames", str(frames), "--output", str(tmp_path / "out"), "--models-dir",
                     str(tmp_path / "models"), "--depth-model", str(tmp_path / "my-depth")])
    message = str(error.value)
    assert f"then pass --base {tmp_path / 'models' / 'instruct-pix2pix'}" in message
    assert f"then pass --depth-model {tmp_path / 'my-depth'}" in message  # an explicit flag wins
    assert f"then pass --embedder-model {tmp_path / 'models' / 'dreamsim'}" in message
