"""MMRV, Pearson r and bootstrap intervals on hand-made cases, and the real-world table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import pearsonr

from sim2real_edit.metrics import (
    agreement_bootstrap,
    bootstrap_ci,
    cluster_bootstrap_ci,
    mmrv,
    pearson_r,
    trial_rate,
)
from sim2real_edit.real_world import checkpoint_policy_names, real_world_success

REAL = [0.8, 0.6, 0.0]


def test_perfect_order_has_no_rank_violation():
    sim = [0.9, 0.5, 0.1]
    assert mmrv(sim, REAL) == 0.0
    linear_sim = [2 * rate + 0.1 for rate in REAL]
    assert pearson_r(linear_sim, REAL) == pytest.approx(1.0, abs=1e-7)


def test_one_swap_costs_the_real_gap_to_both_policies():
    # Policies 0 and 1 swap: each gets a violation of |0.8 - 0.6|; policy 2 none.
    assert mmrv([0.5, 0.6, 0.1], REAL) == pytest.approx((0.2 + 0.2 + 0.0) / 3)
    # Policy 0 dropping to the bottom violates (0, 1) by 0.2 and (0, 2) by 0.8: each policy keeps its largest.
    assert mmrv([0.1, 0.6, 0.5], REAL) == pytest.approx((0.8 + 0.2 + 0.8) / 3)


def test_ties_count_only_where_the_other_side_is_strictly_ordered():
    # A tie in sim where real is strict: only the policy that is ahead in real sees the violation.
    assert mmrv([0.5, 0.5, 0.1], REAL) == pytest.approx(0.2 / 3)
    # A tie in real where sim is strict: the violation costs |real_i - real_j| = 0.
    assert mmrv(REAL, [0.5, 0.5, 0.1]) == 0.0
    # A constant simulator ties everything: each policy's violation is its gap to the worst real policy.
    assert mmrv([0.3, 0.3, 0.3], REAL) == pytest.approx((0.8 + 0.6 + 0.0) / 3)


def test_pearson_matches_hand_computed_and_scipy_values():
    # Centred [2, -1, -1]/3 and [-1, 2, -1]/3: products sum to -1/3, norms to 2/3 -> r = -1/2.
    assert pearson_r([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]) == pytest.approx(-0.5, abs=1e-7)
    sim = [0.55, 0.7, 0.2, 0.05, 0.4]
    real = [0.87, 0.80, 0.63, 0.0, 0.48]
    assert pearson_r(sim, real) == pytest.approx(pearsonr(sim, real)[0], abs=1e-7)


def test_pearson_edge_cases_follow_simpler():
    assert pearson_r(REAL, REAL) == 1.0  # equal centred vectors: exactly 1
    assert pearson_r([0.25, 0.25, 0.25], [0.5, 0.5, 0.5]) == 1.0  # both constant: centred vectors are zero
    assert pearson_r([0.3, 0.3, 0.3], REAL) == 0.0  # constant sim: the 1e-8 keeps it finite


def test_dicts_are_aligned_by_policy_name():
    real = {"a": 0.8, "b": 0.6, "c": 0.0}
    sim = {"c": 0.1, "a": 0.5, "b": 0.6}  # another key order; a and b swapped
    assert mmrv(sim, real) == pytest.approx(mmrv([0.5, 0.6, 0.1], REAL))
    assert pearson_r(sim, real) == pytest.approx(pearson_r([0.5, 0.6, 0.1], REAL))
    assert mmrv({"c": 0.1, "a": 0.9, "b": 0.6}, real) == 0.0


@pytest.mark.parametrize(
    ("sim", "real", "error", "message"),
    [
        ({"a": 0.1, "b": 0.2}, {"a": 0.1, "c": 0.2}, ValueError, "only in sim: \\['b'\\]"),
        ([0.1, 0.2, 0.3], [0.1, 0.2], ValueError, "equal length"),
        ([0.1], [0.2], ValueError, "at least 2 policies"),
        ({"a": 0.1, "b": 0.2}, [0.1, 0.2], TypeError, "both be dicts"),
        ([0.1, float("nan")], [0.1, 0.2], ValueError, "finite"),
    ],
)
def test_metric_inputs_are_checked(sim, real, error, message):
    for metric in (mmrv, pearson_r):
        with pytest.raises(error, match=message):
            metric(sim, real)


def test_bootstrap_interval_of_a_success_rate():
    outcomes = np.array([True] * 50 + [False] * 50)
    low, high = bootstrap_ci(outcomes, n_boot=20_000, alpha=0.05, seed=0)
    half_width = 1.96 * math.sqrt(0.25 / 100)  # normal approximation of the binomial
    assert low == pytest.approx(0.5 - half_width, abs=0.02) and high == pytest.approx(
        0.5 + half_width, abs=0.02
    )
    assert bootstrap_ci(outcomes, n_boot=2_000, seed=3) == bootstrap_ci(outcomes, n_boot=2_000, seed=3)
    narrower = bootstrap_ci(outcomes, n_boot=20_000, alpha=0.5, seed=0)
    assert low < narrower[0] < narrower[1] < high
    assert bootstrap_ci([1, 1, 1], seed=0) == (1.0, 1.0)


def test_bootstrap_rejects_bad_outcomes():
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="0/1"):
        bootstrap_ci([0.5, 1.0])


def test_real_world_table_holds_simpler_numbers():
    table = real_world_success()
    assert list(table) == ["RT-1 (Converged)", "RT-1 (15%)", "RT-1-X", "RT-2-X", "Octo-Base", "RT-1 (Begin)"]
    rt1_x = table["RT-1-X"]
    assert (rt1_x.open, rt1_x.close, rt1_x.trials) == (0.519, 0.741, 27)
    assert rt1_x.average == pytest.approx(0.63)
    assert table["RT-1 (Begin)"].average == 0.0
    assert checkpoint_policy_names() == {
        "rt_1_tf_trained_for_000400120": "RT-1 (Converged)",
        "rt_1_tf_trained_for_000058240": "RT-1 (15%)",
        "rt_1_x_tf_trained_for_002272480_step": "RT-1-X",
        "rt_1_tf_trained_for_000001120": "RT-1 (Begin)",
    }
    averages = {name: entry.average for name, entry in table.items()}
    assert mmrv(averages, averages) == 0.0


def test_real_world_table_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="real_world.yaml"):
        real_world_success(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("policies:\n  RT-1-X: {open: 0.5}\n")
    with pytest.raises(ValueError, match="lacks \\['close'\\]"):
        real_world_success(broken)
    broken.write_text("policies:\n  RT-1-X: {open: 0.5, close: 0.5, trials: {open: 27}}\n")
    with pytest.raises(ValueError, match="must name open and close.*trials: 27"):
        real_world_success(broken)
    broken.write_text("policies:\n  RT-1-X: {open: 0.5, close: 0.5, trials: 0}\n")
    with pytest.raises(ValueError, match="whole number >= 1, got 0"):
        real_world_success(broken)


def test_real_world_trial_counts_default_to_simplers_and_may_differ_by_task(tmp_path):
    table = tmp_path / "table.yaml"
    table.write_text("policies:\n  a: {open: 0.5, close: 0.25}\n  b: {open: 0.1, close: 0.2, trials: {open: 10, close: 20}}\n"
                     "  c: {open: 0.5, close: 0.5, trials: 54}\n")
    rows = real_world_success(table)
    assert (rows["a"].trials_for("open"), rows["a"].trials_for("close")) == (27, 27)
    assert (rows["b"].trials_for("open"), rows["b"].trials_for("close")) == (10, 20)
    assert (rows["c"].trials_for("open"), rows["c"].trials_for("close")) == (54, 54)


def test_cluster_bootstrap_resamples_trials_not_episodes():
    # 10 trials of 10 episodes each; a trial's episodes all agree (5 trials succeed, 5 fail). Resampling trials
    # makes the rate Binomial(10, 0.5) / 10, whose 2.5% and 97.5% quantiles are 0.2 and 0.8 exactly
    # (P(X <= 1) = 11/1024 < 0.025 < P(X <= 2) = 56/1024).
    trials = [[1] * 10] * 5 + [[0] * 10] * 5
    assert trial_rate([trials]) == 0.5
    assert cluster_bootstrap_ci([trials], n_boot=20_000, seed=0) == (0.2, 0.8)
    # Treating the 100 episodes as independent gives an interval about sqrt(10) times narrower.
    low, high = bootstrap_ci(np.ravel(trials), n_boot=20_000, seed=0)
    assert high - low == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 100), abs=0.02)


def test_trial_rates_pool_episodes_and_average_rate_groups():
    # Pooled over episodes: 4 of 5, not the mean of the trial rates (0.5).
    assert trial_rate([[[1, 1, 1, 1], [0]]]) == pytest.approx(0.8)
    # SIMPLER's average: the mean of the open and close rates.
    assert trial_rate([[[1, 1], [1, 0]], [[0, 0], [0, 0]]]) == pytest.approx((0.75 + 0.0) / 2)
    # Trials whose episodes are all alike and equal: every resample gives the same rate.
    assert cluster_bootstrap_ci([[[1, 1], [1, 1]], [[0], [0], [0]]]) == (0.5, 0.5)
    # One trial: nothing to resample, the interval is the rate itself.
    assert cluster_bootstrap_ci([[[1, 0, 1, 1]]]) == (0.75, 0.75)
    assert cluster_bootstrap_ci([[[1], [0]]], seed=4) == cluster_bootstrap_ci([[[1], [0]]], seed=4)


def test_cluster_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="rate groups"):
        cluster_bootstrap_ci([1, 0, 1])
    with pytest.raises(ValueError, match="holds no trials"):
        cluster_bootstrap_ci([[]])
    with pytest.raises(ValueError, match="0/1"):
        cluster_bootstrap_ci([[[0.5, 1.0]]])
    with pytest.raises(ValueError, match="alpha"):
        cluster_bootstrap_ci([[[1], [0]]], alpha=1.5)


def test_agreement_intervals_resample_every_policy_independently():
    real = {"a": 0.9, "b": 0.1}
    # Both policies: one trial that always succeeds and one that always fails (rate 0.5). Each draw gives a
    # rate of 0, 0.5 or 1 (probabilities 1/4, 1/2, 1/4) to each policy, independently, so a, ahead in the
    # real world, ends up ahead (MMRV 0), tied (MMRV 0.8 / 2) or behind (MMRV 0.8): the interval is [0, 0.8].
    # Resampling both policies' trials together would tie them in every draw.
    sim = {"a": [[[1, 1], [0, 0]]], "b": [[[1, 1], [0, 0]]]}
    result = agreement_bootstrap(sim, real, n_boot=5_000, seed=0)
    assert (result.mmrv, result.pearson_r) == (pytest.approx(0.4), 0.0)  # tied rates: r = 0 (SIMPLER's 1e-8)
    assert result.mmrv_interval == pytest.approx((0.0, 0.8))
    assert result.pearson_r_interval == pytest.approx((-1.0, 1.0), abs=1e-6)
    assert agreement_bootstrap(sim, real, n_boot=500, seed=1) == agreement_bootstrap(sim, real, n_boot=500, seed=1)


def test_agreement_intervals_are_points_where_no_draw_can_change_the_rates():
    real = {"a": 0.8, "b": 0.6, "c": 0.0}
    # Every trial of a policy has the same outcomes: resampling trials cannot move any rate.
    sim = {"a": [[[1, 0], [1, 0]]], "b": [[[1, 0, 0, 0]] * 3], "c": [[[0], [0]]]}
    result = agreement_bootstrap(sim, real, n_boot=2_000)
    assert result.mmrv == mmrv({"a": 0.5, "b": 0.25, "c": 0.0}, real) == 0.0
    assert result.mmrv_interval == (0.0, 0.0)
    expected_r = pearson_r([0.5, 0.25, 0.0], [0.8, 0.6, 0.0])
    assert result.pearson_r == pytest.approx(expected_r)
    assert result.pearson_r_interval == pytest.approx((expected_r, expected_r))
    # The open/close average: a policy's rate is the mean of its rate groups' rates.
    averaged = agreement_bootstrap({"a": [[[1]], [[1]]], "b": [[[1]], [[0]]]}, {"a": 0.9, "b": 0.5})
    assert averaged.mmrv == 0.0 and averaged.pearson_r == pytest.approx(1.0, abs=1e-7)
    with pytest.raises(ValueError, match="only in sim"):
        agreement_bootstrap({"a": [[[1]]], "b": [[[0]]]}, {"a": 0.9, "c": 0.5})
