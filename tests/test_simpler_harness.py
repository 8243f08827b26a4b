"""The evaluation harness end to end on the real SIMPLER (rasterised, a few steps): the run, its database and
its report. Skips where SimplerEnv and ManiSkill2_real2sim are not installed (run it in the simpler-cpu
environment: `. /opt/simpler/env.sh && python -m pytest -m simpler`)."""

from __future__ import annotations

import numpy as np
import pytest

import evaluation.runner
from evaluation import ExecutionOptions, run_evaluation, write_report
from evaluation.config import RT1, UNEDITED, PolicySpec, full_config
from evaluation.results import ResultStore
from evaluation.videos import read_video_index
from policies.base import ACTION_DIM, PolicyStep


class FixedMotionPolicy:
    """Stands in for an RT-1 checkpoint, which cannot be downloaded here: the same small motion every step."""

    def __init__(self, name: str) -> None:
        self.name = name

    def reset(self, instructions: list[str]) -> None:
        self.envs = len(instructions)

    def act(self, observations, instructions: list[str]) -> PolicyStep:
        actions = np.zeros((len(instructions), ACTION_DIM))
        actions[:, :3] = (0.02, 0.01, -0.01)
        return PolicyStep(actions=actions, terminate=np.zeros(len(instructions), dtype=bool))


@pytest.fixture
def simpler():
    pytest.importorskip("mani_skill2_real2sim.envs", reason="SIMPLER (ManiSkill2_real2sim) is not installed")
    pytest.importorskip("simpler_env", reason="SIMPLER (SimplerEnv) is not installed")


@pytest.mark.simpler
@pytest.mark.slow
def test_a_deterministic_policy_runs_each_unedited_trial_once_on_simpler(simpler, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluation.runner, "load_policy", lambda spec, config: FixedMotionPolicy(spec.name))
    config = full_config(policies=(PolicySpec("rt1-stand-in", RT1, checkpoint=str(tmp_path / "no-download")),),
                         trials=("OpenTopDrawer/a1", "CloseBottomDrawer/c2"), seeds=3, domains=(UNEDITED,),
                         max_episode_steps=3, env_kwargs={"shader_dir": "ibl"})
    summary = run_evaluation(config, tmp_path / "run",
                             ExecutionOptions(num_envs=2, vectorization_mode="sync", progress=False, videos=True))
    assert (summary.episodes_run, summary.episodes_copied) == (2, 4)  # seed 0 of each trial; seeds 1, 2 copied
    videos = read_video_index(tmp_path / "run")  # the episodes that ran have videos of SIMPLER's frames
    assert sorted(v.seed for v in videos) == [0, 0] and all(v.frames == 4 and v.width >= 640 for v in videos)
    episodes = ResultStore.open(tmp_path / "run").episodes()
    assert len(episodes) == config.expected_episodes() == 6
    assert sorted(e.seed for e in episodes if e.repeat_of_seed == 0) == [1, 1, 2, 2]
    assert all(e.steps == 3 for e in episodes)
    report = write_report(tmp_path / "run")
    assert report.domain(UNEDITED).rates[0].average.independent_episodes == 2
    every = run_evaluation(config, tmp_path / "every",
                           ExecutionOptions(num_envs=2, vectorization_mode="sync", progress=False,
                                            run_repeats_once=False))
    assert (every.episodes_run, every.episodes_copied) == (6, 0)

    def outcomes(run):
        return {e.key: (e.success, e.steps, e.drawer_qpos) for e in ResultStore.open(tmp_path / run).episodes()}

    assert outcomes("run") == outcomes("every")  # the copies are what running every seed gives


@pytest.mark.simpler
@pytest.mark.slow
def test_variant_aggregation_runs_and_reports_on_simpler(simpler, tmp_path, monkeypatch):
    """SIMPLER's second drawer setting through the harness: one trial per scene variant whose assets exist
    (rasterised, 2 steps), the report aggregating over variants."""
    from envs.protocol import VARIANT_AGGREGATION, VARIANT_AGGREGATION_URDF_VERSION
    from envs.simpler import missing_variant_assets
    from evaluation.config import select_trials, select_variants

    monkeypatch.setattr(evaluation.runner, "load_policy", lambda spec, config: FixedMotionPolicy(spec.name))
    missing = missing_variant_assets(select_variants(None))
    available = [v for v in select_variants(None) if v not in missing]
    assert {"base", "brighter", "darker", "station2", "station3"} <= set(available)
    trials = [next(key for key in select_trials(["OpenTopDrawer"], VARIANT_AGGREGATION, [variant])
                   if key.endswith("x0.75_y+0.00")) for variant in available]
    config = full_config(policies=(PolicySpec("rt1-stand-in", RT1, checkpoint=str(tmp_path / "no-download")),),
                         setting=VARIANT_AGGREGATION, trials=tuple(trials), seeds=1, domains=(UNEDITED,),
                         urdf_versions=(VARIANT_AGGREGATION_URDF_VERSION,), max_episode_steps=2,
                         env_kwargs={"shader_dir": "ibl"})
    summary = run_evaluation(config, tmp_path / "run", ExecutionOptions(num_envs=1, vectorization_mode="sync",
                                                                        progress=False))
    assert summary.episodes_run == len(available)
    report = write_report(tmp_path / "run")
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert "**variant aggregation**" in markdown and f"{len(available)} of 7" in markdown
    assert report.domain(UNEDITED).rates[0].open.rate == 0.0  # a fixed small motion never opens a drawer
