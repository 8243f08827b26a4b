"""One writer per run folder: the lock (two processes started together, a killed holder), refusal of folders
that are not run folders, clean-up of a run that failed before its first episode, and rows of other configs."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from evaluation import (
    ConfigMismatchError,
    ExecutionOptions,
    LostDatabaseError,
    ResultStore,
    build_report,
    graded_stand_ins,
    run_evaluation,
    tiny_config,
    write_report,
)
from evaluation.results import DATABASE_NAME
from evaluation.run_folder import (
    HOLD_ENV_VAR,
    NotARunFolderError,
    RunFolderBusyError,
    RunFolderLock,
)

pytestmark = pytest.mark.usefixtures("tiny_base")  # the tiny preset's base: the session's small build

REPO = Path(__file__).resolve().parents[1]
SYNC = ExecutionOptions(num_envs=4, vectorization_mode="sync", progress=False)
TRIALS = ["OpenTopDrawer/b1", "CloseMiddleDrawer/a1", "OpenBottomDrawer/c2", "CloseTopDrawer/c0"]


@pytest.fixture(scope="module", autouse=True)
def isolated_home(tmp_path_factory, small_tiny_base_folder):
    home = tmp_path_factory.getbasetemp() / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIM2REAL_EDIT_HOME", str(home))
        # module-scoped fixtures (Ray workers too) need the session base before any function fixture runs
        patch.setenv("SIM2REAL_EDIT_TINY_BASE", str(small_tiny_base_folder))
        yield home


def small_config(**overrides):
    """Two policies x 2 trials x 1 seed on the state-only stand-in: 4 quick episodes."""
    values = {"policies": graded_stand_ins(["scripted-expert", "scripted-random"]), "trials": tuple(TRIALS[:2]),
              "seeds": 1, "domains": ("unedited",), "max_episode_steps": 20, "standin_camera": None,
              "env_kwargs": {"obs_mode": "state_dict"}}
    return tiny_config(**{**values, **overrides})


def start_python(program: str, home: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "SIM2REAL_EDIT_HOME": str(home), "OMP_NUM_THREADS": "1",
                   **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-c", program], cwd=REPO, env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_line(process: subprocess.Popen, expected: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.strip() == expected:
            return
        if not line and process.poll() is not None:
            raise AssertionError(f"the process exited ({process.returncode}): {process.stderr.read()[-3000:]}")
    raise AssertionError(f"no {expected!r} line from the process within {timeout} s")


def script_waiting_at_a_barrier(arguments: list[str], barrier: Path) -> str:
    """A program that imports what the script needs, says "ready", waits for ``barrier`` to exist and then runs
    scripts/eval_policies.py: two of them released together reach the run folder within milliseconds."""
    return (
        "import pathlib, runpy, sys, time\n"
        "import torch\ntorch.set_num_threads(1)\n"
        "import envs, policies.scripted, evaluation.runner\n"
        "print('ready', flush=True)\n"
        f"barrier = pathlib.Path({str(barrier)!r})\n"
        "while not barrier.exists():\n    time.sleep(0.002)\n"
        f"sys.argv = ['eval_policies.py', *{arguments!r}]\n"
        f"runpy.run_path({str(REPO / 'scripts' / 'eval_policies.py')!r}, run_name='__main__')\n"
    )


def wait_until(condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.01)


@pytest.mark.parametrize("options", ["different options", "same options"])
def test_two_runs_started_together_on_one_folder_leave_one_config_and_run_each_episode_once(
        options, tmp_path, isolated_home):
    run_dir, barrier, release = tmp_path / "run", tmp_path / "go", tmp_path / "release"
    command = ["--preset", "tiny", "--policies", "scripted-expert", "scripted-random", "--domains", "unedited",
               "--trials", *TRIALS, "--max-episode-steps", "24", "--run-dir", str(run_dir)]
    other = ["--seeds", "2"] if options == "different options" else []
    # Whichever run claims the folder first holds it (lock taken, config stored) until the test releases it,
    # so the other one meets a held folder however fast either of them is.
    hold = {HOLD_ENV_VAR: str(release)}
    processes = [start_python(script_waiting_at_a_barrier(command, barrier), isolated_home, hold),
                 start_python(script_waiting_at_a_barrier(command + other, barrier), isolated_home, hold)]
    try:
        for process in processes:
            wait_for_line(process, "ready")
        barrier.touch()
        wait_until(lambda: Path(f"{release}.held").exists(), "a run claiming the folder")
        wait_until(lambda: any(process.poll() is not None for process in processes), "the other run ending")
        (loser,) = [index for index, process in enumerate(processes) if process.poll() is not None]
        winner = 1 - loser
        assert processes[winner].poll() is None  # still holding the folder at the test's barrier
        loser_output = processes[loser].communicate(timeout=60)
        release.touch()
        winner_output = processes[winner].communicate(timeout=600)
    finally:
        release.touch()
        for process in processes:
            process.kill()
    assert int(Path(f"{release}.held").read_text()) == processes[winner].pid
    assert processes[winner].returncode == 0, winner_output[1][-2000:]
    # The second run was refused at once with one line (a refusal by design: exit 2), told who holds the
    # folder, and stored nothing.
    loser_error = loser_output[1]
    assert processes[loser].returncode == 2, loser_error[-2000:]
    (line,) = [line for line in loser_error.splitlines() if line.startswith("error:")]
    assert "is in use by another evaluation run" in line and "looks like a bug" not in line
    assert f"pid {processes[winner].pid} " in line
    store = ResultStore.open(run_dir)
    assert store.config.seeds == (2 if options == "different options" and winner == 1 else 1)
    assert store.other_config_rows() == {}
    assert len(store.episodes()) == store.config.expected_episodes()
    assert f"ran {store.config.expected_episodes()} episodes (0 were already done)" in winner_output[0]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["run"]["config_hash"] == store.config.config_hash
    assert report["run"]["episodes_stored"] == store.config.expected_episodes()


def test_a_killed_holder_releases_the_lock(tmp_path, isolated_home):
    holder = start_python(
        "import sys, time\nfrom evaluation.run_folder import RunFolderLock\n"
        f"lock = RunFolderLock.acquire({str(tmp_path)!r})\nprint('held', flush=True)\ntime.sleep(600)\n",
        isolated_home)
    try:
        wait_for_line(holder, "held")
        with pytest.raises(RunFolderBusyError, match=f"pid {holder.pid} on .*another --run-dir"):
            RunFolderLock.acquire(tmp_path)
        with pytest.raises(RunFolderBusyError):
            run_evaluation(small_config(), tmp_path, SYNC)
        assert not (tmp_path / DATABASE_NAME).exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    assert holder.returncode == -signal.SIGKILL
    lock = RunFolderLock.acquire(tmp_path)  # the kernel freed it with the process
    lock.release()
    assert run_evaluation(small_config(), tmp_path, SYNC).episodes_run == 4


def load_script():
    spec = importlib.util.spec_from_file_location("eval_policies", REPO / "scripts" / "eval_policies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_folder_that_is_not_a_run_folder_is_refused_and_left_as_it_was(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.json").write_text('{"mine": true}\n')
    (folder / "notes.txt").write_text("my notes\n")
    with pytest.raises(NotARunFolderError, match=r"not a run folder \(it holds config.json, notes.txt"):
        run_evaluation(small_config(), folder, SYNC)
    with pytest.raises(NotARunFolderError, match="is not a run folder"):  # cli.run_main prints it as one line
        load_script().main(["--preset", "tiny", "--policies", "scripted-expert", "--trials", TRIALS[0],
                            "--domains", "unedited", "--max-episode-steps", "2", "--run-dir", str(folder)])
    assert sorted(path.name for path in folder.iterdir()) == ["config.json", "notes.txt"]
    assert (folder / "config.json").read_text() == '{"mine": true}\n'
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(NotARunFolderError, match="is a file"):
        run_evaluation(small_config(), tmp_path / "a-file", SYNC)


class SimulatedFailure(Exception):
    pass


def test_a_run_that_fails_before_its_first_episode_leaves_no_run_folder(tmp_path, monkeypatch, caplog):
    def failing_load(*args):
        raise SimulatedFailure("policies failed to load")

    with monkeypatch.context() as patch:
        patch.setattr("evaluation.runner.load_process_policies", failing_load)
        with pytest.raises(SimulatedFailure):
            run_evaluation(small_config(), tmp_path / "new", SYNC)
        assert not (tmp_path / "new").exists()
        (tmp_path / "empty").mkdir()
        with pytest.raises(SimulatedFailure):
            run_evaluation(small_config(), tmp_path / "empty", SYNC)
        assert list((tmp_path / "empty").iterdir()) == []
    # The cleaned folder takes another config (nothing of the failed run is left to refuse it).
    assert run_evaluation(small_config(seeds=2), tmp_path / "empty", SYNC).episodes_run == 8

    stored = []

    def fail_after_two(episode):
        stored.append(episode)
        if len(stored) == 2:
            raise SimulatedFailure("crashed mid-run")

    with caplog.at_level(logging.ERROR), pytest.raises(SimulatedFailure):
        run_evaluation(small_config(), tmp_path / "partial", SYNC, on_episode=fail_after_two)
    assert "2 of 4 episodes stored" in caplog.text and "run the same command again" in caplog.text
    assert run_evaluation(small_config(), tmp_path / "partial", SYNC).episodes_run == 2


def test_rows_of_another_config_are_detected_left_out_and_refused(tmp_path):
    config = small_config()
    run_evaluation(config, tmp_path, SYNC)
    store = ResultStore.open(tmp_path)
    (episode,) = [e for e in store.episodes() if e.policy == "scripted-expert" and e.task == "OpenTopDrawer"]
    with sqlite3.connect(tmp_path / DATABASE_NAME) as connection:  # what an unlocked concurrent run left behind
        columns = ("policy, domain, style, urdf_version, seed, task, pose, drawer, action, success, steps, "
                   "first_success_step, drawer_qpos, reset_seed, wall_s, config_hash")
        connection.execute(
            f"INSERT INTO episodes ({columns}) SELECT policy, domain, style, urdf_version, 7, task, pose, drawer, "
            "action, 0, steps, first_success_step, drawer_qpos, reset_seed, wall_s, 'f00f00f00f00f00f' "
            "FROM episodes WHERE policy = ? AND task = ?", (episode.policy, episode.task))
    assert store.other_config_rows() == {"f00f00f00f00f00f": 1}
    assert len(store.episodes()) == 4 and all(e.config_hash == config.config_hash for e in store.episodes())
    report = build_report(tmp_path)
    assert report.episodes_stored == 4 and report.other_config_rows == {"f00f00f00f00f00f": 1}
    assert report.domain("unedited").rates[0].open.episodes == 1  # the foreign row is not counted
    write_report(tmp_path)
    assert "the database also holds 1 episode(s) of other configurations" in (tmp_path / "report.md").read_text()
    with pytest.raises(ConfigMismatchError, match=r"1 episode\(s\) of other configs \(f00f00f00f00f00f: 1\)"):
        run_evaluation(config, tmp_path, SYNC)
    # Rows are checked against the stored config as they go in.
    with pytest.raises(ConfigMismatchError, match="cannot go into"):
        store.add(replace(episode, seed=3, config_hash="0123456789abcdef"))
    with pytest.raises(ConfigMismatchError, match="already holds episode .* of another config"):
        store.add(replace(episode, seed=7))
    assert store.add(episode) is False  # already stored, same config: nothing changes


def test_a_database_of_the_older_harness_is_refused(tmp_path):
    config = small_config()
    with sqlite3.connect(tmp_path / DATABASE_NAME) as connection:  # schema 1: no version, episodes ended early
        connection.execute("CREATE TABLE run (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        connection.execute("CREATE TABLE episodes (policy TEXT, config_hash TEXT)")
        connection.execute("INSERT INTO run VALUES ('config', ?)", (json.dumps(config.to_dict()),))
    for action in (lambda: ResultStore.open(tmp_path), lambda: run_evaluation(config, tmp_path, SYNC)):
        with pytest.raises(ConfigMismatchError, match="older version of the harness .* first success"):
            action()


@pytest.mark.parametrize("database", ["empty", "missing"])
def test_stored_results_without_their_episode_database_are_refused_not_run_again(database, tmp_path):
    run_dir = tmp_path / "run"
    config = small_config()
    run_evaluation(config, run_dir, SYNC)
    write_report(run_dir)
    if database == "empty":  # e.g. a full disk, or a copy that left the file empty
        (run_dir / DATABASE_NAME).write_bytes(b"")
    else:
        (run_dir / DATABASE_NAME).unlink()
    before = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    state = "is empty (0 bytes)" if database == "empty" else "is missing"
    for action in (lambda: run_evaluation(config, run_dir, SYNC), lambda: ResultStore.open(run_dir),
                   lambda: build_report(run_dir)):
        with pytest.raises(LostDatabaseError) as error:
            action()
        message = str(error.value)
        assert f"{run_dir / DATABASE_NAME} {state}" in message and "config.json, report.json, report.md" in message
        assert f"mv {run_dir} {run_dir}.lost" in message and "run the same command again" in message
    assert {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()} == before
