"""Nothing is lost: outputs are never replaced without being asked, tiny-preset artefacts stay in their own
namespace, a specialist is not loaded over a base of the other kind, and files get the usual permissions."""

from __future__ import annotations

import os
import stat

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers EditedDrawer-v0)
from sim2real_edit.components import DEFAULT_BASE
from sim2real_edit.d3po import tiny_config, train
from sim2real_edit.feedback import Feedback, FeedbackConfig
from sim2real_edit.frames import TrainingFrames
from sim2real_edit.outputs import OutputExistsError
from sim2real_edit.specialist import WEIGHTS_NAME, EditSpecialist, SpecialistFormatError
from sim2real_edit.styles import StyleRegistry, tiny_home

pytestmark = pytest.mark.usefixtures("tiny_base")  # the tiny preset's base: the session's small build


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("SIM2REAL_EDIT_HOME", str(tmp_path / "home"))


def frames(count: int = 4, size: int = 32, seed: int = 0, prefix: str = "") -> TrainingFrames:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, size=(count, size, size, 3), dtype=np.uint8)
    masks = np.zeros((count, size, size), bool)
    masks[:, 8:24, 8:24] = True
    return TrainingFrames(images, masks, np.ones(count, bool), [f"{prefix}{i:04d}" for i in range(count)])


def tiny_run(output=None, **overrides):
    values = {"short_side": 32, "num_denoising_steps": 2, "samples_per_step": 4, "sample_batch_size": 2,
              "train_batch_size": 2, "optimizer_steps": 1, **overrides}
    if output is not None:
        values["output_dir"] = str(output)
    return tiny_config(**values)


RUN_INPUTS = {"exemplars": [np.full((32, 32, 3), (200, 140, 30), np.uint8)], "progress": False}


def run_inputs() -> dict:
    return {**RUN_INPUTS, "frames": frames(), "feedback": Feedback.analytic(FeedbackConfig(style_mask="full"))}


def test_training_never_replaces_a_specialist_without_overwrite(tmp_path):
    # A finished specialist without checkpoints/ (copied, or trained elsewhere), next to a user's own file.
    folder = tmp_path / "wood"
    EditSpecialist.tiny(0, style="wood").save_pretrained(folder, exemplars=[np.zeros((8, 8, 3), np.uint8)])
    (folder / "README.md").write_text("my notes on this specialist")
    (folder / "notes.txt").write_text("not written by training")
    before = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}

    with pytest.raises(OutputExistsError, match="--overwrite"):
        train(tiny_run(folder), **run_inputs())
    assert {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()} == before

    train(tiny_run(folder), overwrite=True, **run_inputs())
    assert (folder / WEIGHTS_NAME).read_bytes() != before[WEIGHTS_NAME]
    assert "tiny preset" in (folder / "README.md").read_text().lower()
    assert (folder / "notes.txt").read_text() == "not written by training"  # not a training output: kept
    assert (folder / "checkpoints" / "step-0000").is_dir()
    with pytest.raises(ValueError, match="choose one"):
        train(tiny_run(folder), resume=True, overwrite=True, **run_inputs())


def test_tiny_preset_writes_into_its_own_namespace_and_files_are_readable(tmp_path):
    registry_folder = StyleRegistry.load().get("wood").specialist_dir
    result = train(tiny_run(), **run_inputs())
    assert result.output_dir == tiny_home() / "specialists" / "wood"
    assert not registry_folder.exists()  # what a full-size run loads is untouched
    umask = os.umask(0)
    os.umask(umask)
    written = [result.output_dir / WEIGHTS_NAME, *result.output_dir.glob("checkpoints/**/*.safetensors")]
    assert len(written) >= 3  # the specialist, the reference weights, a step's weights
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_a_tiny_specialist_in_the_registry_folder_is_refused_by_a_full_size_env(tmp_path):
    folder = StyleRegistry.load().get("wood").specialist_dir  # as an old `--preset tiny` run left it
    EditSpecialist.tiny(0, style="wood").save_pretrained(folder, exemplars=[np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(SpecialistFormatError) as error:
        gym.make("EditedDrawer-v0", style="wood")
    message = str(error.value)
    assert "tiny" in message and "preset='tiny'" in message and "--frames" in message and "--overwrite" in message


def test_a_specialist_is_not_loaded_over_a_base_of_another_kind_unless_asked(tmp_path):
    folder = tmp_path / "specialist"
    trained = EditSpecialist.tiny(0, style="wood")
    trained.save_pretrained(folder)
    assert EditSpecialist.read_config(folder).base == "tiny:0"
    with pytest.raises(SpecialistFormatError, match="allow_other_base"):
        EditSpecialist.from_pretrained(base=DEFAULT_BASE, specialist=folder)  # refused before any download
    with pytest.raises(SpecialistFormatError, match="tiny:0"):
        EditSpecialist.from_pretrained(base="tiny:1", specialist=folder)
    other = EditSpecialist.from_pretrained(base="tiny:1", specialist=folder, allow_other_base=True)
    assert other.config.base == "tiny:0"  # the recorded base stays on record
    assert EditSpecialist.from_pretrained(specialist=folder).config.base == "tiny:0"


def test_frames_are_never_mixed_with_an_earlier_collection(tmp_path):
    folder = tmp_path / "frames"
    frames(3, prefix="old").save(folder)
    newer = frames(2, seed=1, prefix="new")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        newer.save(folder)
    assert sorted(path.name for path in folder.glob("*.png")) == ["old0000.png", "old0001.png", "old0002.png"]
    newer.save(folder, overwrite=True)
    assert sorted(path.name for path in folder.glob("*.png")) == ["new0000.png", "new0001.png"]
    assert sorted(path.name for path in (folder / "masks").glob("*.png")) == ["new0000.png", "new0001.png"]
    loaded = TrainingFrames.from_folder(folder, short_side=32)
    assert loaded.names == ["new0000", "new0001"]
    np.testing.assert_array_equal(loaded.frames, newer.frames)
