"""The evaluation run on a local Ray cluster: a killed driver and a killed worker lose and repeat nothing,
and the database ends up equal to a single-process run's; without --ray, Ray is never imported."""

from __future__ import annotations

import importlib.util
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from envs.protocol import URDF_VERSIONS
from evaluation import (
    ExecutionOptions,
    ResultStore,
    graded_stand_ins,
    run_evaluation,
    tiny_config,
)
from evaluation.config import select_trials
from evaluation.distributed import RayEvaluation, RayOptions, plan_units, worker_layout
from evaluation.results import DATABASE_NAME

pytestmark = pytest.mark.usefixtures("tiny_base")  # the tiny preset's base: the session's small build

REPO = Path(__file__).resolve().parents[1]
POLICIES = ["scripted-expert", "scripted-random"]
TRIALS = ["OpenTopDrawer/a0", "OpenTopDrawer/b1", "OpenMiddleDrawer/c0", "OpenBottomDrawer/b1",
          "CloseTopDrawer/a1", "CloseTopDrawer/c0", "CloseMiddleDrawer/c2", "CloseBottomDrawer/a1"]
MAX_STEPS = 24
# The script's command for the same config (the tiny preset's camera and edit settings).
COMMAND = ["--preset", "tiny", "--policies", *POLICIES, "--trials", *TRIALS, "--domains", "unedited", "edited",
           "--max-episode-steps", str(MAX_STEPS)]
WORKER_OPTIONS = ExecutionOptions(num_envs=4, vectorization_mode="sync", torch_threads=1, progress=False)


def small_config():
    """2 policies x 8 trials x 1 seed, unedited and edited (wood): 32 episodes, 8 units of 4 on Ray."""
    return tiny_config(policies=graded_stand_ins(POLICIES), trials=select_trials(TRIALS),
                       domains=("unedited", "edited"), max_episode_steps=MAX_STEPS)


def outcomes(run_dir: Path) -> dict[tuple, tuple]:
    """(success, steps, drawer_qpos, reset seed) of every stored episode, by key."""
    return {e.key: (e.success, e.steps, e.drawer_qpos, e.reset_seed) for e in ResultStore.open(run_dir).episodes()}


class SimulatedDriverKill(Exception):
    pass


@pytest.fixture(scope="module")
def isolated_home(tmp_path_factory, small_tiny_base_folder):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIM2REAL_EDIT_HOME", str(tmp_path_factory.getbasetemp() / "home"))
        # module-scoped fixtures (Ray workers too) need the session base before any function fixture runs
        patch.setenv("SIM2REAL_EDIT_TINY_BASE", str(small_tiny_base_folder))
        yield


@pytest.fixture(scope="module")
def ray_cluster(isolated_home, request):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    request.addfinalizer(ray.shutdown)
    return ray


