"""Nothing is lost: outputs are never replaced without being asked, tiny-preset artefacts stay in their own
namespace, a specialist is not loaded over a base of the other kind, and files get the usual permissions."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers EditedDrawer-v0)
from sim2real_edit.components import DEFAULT_BASE
from sim2real_edit.d3po import tiny_config, train
from sim2real_edit.feedback import Feedback, FeedbackConfig
from sim2real_edit.frames import TrainingFrames
from sim2real_edit.outputs import NothingToResumeError, OutputExistsError
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


# ------------------------------------------------------------------ unwritable outputs fail before any work

REPO_ROOT = Path(__file__).resolve().parents[1]
# Runs a script as `python scripts/X.py ARGS` would, then tells whether torch was imported before it ended.
RUN_SCRIPT = ("import runpy, sys\nsys.argv = sys.argv[1:]\ntry:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
              "finally:\n    print('torch imported' if 'torch' in sys.modules else 'torch not imported')\n")


def script_command(script: str, *args: str) -> list[str]:
    return [sys.executable, "-c", RUN_SCRIPT, str(REPO_ROOT / "scripts" / script), *args]


def run_command(command: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SIM2REAL_EDIT_HOME": str(home), "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def assert_refused_at_once(done: subprocess.CompletedProcess, *expected: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    assert all(text in lines[0] for text in expected), lines[0]
    assert done.stdout.strip().endswith("torch not imported"), done.stdout[-500:]  # nothing heavy had started
    return lines[0]


def on_a_read_only_filesystem(command: list[str], folder: Path) -> list[str]:
    """`command` run where `folder` is a read-only tmpfs (a user and mount namespace: no privileges needed)."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], check=False,
                                                         capture_output=True).returncode != 0:
        pytest.skip("user namespaces (unshare -rm) are not available to mount a read-only filesystem")
    folder.mkdir(parents=True, exist_ok=True)
    return ["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o ro tmpfs "{folder}" && exec "$@"', "sh", *command]


@pytest.mark.parametrize("script, args", [
    ("train_specialist.py", ["--style", "wood", "--preset", "tiny", "--output", "{outside}"]),
    ("build_miniature.py", ["--small"]),
    ("eval_policies.py", ["--preset", "tiny", "--run-dir", "{outside}"]),
    ("bench_train.py", ["--preset", "tiny"]),
])
def test_a_read_only_data_root_is_refused_before_any_work(script, args, tmp_path):
    home = tmp_path / "read-only-home"
    args = [arg.format(outside=tmp_path / "out") for arg in args]
    done = run_command(on_a_read_only_filesystem(script_command(script, *args), home), home)
    line = assert_refused_at_once(done, f"the data root {home} ($SIM2REAL_EDIT_HOME)", "Read-only file system",
                                  "set SIM2REAL_EDIT_HOME to a writable folder")
    assert "looks like a bug" not in line


@pytest.mark.parametrize("script, args, expected", [
    ("train_specialist.py", ["--style", "wood", "--preset", "tiny", "--output", "{file}"],
     "the output folder {file}: {file} is a file, not a folder"),
    ("train_specialist.py", ["--style", "wood", "--preset", "tiny", "--output", "{file}/wood"],
     "{file} is a file, not a folder"),
    ("collect_frames.py", ["--backend", "standin", "--out", "{file}"], "--out {file}: {file} is a file, not a folder"),
    ("eval_policies.py", ["--preset", "tiny", "--run-dir", "{file}"], "--run-dir {file}: {file} is a file"),
    ("eval_policies.py", ["--report", "{file}"], "--report {file}: {file} is a file"),
    ("make_exemplars.py", ["--style", "wood", "--out", "{file}"], "{file} is a file, not a folder"),
    ("bench_train.py", ["--preset", "tiny", "--json", "{folder}"], "--json {folder}: {folder} is a folder"),
    ("bench_feedback.py", ["--preset", "tiny", "--json", "{file}/results.json"],
     "--json {file}/results.json: {file} is a file, not a folder"),
    ("bench_editor.py", ["--preset", "tiny", "--json", "{folder}"], "is a folder, not a file"),
])
def test_an_output_that_names_a_file_or_a_folder_of_the_wrong_kind_is_refused_at_once(script, args, expected,
                                                                                       tmp_path):
    names = {"file": tmp_path / "a-file", "folder": tmp_path / "a-folder"}
    names["file"].write_text("my file")
    names["folder"].mkdir()
    done = run_command(script_command(script, *[arg.format(**names) for arg in args]), tmp_path / "home")
    assert_refused_at_once(done, expected.format(**names))
    assert names["file"].read_text() == "my file" and list(names["folder"].iterdir()) == []


@pytest.mark.parametrize("state", ["missing", "empty", "killed before its first step"])
def test_resume_with_nothing_to_resume_names_the_folder_instead_of_training_from_scratch(state, tmp_path):
    output = tmp_path / "wood-run"
    if state != "missing":
        output.mkdir()
    if state == "killed before its first step":
        (output / "checkpoints").mkdir()
        (output / "train_config.json").write_text("{}")
    args = ["--style", "wood", "--preset", "tiny", "--output", str(output), "--resume"]
    done = run_command(script_command("train_specialist.py", *args), tmp_path / "home")
    fix = "--overwrite instead of --resume" if state == "killed before its first step" else "drop --resume"
    assert_refused_at_once(done, f"--resume: {output}", fix)
    assert not (output / "log.jsonl").exists()
    # The library refuses it too (an API caller gets the same answer).
    with pytest.raises(NothingToResumeError, match=str(output)):
        train(tiny_run(output), resume=True, **run_inputs())
