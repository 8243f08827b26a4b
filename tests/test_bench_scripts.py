"""The benchmark scripts run end to end on the tiny preset (their GPU figures come from GPU sessions)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_train_times_the_three_phases_and_extrapolates(tmp_path, monkeypatch, tiny_base):
    monkeypatch.setenv("SIM2REAL_EDIT_HOME", str(tmp_path / "home"))
    results = load_script("bench_train").main(["--preset", "tiny", "--json", str(tmp_path / "out.json")])
    for key in ("sample_seconds", "score_seconds", "train_seconds"):
        assert results[key] > 0
    phases = results["sample_seconds"] + results["score_seconds"] + results["train_seconds"]
    assert phases <= results["step_seconds"] + 1e-6
    paper = (256 / 8) * (100 / 3)
    expected = (results["sample_seconds"] + results["train_seconds"]) * paper + results["score_seconds"] * 256 / 8
    assert results["paper_step_seconds_extrapolated"] == pytest.approx(expected)
    assert (tmp_path / "out.json").is_file()
