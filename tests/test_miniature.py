"""The paper in miniature end to end at the tests' size: `eval_policies.py --preset tiny --small` builds (or finds)
every piece, evaluates the CNN policy family in every domain on the real world's trials and seeds, and writes a
report with the paired analysis (ceiling, floor, MAE, differences), the specialist's scorecard on both split parts
and the side-by-side frames; a second run repeats nothing."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from evaluation.report import MINIATURE_JSON
from miniature.experiment import SIDE_BY_SIDE, MiniatureSettings

REPO = Path(__file__).resolve().parents[1]
SMALL = MiniatureSettings.small()


def load_script():
    spec = importlib.util.spec_from_file_location("eval_policies", REPO / "scripts" / "eval_policies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def miniature_run(tmp_path_factory, small_tiny_base_folder, small_tiny_policies):
    """One small miniature run, in a fresh data root that starts with the session's small base and policies."""
    root = tmp_path_factory.mktemp("miniature")
    home = root / "home"
    shutil.copytree(small_tiny_policies.folder, home / "tiny" / "policies")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIM2REAL_EDIT_HOME", str(home))
        patch.setenv("SIM2REAL_EDIT_TINY_BASE", str(small_tiny_base_folder))
        command = ["--preset", "tiny", "--small", "--run-dir", str(root / "run")]
        script = load_script()
        script.main(command)
        second = load_script()
        yield {"run": root / "run", "home": home, "rerun": lambda: second.main(command)}


def test_the_report_keeps_its_schema_and_measures_every_domain_against_its_real_twin(miniature_run):
    report = json.loads((miniature_run["run"] / "report.json").read_text())
    names = [domain["name"] for domain in report["domains"]]
    style = SMALL.style
    assert names == ["unedited", "gain-oracle", "ceiling", "floor", "real", f"edited/{style}",
                     f"edited+composited/{style}", f"edited+crop/{style}", f"colour-transfer/{style}"]
    policies = len(report["policies"])
    assert policies >= 4 and {policy["kind"] for policy in report["policies"]} == {"cnn"}
    for domain in report["domains"]:
        assert domain["episodes"] == policies * len(SMALL.trials) * SMALL.seeds
        if domain["domain"] == "real":
            assert domain["agreement"]["average"] is None  # the reference
            continue
        for column in ("open", "close", "average"):
            agreement = domain["agreement"][column]
            assert set(agreement) >= {"mmrv", "pearson_r", "mae", "mae_interval", "episode_agreement"}
            assert agreement["reference"] == "real"
            low, high = agreement["mae_interval"]
            assert 0 <= low <= agreement["mae"] <= high <= 1
    differences = report["differences"]
    assert {d["metric"] for d in differences} == {"mae", "mmrv", "pearson_r"}
    assert {d["domain"] for d in differences} == set(names) - {"unedited", "real"}
    assert all(d["versus"] == "unedited" for d in differences)
    markdown = (miniature_run["run"] / "report.md").read_text()
    assert "## The miniature" in markdown and "not SIMPLER" in markdown
    assert "Paired with the real world" in markdown and "| ceiling |" in markdown and "| floor |" in markdown
    claim = {link["name"].split(" ")[1]: link for link in report["claim"]}
    assert {"gap", "crop-edited", "learned", "trained"} <= set(claim)
    assert all(claim[name]["holds"] in (True, False) for name in ("gap", "crop-edited", "learned", "trained"))
    assert "## The claim, link by link" in markdown


def test_the_report_shows_sim_edited_and_real_frames_side_by_side(miniature_run):
    summary = json.loads((miniature_run["run"] / MINIATURE_JSON).read_text())
    figure = miniature_run["run"] / summary["figure"]
    assert figure.name == SIDE_BY_SIDE
    with Image.open(figure) as image:
        assert image.format == "PNG" and image.height > image.width / 2  # four rows of three frames
    assert f"]({summary['figure']})" in (miniature_run["run"] / "report.md").read_text()
    cards = [(card["split"], card["method"]) for card in summary["scorecard"]]
    # the small build trains no control and one training seed; both split parts are scored
    assert cards == [(part, method) for part in ("validation", "test")
                     for method in ("identity", "untrained", "trained (seed 0)")]
    assert len(summary["real_world"]) >= 4 and all(name.startswith("cnn-bc-") for name in summary["real_world"])
    assert summary["policy_selection"]["selected"] == list(summary["real_world"])
    assert all(0 <= rates["average"] <= 1 for rates in summary["real_world"].values())


