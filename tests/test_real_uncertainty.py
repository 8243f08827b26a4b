"""Honest intervals: the real-world table's trial counts in the agreement intervals, rate intervals that do not
collapse at 0/n, n/n or one trial, and Pearson r reported as undefined where the rates are constant."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sim2real_edit.metrics import (
    PairedOutcomes,
    clopper_pearson,
    cluster_bootstrap_ci,
    joint_bootstrap,
    rate_interval,
    wilson_interval,
)
from sim2real_edit.real_world import RealWorldSuccess

# Three policies on three open and three close trials, one seed. Every trial of a policy has the same outcome,
# so resampling trials cannot move a sim rate: whatever spread an interval has comes from the real table.
ACTIONS = ("open",) * 3 + ("close",) * 3
STEADY = PairedOutcomes(ACTIONS, {"sim": {
    "A": np.ones((6, 1)), "B": np.array([[1], [1], [1], [0], [0], [0]]), "C": np.zeros((6, 1))}})


def _table(trials: int, rates=(0.7, 0.5, 0.4)) -> dict[str, RealWorldSuccess]:
    return {name: RealWorldSuccess(open=rate, close=rate, trials=trials) for name, rate in zip("ABC", rates)}


def _average(result):
    return result.domains["sim"].columns["average"]


def test_binomial_real_uncertainty_widens_the_agreement_intervals():
    # Sim average rates A 1, B .5, C 0 rank the policies as the table does (.7 > .5 > .4): MMRV 0, r 0.98.
    exact = _average(joint_bootstrap(STEADY, "table", None, n_boot=4000, reference_table=_table(27),
                                     reference_exact=True))
    binomial = _average(joint_bootstrap(STEADY, "table", None, n_boot=4000, reference_table=_table(27)))
    assert exact.mmrv == binomial.mmrv == 0.0
    assert exact.pearson_r == binomial.pearson_r == pytest.approx(np.corrcoef([1, 0.5, 0], [0.7, 0.5, 0.4])[0, 1])
    # Taken as exact, nothing varies; 27 real trials per rate leave the order of .7, .5, .4 uncertain.
    assert exact.mmrv_interval == (0.0, 0.0)
    assert exact.pearson_r_interval == pytest.approx((exact.pearson_r, exact.pearson_r))
    assert binomial.mmrv_interval[0] == 0.0 and binomial.mmrv_interval[1] > 0.04
    assert binomial.pearson_r_interval[0] < exact.pearson_r - 0.2
    gap = binomial.per_policy["A"]  # |1 - .7|: the real rate's spread, sd sqrt(.21 / 27) = .09
    assert gap.abs_gap_interval[0] < gap.abs_gap - 0.08 and gap.abs_gap_interval[1] > gap.abs_gap + 0.08
    # The counts are data: more real trials, narrower intervals; a million behave as exact.
    many = _average(joint_bootstrap(STEADY, "table", None, n_boot=4000, reference_table=_table(270)))
    assert binomial.pearson_r_interval[0] < many.pearson_r_interval[0] < exact.pearson_r
    huge = _average(joint_bootstrap(STEADY, "table", None, n_boot=4000, reference_table=_table(10**6)))
    assert huge.pearson_r_interval == pytest.approx(exact.pearson_r_interval, abs=2e-3)


def test_a_table_reference_keeps_the_joint_trial_draws_and_has_no_episode_agreement():
    rng = np.random.default_rng(5)
    outcomes = {domain: {p: (rng.random((6, 2)) < 0.5).astype(float) for p in "ABC"} for domain in ("sim", "real")}
    paired = PairedOutcomes(ACTIONS, outcomes)
    real = {p: RealWorldSuccess(open=outcomes["real"][p][:3].mean(), close=outcomes["real"][p][3:].mean(),
                                trials=6) for p in "ABC"}
    by_domain = joint_bootstrap(paired, "real", None, n_boot=300, seed=2).domains["sim"].columns
    by_table = joint_bootstrap(PairedOutcomes(ACTIONS, {"sim": outcomes["sim"]}), "table", None, n_boot=300,
                               seed=2, reference_table=real, reference_exact=True)
    for column, value in by_table.domains["sim"].columns.items():
        assert value.mae == pytest.approx(by_domain[column].mae)
        assert value.mmrv == pytest.approx(by_domain[column].mmrv)
        assert math.isnan(value.agreement) and value.agreement_interval is None
    assert by_table.reference_draws == "exact" and by_table.differences == []
    assert joint_bootstrap(STEADY, "table", None, n_boot=10, reference_table=_table(27)).reference_draws == "binomial"
    with pytest.raises(ValueError, match="no rates for \\['C'\\]"):
        joint_bootstrap(STEADY, "table", None, reference_table={p: _table(27)[p] for p in "AB"})
    with pytest.raises(ValueError, match="name of a domain"):
        joint_bootstrap(STEADY, "sim", None, reference_table=_table(27))


def test_constant_sim_rates_give_an_undefined_r_and_say_how_often():
    flat = PairedOutcomes(ACTIONS, {"sim": {p: np.zeros((6, 1)) for p in "ABC"}})
    value = _average(joint_bootstrap(flat, "table", None, n_boot=500, reference_table=_table(27)))
    assert math.isnan(value.pearson_r)  # SIMPLER's formula would say 0
    assert value.pearson_r_interval is None and value.pearson_r_undefined_share == 1.0
    # One policy at 1 of 3 trials and the rest at 0: the draws that leave out its success are undefined too.
    almost = PairedOutcomes(ACTIONS, {"sim": {"A": np.array([[1], [0], [0], [0], [0], [0]]),
                                              "B": np.zeros((6, 1)), "C": np.zeros((6, 1))}})
    opening = joint_bootstrap(almost, "table", None, n_boot=4000, reference_table=_table(27)).domains["sim"]
    share = opening.columns["open"].pearson_r_undefined_share
    assert share == pytest.approx((2 / 3) ** 3, abs=0.03)  # no draw of the 3 open trials picks A's success
    assert opening.columns["open"].pearson_r_interval is not None


def test_zero_of_27_gets_an_exact_interval_not_a_point():
    assert clopper_pearson(0, 27) == pytest.approx((0.0, 0.128), abs=5e-4)
    assert clopper_pearson(27, 27) == pytest.approx((0.872, 1.0), abs=5e-4)
    low, high = clopper_pearson(13, 27)
    assert low < 13 / 27 < high
    assert wilson_interval(0, 27)[0] == 0.0 and 0.1 < wilson_interval(0, 27)[1] < 0.13

    zeros = [[[0]] * 27]
    assert cluster_bootstrap_ci(zeros) == (0.0, 0.0)  # the bootstrap alone collapses ...
    interval = rate_interval(zeros)  # ... the reported interval does not
    assert (interval.low, interval.high, interval.method, interval.units) == (
        0.0, pytest.approx(0.128, abs=5e-4), "Clopper-Pearson", 27)
    # A trial's seeds are not independent: 27 trials x 3 seeds still count as 27 units.
    assert rate_interval([[[1, 1, 1]] * 27]).units == 27
    # One trial: nothing to resample; its episodes are the units, or its independent ones where given.
    one = rate_interval([[[1, 0, 1, 1]]])
    assert one.method == "Clopper-Pearson" and one.units == 4 and one.low < 0.75 < one.high
    repeats = rate_interval([[[1, 1, 1, 1]]], independent_episodes=1)
    assert repeats.units == 1 and repeats.low == pytest.approx(0.025)
    # Where trials differ the cluster bootstrap stays.
    assert rate_interval([[[1], [0], [1], [1]]]).method == "cluster bootstrap"


def _stored_run(tmp_path, successes):
    """A run folder of the four graded stand-ins on two open and two close trials x 1 seed whose episodes are
    written directly: ``successes[policy index]`` is the outcome of each of the four trials."""
    from evaluation.config import UNEDITED, tiny_config
    from evaluation.results import EpisodeResult, ResultStore

    trials = ("OpenTopDrawer/a0", "OpenTopDrawer/b1", "CloseTopDrawer/a0", "CloseTopDrawer/b1")
    config = tiny_config(trials=trials, seeds=1, domains=(UNEDITED,), standin_camera=None)
    store = ResultStore.create(tmp_path, config)
    for policy, outcomes in zip(config.policies, successes):
        for trial, success in zip(trials, outcomes):
            task, pose = trial.split("/")
            store.add(EpisodeResult(policy.name, UNEDITED, "", config.urdf_versions[0], 0, task, pose, "top",
                                    "open" if task.startswith("Open") else "close", bool(success), 10, None, 0.1,
                                    0, 0.1, config.config_hash))
    return config


def test_the_report_redraws_the_table_unless_told_exact_and_never_prints_r_0_for_constant_rates(tmp_path):
    from evaluation.report import build_report, write_report

    _stored_run(tmp_path, [(1, 1, 1, 1), (1, 1, 1, 0), (1, 0, 1, 0), (0, 0, 0, 0)])
    binomial, exact = build_report(tmp_path), build_report(tmp_path, real_rates_exact=True)
    for column in ("open", "close", "average"):
        b, e = binomial.domains[0].agreement[column], exact.domains[0].agreement[column]
        assert (b.mmrv, b.pearson_r) == (e.mmrv, e.pearson_r)
        assert b.reference_draws == "binomial" and e.reference_draws == "exact"
        assert b.mmrv_interval[1] - b.mmrv_interval[0] >= e.mmrv_interval[1] - e.mmrv_interval[0]
    average = binomial.domains[0].agreement["average"]
    assert average.pearson_r_interval[0] < exact.domains[0].agreement["average"].pearson_r_interval[0]
    # The policy that never succeeded gets an exact interval, not [0, 0].
    never = binomial.domains[0].rates[3].average
    assert (never.rate, never.low, never.method) == (0.0, 0.0, "Clopper-Pearson") and never.high > 0.4

    constant = tmp_path / "constant"
    _stored_run(constant, [(1, 0, 1, 0)] * 4)
    report = write_report(constant)
    for column in ("open", "close", "average"):
        value = report.domains[0].agreement[column]
        assert value.pearson_r is None and value.pearson_r_undefined_share == 1.0
    saved = json.loads((constant / "report.json").read_text())
    assert saved["domains"][0]["agreement"]["average"]["pearson_r"] is None
    assert saved["bootstrap"]["real_rates"] == "binomial"
    markdown = (constant / "report.md").read_text()
    assert "undefined (undef. 100%)" in markdown and " 0.000 [0.000, 0.000]" not in markdown


def test_an_incomplete_run_gets_values_without_intervals_not_a_crash(tmp_path):
    import sqlite3

    from evaluation.report import write_report

    _stored_run(tmp_path, [(1, 1, 1, 1), (1, 1, 1, 0), (1, 0, 1, 0), (0, 0, 0, 0)])
    with sqlite3.connect(tmp_path / "episodes.sqlite") as connection:
        connection.execute("DELETE FROM episodes WHERE policy = 'scripted-good' AND pose = 'b1' AND task = "
                           "'CloseTopDrawer'")
    report = write_report(tmp_path)
    average = report.domains[0].agreement["average"]
    assert average.mmrv_interval is None and average.pearson_r_interval is None
    assert 0 <= average.mmrv <= 1 and average.pearson_r is not None
    assert "(no interval: run incomplete)" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "plots" / "agreement.png").is_file()
