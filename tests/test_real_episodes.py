"""--real-episodes FILE.csv: its form and its pairing with a run are checked line by line, and the report gains a
`real_success` list (report.json) and section (report.md) that survive a rebuild from the run folder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from evaluation.config import UNEDITED, tiny_config
from evaluation.real_episodes import REAL_EPISODES_CSV, match_real_episodes, parse_real_episodes
from evaluation.report import build_report, write_report
from evaluation.results import EpisodeResult, ResultStore
from sim2real_edit.real_success import estimate_real_success

REPO = Path(__file__).resolve().parents[1]


def _csv(tmp_path, text: str, name: str = "real.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_rows_are_read_in_any_column_order_with_poses_or_trial_keys(tmp_path):
    path = _csv(tmp_path, "outcome,trial,task,policy,note\n1,a0,OpenTopDrawer,p,x\nfailure,CloseTopDrawer/b1,close_top,"
                          "p,\n\nTRUE,c2,OpenTopDrawerCustomInScene-v0,q,y\n")
    rows = parse_real_episodes(path)
    assert [(r.line, r.policy, r.trial, r.outcome) for r in rows] == [
        (2, "p", "OpenTopDrawer/a0", 1.0), (3, "p", "CloseTopDrawer/b1", 0.0), (5, "q", "OpenTopDrawer/c2", 1.0)]


@pytest.mark.parametrize(("text", "message"), [
    ("policy,task,outcome\np,OpenTopDrawer,1\n", "line 1: the header must name .* missing trial"),
    ("", "missing policy, task, trial, outcome in an empty file"),
    ("policy,task,trial,outcome\n", "holds no real episodes"),
    ("policy,task,trial,outcome\np,OpenTopDrawer,a0,1\np,OpenTopDrawer,a1,maybe\n",
     "line 3: outcome 'maybe' must be 1 \\(success\\) or 0 \\(failure\\)"),
    ("policy,task,trial,outcome\np,OpenDrawer,a0,1\n", "line 2: unknown drawer task 'OpenDrawer'"),
    ("policy,task,trial,outcome\np,OpenTopDrawer,z9,1\n", "line 2: trial 'z9'.*write the start pose"),
    ("policy,task,trial,outcome\np,OpenTopDrawer,CloseTopDrawer/a0,1\n", "line 2: .*of task CloseTopDrawer"),
    ("policy,task,trial,outcome\np,OpenTopDrawer,a0\n", "line 2: 3 field\\(s\\) where the header has 4"),
])
def test_a_malformed_csv_names_the_line_and_the_fix(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        parse_real_episodes(_csv(tmp_path, text))


def test_rows_are_matched_to_the_runs_policies_and_trials(tmp_path):
    config = tiny_config(trials=("OpenTopDrawer/a0", "CloseTopDrawer/a0"), domains=(UNEDITED,))
    expert = config.policies[0]
    rows = parse_real_episodes(_csv(tmp_path, f"policy,task,trial,outcome\n{expert.name},OpenTopDrawer,a0,1\n"
                                              f"{expert.real_world_name},OpenTopDrawer,a0,0\n"))
    assert match_real_episodes(rows, config) == {expert.name: {"OpenTopDrawer/a0": [1.0, 0.0]}}
    unknown = parse_real_episodes(_csv(tmp_path, "policy,task,trial,outcome\nnobody,OpenTopDrawer,a0,1\n"))
    with pytest.raises(ValueError, match="line 2: policy 'nobody' is not a policy of this run; use one of"):
        match_real_episodes(unknown, config)
    elsewhere = parse_real_episodes(_csv(tmp_path, f"policy,task,trial,outcome\n{expert.name},OpenTopDrawer,c2,1\n"))
    with pytest.raises(ValueError, match="line 2: trial OpenTopDrawer/c2 is not one of this run's 2 trials"):
        match_real_episodes(elsewhere, config)


def _stored_run(run_dir: Path, rng: np.random.Generator):
    """The four graded stand-ins on all 54 trials x 2 seeds, episodes written directly: each trial has an ease;
    sim succeeds where ease > policy threshold (both seeds), real too but with a few flips."""
    config = tiny_config(trials=tuple(f"{t}/{p}" for t in ("OpenTopDrawer", "OpenMiddleDrawer", "OpenBottomDrawer",
                                                            "CloseTopDrawer", "CloseMiddleDrawer", "CloseBottomDrawer")
                                      for p in ("a0", "a1", "a2", "b0", "b1", "b2", "c0", "c1", "c2")),
                         seeds=2, domains=(UNEDITED,), standin_camera=None)
    store = ResultStore.create(run_dir, config)
    ease = rng.random(len(config.trials))
    thresholds = [0.2, 0.4, 0.6, 0.95]
    sim, real_lines = {}, ["policy,task,trial,outcome"]
    for policy, threshold in zip(config.policies, thresholds):
        sim[policy.name] = {}
        for index, trial in enumerate(config.trials):
            task, pose = trial.split("/")
            success = bool(ease[index] > threshold)
            sim[policy.name][trial] = [success, success]
            for seed in range(2):
                store.add(EpisodeResult(policy.name, UNEDITED, "", config.urdf_versions[0], seed, task, pose, "top",
                                        "open" if task.startswith("Open") else "close", success, 10, None,
                                        0.1 * seed, 0, 0.1, config.config_hash))
            if index % 2 == 0:  # 27 of the 54 trials also ran in the real world
                flipped = success if rng.random() > 0.1 else not success
                real_lines.append(f"{policy.name},{task},{pose},{int(flipped)}")
    return config, sim, "\n".join(real_lines) + "\n"


def test_the_report_estimates_real_success_and_keeps_the_csv_in_the_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    config, sim, csv_text = _stored_run(run_dir, np.random.default_rng(0))
    source = _csv(tmp_path, csv_text)
    report = write_report(run_dir, real_episodes=source)
    assert (run_dir / REAL_EPISODES_CSV).read_text() == csv_text
    saved = json.loads((run_dir / "report.json").read_text())
    entries = saved["real_success"]
    assert [(e["domain"], e["policy"]) for e in entries] == [(UNEDITED, p.name) for p in config.policies]
    # The same numbers as the statistics module on the same pairs.
    real = match_real_episodes(parse_real_episodes(source), config)
    direct = estimate_real_success(sim, real)
    for entry in entries:
        expected = direct[entry["policy"]]
        assert entry["estimate"] == pytest.approx(expected.estimate)
        assert entry["interval"] == pytest.approx(list(expected.interval))
        assert entry["real_only_interval"] == pytest.approx(list(expected.real_only_interval))
        assert (entry["sim_trials"], entry["real_trials"], entry["sim_episodes"]) == (54, 27, 108)
        assert entry["trials_saved"] == expected.trials_saved
    # A sim this close to the real world saves real trials for the policies whose outcomes vary.
    assert any(e["trials_saved"] and e["trials_saved"] > 0 for e in entries)
    markdown = (run_dir / "report.md").read_text()
    assert "## Real success from sim plus a few real trials (prediction-powered)" in markdown
    first = report.real_success[0].estimate
    assert f"{first.estimate:.3f} [{first.interval[0]:.3f}, {first.interval[1]:.3f}]" in markdown
    # Rebuilt from the folder alone, without the option: the same estimates.
    again = build_report(run_dir)
    assert [e.estimate for e in again.real_success] == [e.estimate for e in report.real_success]


def test_the_script_takes_real_episodes_and_refuses_a_bad_line_before_changing_anything(tmp_path):
    spec = importlib.util.spec_from_file_location("eval_policies", REPO / "scripts" / "eval_policies.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    run_dir = tmp_path / "run"
    config, _, csv_text = _stored_run(run_dir, np.random.default_rng(1))
    bad = _csv(tmp_path, csv_text + f"{config.policies[0].name},OpenTopDrawer,a0,2\n", name="bad.csv")
    with pytest.raises(ValueError, match="bad.csv line 110: outcome '2'"):
        script.main(["--report", str(run_dir), "--real-episodes", str(bad)])
    assert not (run_dir / REAL_EPISODES_CSV).exists()
    script.main(["--report", str(run_dir), "--real-episodes", str(_csv(tmp_path, csv_text)), "--real-rates-exact"])
    saved = json.loads((run_dir / "report.json").read_text())
    assert len(saved["real_success"]) == 4 and saved["bootstrap"]["real_rates"] == "exact"
