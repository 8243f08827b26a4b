"""The paper in miniature end to end at the tests' size: `eval_policies.py --preset tiny --small` builds (or finds)
every piece, evaluates the CNN policies in the three domains over seeds, and writes a report with the spread over
seeds, the specialist's scorecard and the side-by-side frames; a second run repeats nothing."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from evaluation.miniature import MINIATURE_JSON, SIDE_BY_SIDE, MiniatureSettings

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


def test_the_report_keeps_its_schema_and_gives_the_spread_over_seeds(miniature_run):
    report = json.loads((miniature_run["run"] / "report.json").read_text())
    names = [domain["name"] for domain in report["domains"]]
    assert names == ["unedited", f"edited/{SMALL.style}", f"edited+composited/{SMALL.style}"]
    policies = 4
    for domain in report["domains"]:
        assert domain["episodes"] == policies * len(SMALL.trials) * SMALL.seeds
        for column in ("open", "close", "average"):
            assert set(domain["agreement"][column]) >= {"mmrv", "pearson_r"}
            spread = domain["agreement_over_seeds"][column]
            if spread is not None:  # a seed whose rates do not vary gives no Pearson r
                assert len(spread["mmrv"]) == SMALL.seeds
    markdown = (miniature_run["run"] / "report.md").read_text()
    assert "## The miniature" in markdown and "not SIMPLER" in markdown
    assert f"Spread over the {SMALL.seeds} seeds" in markdown


def test_the_report_shows_sim_edited_and_real_frames_side_by_side(miniature_run):
    summary = json.loads((miniature_run["run"] / MINIATURE_JSON).read_text())
    figure = miniature_run["run"] / summary["figure"]
    assert figure.name == SIDE_BY_SIDE
    with Image.open(figure) as image:
        assert image.format == "PNG" and image.height > image.width / 2  # four rows of three frames
    assert f"]({summary['figure']})" in (miniature_run["run"] / "report.md").read_text()
    methods = [card["method"] for card in summary["scorecard"]]
    assert methods == ["identity", "untrained", "trained"]  # the small build trains no control
    assert len(summary["real_world"]) == 4 and all(name.startswith("cnn-bc-") for name in summary["real_world"])
    assert all(0 <= rates["average"] <= 1 for rates in summary["real_world"].values())


def test_a_rerun_finds_every_piece_and_every_episode(miniature_run, capsys):
    specialist = miniature_run["home"] / "tiny" / "specialists" / SMALL.style
    weights = specialist / "specialist_weights.safetensors"
    before = weights.stat().st_mtime_ns
    capsys.readouterr()
    miniature_run["rerun"]()
    printed = capsys.readouterr().out
    assert "ran 0 episodes" in printed
    assert weights.stat().st_mtime_ns == before
    assert "trained" in printed and "over seeds" in printed
