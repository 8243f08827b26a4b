"""Prediction-powered estimates of real success: coverage by simulation with known true rates, narrower than the
real trials alone when sim and real correlate, no savings claimed when they do not, and a hand case."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sim2real_edit.real_success import estimate_real_success, prediction_powered

REPETITIONS = 2000


def simulate(seed: int, sim_trials: int = 54, real_trials: int = 27, seeds: int = 3, real_shift: float = 0.3,
             difficulty: float = 3.0, sim_shift: float = 0.0, sim_tracking: float = 3.0, sim_noise: float = 0.5):
    """``REPETITIONS`` experiments of one policy. Each trial (a condition of the protocol) has a latent ease z ~
    N(0, 1); its real success probability is Phi(real_shift + difficulty z), its sim one Phi(sim_shift +
    sim_tracking z + sim_noise e) with e ~ N(0, 1) of its own (``sim_tracking=0``: sim independent of real).
    Every trial runs ``seeds`` sim episodes; ``real_trials`` of them, drawn at random, one real episode.
    The true real rate is E[Phi(real_shift + difficulty z)] = Phi(real_shift / sqrt(1 + difficulty^2))."""
    rng = np.random.default_rng(seed)
    shape = (REPETITIONS, sim_trials)
    ease = rng.standard_normal(shape)
    real_p = stats.norm.cdf(real_shift + difficulty * ease)
    sim_p = stats.norm.cdf(sim_shift + sim_tracking * ease + sim_noise * rng.standard_normal(shape))
    sim = rng.binomial(seeds, sim_p) / seeds
    paired = np.argsort(rng.random(shape), axis=1)[:, :real_trials]
    real = (rng.random((REPETITIONS, real_trials)) < np.take_along_axis(real_p, paired, 1)).astype(float)
    truth = stats.norm.cdf(real_shift / math.sqrt(1 + difficulty**2))
    return prediction_powered(sim, np.take_along_axis(sim, paired, 1), real), truth


COVERAGE_CASES = {
    # name: (seed, simulate's keywords)
    "sim tracks real, 27 of 54 trials real": (1, {}),
    "sim tracks real, biased (+0.8), 10 of 54 real": (2, {"real_trials": 10, "sim_shift": 0.8}),
    "sim tracks real loosely, 1 seed, 20 of 108 real": (3, {"sim_trials": 108, "real_trials": 20, "seeds": 1,
                                                            "sim_tracking": 1.5, "sim_noise": 1.5}),
    "sim independent of real, 27 of 54 real": (4, {"sim_tracking": 0.0, "sim_noise": 1.0}),
    "low real rate (0.2), sim tracks, 27 of 54 real": (5, {"real_shift": -2.6}),
}


@pytest.mark.parametrize("case", list(COVERAGE_CASES))
def test_the_interval_covers_the_true_real_rate_95_percent_of_the_time(case):
    seed, keywords = COVERAGE_CASES[case]
    result, truth = simulate(seed, **keywords)
    covered = (result["low"] <= truth) & (truth <= result["high"])
    # 2000 repetitions: the Monte Carlo standard error of a 95% coverage is 0.5 points.
    assert 0.93 <= covered.mean() <= 0.97, (case, truth, covered.mean())
    assert abs(result["estimate"].mean() - truth) < 0.01  # unbiased, whatever the sim's bias


def test_a_sim_that_tracks_the_real_world_narrows_the_interval_and_saves_real_trials():
    result, _ = simulate(1)
    ppi_width = result["high"] - result["low"]
    real_width = result["real_high"] - result["real_low"]
    # Like for like (standard errors), nearly always; against the real trials' Wilson interval (which uses z, not
    # t, and shrinks towards 1/2) in most experiments. 54 sim trials bound the gain: at best as if all 54 ran real.
    assert np.mean(result["standard_error"] < result["real_standard_error"]) > 0.95
    assert np.median(ppi_width) < np.median(real_width)
    assert np.mean(ppi_width < real_width) > 0.6
    saved = result["trials_saved"]
    assert np.mean(saved >= 1) > 0.5  # savings claimed in most experiments ...
    assert np.nanmedian(saved) >= 5  # ... of several real trials (27 were run)
    assert np.all(np.isnan(saved) | (saved >= 1))


@pytest.mark.parametrize("keywords", [{"sim_tracking": 0.0, "sim_noise": 1.0},  # spread, but unrelated
                                      {"sim_tracking": 0.0, "sim_noise": 3.0, "seeds": 1},  # near 0/1 per trial
                                      {"sim_tracking": -3.0},  # anti-correlated
                                      {"sim_shift": -50.0}],  # never succeeds in sim
                         ids=["independent", "independent-extreme", "anti-correlated", "constant"])
def test_a_sim_independent_of_the_real_world_never_claims_savings(keywords):
    result, _ = simulate(6, **keywords)
    assert np.all(np.isnan(result["trials_saved"]))
    # Its interval is no narrower than the real trials' alone would be at the same standard error.
    assert np.mean(result["standard_error"] >= result["real_standard_error"] - 1e-12) > 0.95


def test_hand_case_per_policy():
    sim = {"A": {"t1": [1, 1, 1], "t2": [1, 0, 1], "t3": [0, 0, 0], "t4": [0, 1, 0], "t5": [1, 1, 0]}}
    real = {"A": {"t1": [1], "t3": [1], "t4": [0], "t5": [1, 0]}}
    (estimate,) = estimate_real_success(sim, real).values()
    sim_means = np.array([1, 2 / 3, 0, 1 / 3, 2 / 3])
    rectifier = np.array([1 - 1, 1 - 0, 0 - 1 / 3, 0.5 - 2 / 3])
    real_means = np.array([1, 1, 0, 0.5])
    expected = sim_means.mean() + rectifier.mean()
    se = math.sqrt(rectifier.var(ddof=1) * (1 / 4 - 1 / 5) + real_means.var(ddof=1) / 5)
    t = stats.t.ppf(0.975, 3)
    assert estimate.estimate == pytest.approx(expected)
    assert estimate.standard_error == pytest.approx(se)
    assert estimate.interval == pytest.approx((max(0, expected - t * se), min(1, expected + t * se)))
    assert (estimate.sim_trials, estimate.sim_episodes, estimate.real_trials, estimate.real_episodes) == (5, 15, 4, 5)
    assert estimate.real_rate == pytest.approx(0.625)
    z = stats.norm.ppf(0.975)
    centre = (0.625 + z**2 / 8) / (1 + z**2 / 4)
    half = z / (1 + z**2 / 4) * math.sqrt(0.625 * 0.375 / 4 + z**2 / 64)
    assert estimate.real_only_interval == pytest.approx((centre - half, centre + half))
    assert estimate.real_only_needed == pytest.approx(real_means.var(ddof=1) / se**2)
    assert estimate.trials_saved is None  # 4 real trials cannot show that this sim helps
    assert estimate.to_json()["interval"] == list(estimate.interval)


def test_no_spread_among_the_paired_trials_falls_back_to_wilson_and_claims_nothing():
    sim = {"A": {f"t{i}": [0, 0] for i in range(27)}}
    real = {"A": {f"t{i}": [0] for i in range(10)}}
    (estimate,) = estimate_real_success(sim, real).values()
    assert estimate.estimate == 0.0 and estimate.standard_error == 0.0
    assert estimate.interval == estimate.real_only_interval
    assert estimate.interval[0] == 0.0 and 0.2 < estimate.interval[1] < 0.35
    assert estimate.interval_method.startswith("Wilson") and estimate.trials_saved is None


def test_inputs_that_cannot_be_paired_are_refused():
    with pytest.raises(ValueError, match="without sim episodes: \\['t9'\\]"):
        estimate_real_success({"A": {"t1": [1], "t2": [0]}}, {"A": {"t1": [1], "t9": [0]}})
    with pytest.raises(ValueError, match="has no sim episodes"):
        estimate_real_success({"A": {"t1": [1]}}, {"B": {"t1": [1]}})
    with pytest.raises(ValueError, match="at least 2 paired real trials"):
        estimate_real_success({"A": {"t1": [1], "t2": [0]}}, {"A": {"t1": [1]}})
    with pytest.raises(ValueError, match="0/1 episode outcomes"):
        estimate_real_success({"A": {"t1": [1], "t2": [0.5]}}, {"A": {"t1": [1], "t2": [1]}})
