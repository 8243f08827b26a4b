"""Episodes that cannot differ (a deterministic policy in a deterministic domain, one trial, several seeds) are
detected and counted once; the report states each policy's independent episodes."""

from __future__ import annotations

import json

from evaluation.config import EDITED, UNEDITED, tiny_config
from evaluation.repeats import independent_episodes
from evaluation.report import write_report
from evaluation.results import EpisodeResult, ResultStore

TRIALS = ("OpenTopDrawer/a0", "CloseTopDrawer/a0")


def _episode(policy, domain, seed, trial, success, steps, qpos, style="", urdf="recolor_cabinet_visual_matching_1",
             config_hash="x"):
    task, pose = trial.split("/")
    return EpisodeResult(policy=policy, domain=domain, style=style, urdf_version=urdf, seed=seed, task=task, pose=pose,
                         drawer="top", action="open" if task.startswith("Open") else "close", success=success,
                         steps=steps, first_success_step=None, drawer_qpos=qpos, reset_seed=seed, wall_s=0.1,
                         config_hash=config_hash)


def test_repeats_across_seeds_count_once_only_in_deterministic_domains():
    repeated = [_episode("A", UNEDITED, seed, trial, True, 40, 0.21) for seed in range(3) for trial in TRIALS]
    assert independent_episodes(repeated) == 2  # 3 seeds x 2 trials, each trial one episode run three times
    # One seed that differs in any of outcome, steps or final opening is another episode.
    for changed in ({"success": False}, {"steps": 41}, {"qpos": 0.2100001}):
        values = {"success": True, "steps": 40, "qpos": 0.21, **changed}
        other = _episode("A", UNEDITED, 2, TRIALS[0], values["success"], values["steps"], values["qpos"])
        assert independent_episodes([*repeated[:4], other, repeated[5]]) == 3
    # In an edited domain the seed changes the frames: identical outcomes are not repeats.
    edited = [_episode("A", EDITED, seed, TRIALS[0], True, 40, 0.21, style="wood") for seed in range(3)]
    assert independent_episodes(edited) == 3
    # Other policies, styles and URDF versions are other episodes, whatever their outcome.
    assert independent_episodes([*repeated, *(_episode("B", UNEDITED, s, TRIALS[0], True, 40, 0.21) for s in range(3)),
                                 _episode("A", UNEDITED, 0, TRIALS[0], True, 40, 0.21, urdf="None")]) == 4
    assert independent_episodes(repeated, deterministic_domains=()) == 6


def test_the_report_states_independent_episodes_per_policy(tmp_path):
    config = tiny_config(trials=TRIALS, seeds=3, domains=(UNEDITED,), standin_camera=None)
    store = ResultStore.create(tmp_path, config)
    policies = [policy.name for policy in config.policies]
    for index, policy in enumerate(policies):
        for seed in range(3):
            for trial in TRIALS:
                # The first policy repeats one episode per trial at every seed; the others vary with the seed.
                qpos = 0.2 if index == 0 else 0.2 + 0.01 * seed
                store.add(_episode(policy, UNEDITED, seed, trial, index < 2, 30, qpos, config_hash=config.config_hash))
    report = write_report(tmp_path)
    rates = {r.policy: r.average for r in report.domain(UNEDITED).rates}
    assert (rates[policies[0]].episodes, rates[policies[0]].independent_episodes) == (6, 2)
    assert all(rates[name].independent_episodes == 6 for name in policies[1:])
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["domains"][0]["rates"][0]["average"]["independent_episodes"] == 2
    markdown = (tmp_path / "report.md").read_text()
    assert f"{policies[0]} 2 of 6; {policies[1]} 6 of 6" in markdown
    assert "(n=6, 2 independent, 2 trials)" in markdown