@pytest.fixture(scope="module")
def single_process_run(isolated_home, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("single")
    run_evaluation(small_config(), run_dir, replace(WORKER_OPTIONS, num_envs=8))
    return run_dir


@pytest.mark.slow
def test_killed_driver_and_killed_worker_lose_and_repeat_nothing(ray_cluster, single_process_run, tmp_path,
                                                                   capsys):
    ray = ray_cluster
    reference = outcomes(single_process_run)
    assert len(reference) == 32 and 0 < sum(success for success, *_ in reference.values()) < 32

    # The driver dies after its first unit: what it stored stays, its worker goes with it.
    interrupted = RayEvaluation(small_config(), tmp_path, WORKER_OPTIONS, RayOptions(num_workers=1))
    first_run: list[tuple] = []

    def kill_driver_after_a_unit(episode):
        first_run.append(episode.key)
        if len(first_run) == 4:
            raise SimulatedDriverKill

    with pytest.raises(SimulatedDriverKill):
        interrupted.run(on_episode=kill_driver_after_a_unit)
    assert interrupted.workers == []
    assert set(outcomes(tmp_path)) == set(first_run)

    # The same run again, on two workers; as the first result comes in, the busiest worker is killed.
    resumed = RayEvaluation(small_config(), tmp_path, WORKER_OPTIONS, RayOptions(num_workers=2))
    second_run: list[tuple] = []

    def kill_a_worker_once(episode):
        if not second_run:
            busiest = max(resumed.workers, key=lambda worker: worker.units_in_flight)
            assert busiest.units_in_flight == 2
            ray.kill(busiest.handle)
        second_run.append(episode.key)

    summary = resumed.run(on_episode=kill_a_worker_once)
    assert (summary.episodes_already_done, summary.episodes_run, summary.workers) == (4, 28, 2)
    assert summary.workers_replaced == 1 and summary.units_requeued >= 1  # the dead worker's units ran elsewhere
    assert len(second_run) == 28 and not set(second_run) & set(first_run)  # nothing repeated
    # Nothing lost, nothing stored twice, and every episode equals the single-process run's.
    assert outcomes(tmp_path) == reference
    with sqlite3.connect(tmp_path / DATABASE_NAME) as connection:
        keys = connection.execute("SELECT policy, domain, style, seed, task, pose FROM episodes").fetchall()
    assert len(keys) == len(set(keys)) == 32

    # The script's --ray run of the same config finds everything stored and starts no worker.
    script = load_script()
    script.main([*COMMAND, "--run-dir", str(tmp_path), "--ray", "--ray-workers", "2"])
    assert "ran 0 episodes (32 were already done)" in capsys.readouterr().out
    assert outcomes(tmp_path) == reference


def load_script():
    spec = importlib.util.spec_from_file_location("eval_policies", REPO / "scripts" / "eval_policies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_units_are_the_single_machine_batches():
    config = replace(small_config(), urdf_versions=URDF_VERSIONS[:2])
    done = {(POLICIES[0], "unedited", "", URDF_VERSIONS[0], 0, "OpenTopDrawer", "a0")}
    units = plan_units(config, done, num_envs=3)
    keys = [episode.key for unit in units for episode in unit.episodes]
    assert config.expected_episodes() == 64
    assert len(keys) == len(set(keys)) == config.expected_episodes() - 1 and not set(keys) & done
    assert all(1 <= len(unit.episodes) <= 3 for unit in units)
    assert all({(e.domain, e.style, e.urdf_version, e.policy.name) for e in unit.episodes}
               == {(unit.domain, unit.style, unit.urdf_version, unit.policy_name)} for unit in units)
    assert [unit.index for unit in units] == list(range(len(units)))
    assert [(u.domain, u.urdf_version, len(u.episodes)) for u in units[:3]] == [
        ("unedited", URDF_VERSIONS[0], 3), ("unedited", URDF_VERSIONS[0], 3), ("unedited", URDF_VERSIONS[0], 1)]
    assert {u.urdf_version for u in units} == set(URDF_VERSIONS[:2])


def testworker_layout_follows_the_cluster_and_refuses_what_cannot_be_scheduled():
    assert worker_layout({"CPU": 16.0, "GPU": 4.0}, RayOptions(), units=100) == (4, 1.0)
    assert worker_layout({"CPU": 16.0, "GPU": 4.0}, RayOptions(gpus_per_worker=0.5), units=100) == (8, 0.5)
    assert worker_layout({"CPU": 2.0}, RayOptions(), units=100) == (2, 0.0)
    assert worker_layout({"CPU": 2.0}, RayOptions(), units=1) == (1, 0.0)
    with pytest.raises(ValueError, match="fewer --ray-workers"):
        worker_layout({"CPU": 16.0, "GPU": 2.0}, RayOptions(num_workers=3), units=100)


def test_without_ray_flag_ray_is_never_imported(isolated_home, tmp_path):
    command = ["--preset", "tiny", "--policies", "scripted-expert", "--trials", "OpenTopDrawer/b1", "--domains",
               "unedited", "--max-episode-steps", "2", "--run-dir", str(tmp_path / "run")]
    program = (
        "import runpy, sys\nimport torch\ntorch.set_num_threads(1)\n"
        f"sys.argv = ['eval_policies.py', *{command!r}]\n"
        f"runpy.run_path({str(REPO / 'scripts' / 'eval_policies.py')!r}, run_name='__main__')\n"
        "print('RAY IMPORTED' if 'ray' in sys.modules else 'RAY NOT IMPORTED')\n"
    )
    done = subprocess.run([sys.executable, "-c", program], check=False, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ran 1 episodes" in done.stdout
    assert done.stdout.strip().endswith("RAY NOT IMPORTED")
