"""The scripts as a user meets them: one-line errors with the fix (exit 2), tracebacks only under --debug, and
Ctrl-C / SIGTERM ending with one line that says what was saved and how to continue."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sim2real_edit import cli
from sim2real_edit.frames import TrainingFrames

pytestmark = pytest.mark.usefixtures("tiny_base")  # the tiny preset's base: the session's small build

REPO_ROOT = Path(__file__).resolve().parents[1]
# Runs a script as `python scripts/X.py ARGS` would, then tells whether torch was imported before it ended.
RUN_SCRIPT = (
    "import runpy, sys\n"
    "sys.argv = sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "finally:\n"
    "    print('torch imported' if 'torch' in sys.modules else 'torch not imported')\n"
)


def run_script(script: str, *args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "SIM2REAL_EDIT_HOME": str(home), "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", RUN_SCRIPT, str(REPO_ROOT / "scripts" / script), *args],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_frames(folder: Path) -> None:
    TrainingFrames(np.zeros((2, 16, 16, 3), np.uint8), np.zeros((2, 16, 16), bool), np.zeros(2, bool),
                   ["a", "b"]).save(folder)


@pytest.mark.parametrize("script, args, expected", [
    ("train_specialist.py", ["--style", "plywood", "--preset", "tiny"], "Unknown style 'plywood'. Known styles: wood"),
    ("train_specialist.py", ["--style", "wood", "--preset", "tiny", "--steps", "0"],
     "argument --steps: must be a positive integer, got 0"),
    ("train_specialist.py", ["--style", "wood", "--lr", "nan"], "argument --lr: must be a finite number, got nan"),
    ("train_specialist.py", ["--style", "wood"], "pass --frames FOLDER"),
    ("collect_frames.py", ["--out", "{frames}"], "already holds training frames"),
    ("make_exemplars.py", ["--style", "wood", "--count", "-1"], "argument --count: must be a positive integer"),
])
def test_bad_input_is_one_line_with_the_fix_before_any_heavy_import(tmp_path, script, args, expected):
    write_frames(tmp_path / "frames")
    done = run_script(script, *[arg.format(frames=tmp_path / "frames") for arg in args], home=tmp_path / "home")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr[-2000:]
    assert done.stdout.strip().endswith("torch not imported")


def test_a_missing_frames_folder_and_the_tiny_preset_are_named(tmp_path):
    done = run_script("train_specialist.py", "--style", "wood", home=tmp_path / "home")
    assert "--preset tiny" in done.stderr and "collect_frames.py --out frames/" in done.stderr
    # The f-string of the library's own message: the folder itself, not a literal {folder}.
    with pytest.raises(FileNotFoundError) as error:
        TrainingFrames.from_folder(tmp_path / "empty")
    assert f"collect_frames.py --out {tmp_path / 'empty'}`" in str(error.value)


def test_an_occupied_output_is_refused_in_a_second_and_debug_shows_the_traceback(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "specialist_weights.safetensors").write_bytes(b"a trained specialist")
    done = run_script("train_specialist.py", "--style", "wood", "--preset", "tiny", "--output", str(output),
                      home=tmp_path / "home")
    assert done.returncode == 2 and done.stderr.startswith(f"error: {output} already holds a specialist")
    assert "--overwrite" in done.stderr and "--resume" in done.stderr
    assert done.stdout.strip().endswith("torch not imported")
    assert (output / "specialist_weights.safetensors").read_bytes() == b"a trained specialist"

    debug = run_script("train_specialist.py", "--style", "plywood", "--preset", "tiny", "--debug",
                       home=tmp_path / "home")
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


def test_ctrl_c_ends_with_one_line_saying_what_was_saved(capsys):
    def interrupted_main(argv: list[str]) -> None:
        cli.on_interrupt(lambda: "3 things are saved in RUN; run the same command again to continue")
        signal.raise_signal(signal.SIGINT)
        time.sleep(30)  # never reached: the signal interrupts here

    # Python's own Ctrl-C handler, also when the suite runs in the background (whose shell ignores SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(SystemExit) as ended:
            cli.run_main(interrupted_main, [])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert ended.value.code == 130
    assert capsys.readouterr().err == (
        "interrupted (Ctrl-C): 3 things are saved in RUN; run the same command again to continue\n")


@pytest.mark.slow
def test_sigterm_stops_training_with_one_line_that_says_how_to_resume(tmp_path):
    output = tmp_path / "run"
    env = {**os.environ, "SIM2REAL_EDIT_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO_ROOT),
           "OMP_NUM_THREADS": "1"}
    args = ["--style", "wood", "--preset", "tiny", "--output", str(output), "--steps", "500"]
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "scripts" / "train_specialist.py"), *args],
                               cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 400
        while not (output / "checkpoints" / "step-0000" / "state.json").exists():
            assert process.poll() is None and time.monotonic() < deadline, "training did not checkpoint a step"
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 143
    assert "Traceback" not in stderr
    last = stderr.replace("\r", "\n").strip().splitlines()[-1]
    saved = max(int(path.parent.name.split("-")[1]) for path in output.glob("checkpoints/step-*/state.json"))
    assert last.startswith(f"terminated (SIGTERM): optimizer steps 0-{saved} are saved in {output / 'checkpoints'}")
    assert last.endswith(f"python scripts/train_specialist.py {' '.join(args)} --resume")


def test_eval_without_checkpoints_points_at_the_tiny_preset_and_a_damaged_database_is_named(tmp_path, monkeypatch,
                                                                                            capsys):
    monkeypatch.setenv("SIM2REAL_EDIT_HOME", str(tmp_path / "home"))
    script = load_script("eval_policies")
    with pytest.raises(SystemExit) as ended:
        cli.run_main(script.main, [])
    error = capsys.readouterr().err
    assert ended.value.code == 2 and len(error.strip().splitlines()) == 1
    assert error.startswith("error: 4 RT-1 checkpoint folder(s) missing") and "--preset tiny" in error
    assert "no trained specialist for wood, gold, leather, stone, steel, white_marble, black_marble" in error

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "episodes.sqlite").write_bytes(b"not a database" * 200)
    with pytest.raises(SystemExit) as ended:
        cli.run_main(script.main, ["--report", str(run_dir)])
    error = capsys.readouterr().err
    assert ended.value.code == 2 and len(error.strip().splitlines()) == 1
    assert str(run_dir / "episodes.sqlite") in error and "is damaged" in error


# ------------------------------------------------------------------ refusals by design against real bugs

PROJECT_PACKAGES = ("sim2real_edit", "envs", "policies", "evaluation")


def project_error_classes() -> list[type[BaseException]]:
    """Every exception class the project defines (found in the source, so that a new one is covered too)."""
    import ast
    import importlib

    found = []
    for package in PROJECT_PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            module_name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
            tree = ast.parse(path.read_text())
            names = [node.name for node in tree.body if isinstance(node, ast.ClassDef)
                     and any(ast.unparse(base).endswith(("Error", "Exception", "Interrupt")) for base in node.bases)]
            if names:
                module = importlib.import_module(module_name)
                found += [getattr(module, name) for name in names]
    return found


def test_the_error_classes_are_found():
    names = {error.__name__ for error in project_error_classes()}
    assert {"RunFolderBusyError", "NotARunFolderError", "ConfigMismatchError", "LostDatabaseError",
            "OutputExistsError", "UnwritableOutputError", "NothingToResumeError", "DamagedWeightsError",
            "ImageFormatError", "RayWorkersLostError", "NoRenderingDeviceError"} <= names


def test_every_error_class_of_the_project_is_a_one_line_refusal_with_exit_2(capsys):
    checked = []
    for error_class in project_error_classes():
        if issubclass(error_class, KeyboardInterrupt):  # cli.Terminated: SIGTERM, exit 143 (tested above)
            continue

        def refusing_main(argv: list[str], error_class=error_class) -> None:
            raise error_class(f"{error_class.__name__} says what is wrong and what to do.")

        with pytest.raises(SystemExit) as ended:
            cli.run_main(refusing_main, [])
        error = capsys.readouterr().err
        assert ended.value.code == 2, (error_class, error)
        assert error == f"error: {error_class.__name__} says what is wrong and what to do.\n", error_class
        checked.append(error_class.__name__)
    assert len(checked) >= 10


def test_a_real_bug_says_so_once_with_one_full_stop(capsys):
    def buggy_main(argv: list[str]) -> None:
        raise RuntimeError("the env ended an episode on its own.")

    with pytest.raises(SystemExit) as ended:
        cli.run_main(buggy_main, [])
    error = capsys.readouterr().err
    assert ended.value.code == 1
    assert error == ("error: unexpected RuntimeError: the env ended an episode on its own. This looks like a bug: "
                     "rerun with --debug for the traceback and report it\n")


EVAL_ARGS = ["--preset", "tiny", "--policies", "scripted-expert", "--trials", "OpenTopDrawer/b1", "--domains",
             "unedited", "--max-episode-steps", "2"]


def refused_run_dir(kind: str, tmp_path: Path) -> tuple[Path, object]:
    """A --run-dir that eval_policies must refuse, and what keeps it so (a held lock)."""
    from evaluation import ResultStore, tiny_config
    from evaluation.config import graded_stand_ins
    from evaluation.run_folder import RunFolderLock

    run_dir = tmp_path / "run"
    if kind == "file":
        run_dir.write_text("not a folder")
        return run_dir, None
    run_dir.mkdir()
    if kind == "not a run folder":
        (run_dir / "notes.txt").write_text("mine")
        return run_dir, None
    if kind == "busy":
        return run_dir, RunFolderLock.acquire(run_dir)  # another open file description: refused like a process
    other = tiny_config(policies=graded_stand_ins(["scripted-random"]), trials=("OpenTopDrawer/b1",),
                        domains=("unedited",))
    ResultStore.create(run_dir, other)
    if kind == "lost database":
        (run_dir / "episodes.sqlite").write_bytes(b"")
    return run_dir, None


@pytest.mark.parametrize("kind, expected", [
    ("busy", "is in use by another evaluation run"),
    ("not a run folder", "is not a run folder"),
    ("file", "is a file, not a folder"),
    ("another config", "holds a run with another configuration"),
    ("lost database", "is empty (0 bytes)"),
])
def test_run_folder_refusals_are_one_line_with_exit_2(kind, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SIM2REAL_EDIT_HOME", str(tmp_path / "home"))
    run_dir, lock = refused_run_dir(kind, tmp_path)
    def contents():  # run.lock aside: the lock file stays (empty of any lock) wherever a run looked
        if run_dir.is_file():
            return run_dir.read_text()
        return {path.name: path.read_bytes() for path in run_dir.iterdir() if path.name != "run.lock"}

    before = contents()
    try:
        with pytest.raises(SystemExit) as ended:
            cli.run_main(load_script("eval_policies").main, [*EVAL_ARGS, "--run-dir", str(run_dir)])
    finally:
        if lock is not None:
            lock.release()
    error = capsys.readouterr().err
    lines = [line for line in error.splitlines() if line.startswith("error:")]
    assert ended.value.code == 2, error
    assert len(lines) == 1 and expected in lines[0] and "looks like a bug" not in lines[0], error
    assert contents() == before