def test_the_first_run_says_where_its_time_went(miniature_run):
    first = json.loads((miniature_run["run"] / "timings.jsonl").read_text().splitlines()[0])["seconds"]
    style = SMALL.style
    domains = ["unedited", "gain-oracle", "ceiling", "floor", "real", f"colour-transfer/{style}",
               f"edited+crop/{style}", f"edited+composited/{style}", f"edited/{style}"]
    assert list(first) == ["build policies", "build base", "build specialist", "build scorecard",
                           *[f"episodes {domain}" for domain in domains], "report"]  # in run order
    assert all(seconds >= 0 for seconds in first.values())
    assert first[f"episodes edited+crop/{style}"] > first["episodes unedited"]  # edits cost more than none


def test_the_run_keeps_a_sample_of_real_episodes_for_the_real_success_estimates(miniature_run):
    from evaluation.results import ResultStore
    from miniature.experiment import real_trial_sample

    config = ResultStore.open(miniature_run["run"]).config
    lines = (miniature_run["run"] / "real_episodes.csv").read_text().splitlines()
    assert lines[0] == "policy,task,trial,outcome"
    chosen = real_trial_sample(config.trial_list())
    assert len(lines) - 1 == len(chosen) * len(config.policies) * config.seeds
    assert {tuple(line.split(",")[1:3]) for line in lines[1:]} == {(t.task.name, t.pose) for t in chosen}
    real = {(e.policy, e.task, e.pose): int(e.success) for e in ResultStore.open(miniature_run["run"]).episodes()
            if e.domain == "real"}
    assert all(real[tuple(line.split(",")[:3])] == int(line.split(",")[3]) for line in lines[1:])


def test_a_rerun_finds_every_piece_and_every_episode(miniature_run, capsys):
    specialist = miniature_run["home"] / "tiny" / "specialists" / SMALL.style
    weights = specialist / "specialist_weights.safetensors"
    before = weights.stat().st_mtime_ns
    capsys.readouterr()
    miniature_run["rerun"]()
    printed = capsys.readouterr().out
    assert "ran 0 episodes" in printed
    assert weights.stat().st_mtime_ns == before
    assert "trained" in printed and "MAE" in printed
    assert "where the time went" in printed


def test_domains_that_need_no_specialist_build_no_base_and_no_specialist(tmp_path, small_tiny_policies, monkeypatch):
    from dataclasses import replace

    from evaluation.config import CEILING, COLOUR_TRANSFER, REAL, UNEDITED
    from miniature.experiment import build_miniature

    home = tmp_path / "home"
    shutil.copytree(small_tiny_policies.folder, home / "tiny" / "policies")
    monkeypatch.setenv("SIM2REAL_EDIT_HOME", str(home))
    monkeypatch.delenv("SIM2REAL_EDIT_TINY_BASE", raising=False)
    settings = replace(SMALL, domains=(UNEDITED, COLOUR_TRANSFER, CEILING, REAL))
    assert not settings.needs_specialist and replace(SMALL, domains=("edited+crop", REAL)).needs_specialist
    miniature = build_miniature(settings, progress=False)
    assert miniature.base is None and miniature.specialists == [] and miniature.scorecards == []
    assert not (home / "tiny" / "base").exists() and not (home / "tiny" / "specialists").exists()
    config = miniature.eval_config()
    assert config.domains == settings.domains
    assert "specialist" not in config.artefacts and "policies" in config.artefacts


def test_real_savings_over_draws_repeat_the_reports_estimate_on_other_samples(miniature_run):
    from miniature.experiment import REAL_TRIAL_SEED
    from miniature.real_savings import savings_markdown, savings_over_draws

    saved = json.loads((miniature_run["run"] / "report.json").read_text())["real_trials_saved"]
    own = savings_over_draws(miniature_run["run"], draws=1, first_seed=REAL_TRIAL_SEED)  # the run's own sample
    assert set(own) == set(saved) and "real" not in own
    assert {view: int(values[0]) for view, values in own.items()} == {view: s["trials"] for view, s in saved.items()}
    others = savings_over_draws(miniature_run["run"], draws=4)
    assert all(len(values) == 4 and values.min() >= 0 for values in others.values())
    table = savings_markdown(others)
    assert table.count("\n| ") == len(others) + 2 and "over 4 random paired samples" in table
    with pytest.raises(ValueError, match="draws must be at least 1"):
        savings_over_draws(miniature_run["run"], draws=0)
