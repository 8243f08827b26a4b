"""A policy's real-world success rate, estimated from many simulated trials plus a few paired real ones.

Prediction-powered inference (Angelopoulos et al., "Prediction-powered inference", Science 2023), as used for
robot evaluation: the simulator predicts every trial's outcome; a few trials also run in the real world, and the
mean of their real-minus-sim differences (the *rectifier*) corrects the simulator's bias. Per policy, with the
trial as the unit (a trial's sim prediction is the mean of its sim episodes over seeds and styles, its real
outcome the mean of its real episodes):

    estimate = mean of the sim predictions over all N sim trials + mean of (real - sim) over the n paired trials

The n paired trials are among the N (the real world ran some of the protocol's trials), so its variance is

    Var(sim)/N + Var(real - sim)/n + 2 Cov(sim, real - sim)/N  =  Var(real - sim) (1/n - 1/N) + Var(real)/N,

estimated from the paired trials (sample variances, n - 1), never negative; the interval is the estimate plus
or minus Student's t (n - 1 degrees of freedom) times its standard error, clipped to [0, 1]. It is valid
whatever the simulator's bias: a simulator that predicts nothing only widens it. Trials are treated as draws
from a population of trial conditions (the estimand is the policy's mean real success over them); for the
protocol's fixed trials the interval is conservative. Where the standard error is 0 (no spread among the
paired trials) the interval is the real trials' Wilson interval instead.

Beside it: the real-only estimate from the same n real trials with its Wilson score interval, and the real
trials saved - how many real trials the real-only estimate would need for the same standard error
(``Var(real) / se**2``), minus n. Savings are claimed only when the data show them: the simulator narrows the
interval exactly when the slope of real on sim over the paired trials exceeds 1/2 (Var(real - sim) < Var(real)),
so ``trials_saved`` is None unless the 95% interval of that slope (ordinary least squares, t with n - 2 degrees
of freedom) lies above 1/2; a simulator independent of the real world then practically never claims any.

`prediction_powered` is the vectorised core (any leading axes, e.g. repetitions of a simulation);
`estimate_real_success` takes per-(policy, trial) sim and real outcomes and returns per-policy estimates.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: The slope of real on sim above which the rectified estimate beats the real trials alone.
BREAK_EVEN_SLOPE = 0.5
PPI_METHOD = "prediction-powered, CLT (t, n-1 df)"
WILSON_METHOD = "Wilson score on the real trials"


def _wilson(successes: np.ndarray, n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    z = stats.norm.ppf(1 - alpha / 2)
    rate = successes / n
    centre = (rate + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(np.clip(rate * (1 - rate), 0, None) / n + z**2 / (4 * n**2))
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def prediction_powered(
    sim_all: np.ndarray, sim_paired: np.ndarray, real_paired: np.ndarray, alpha: float = 0.05
) -> dict[str, np.ndarray]:
    """The prediction-powered estimate of the real success rate and what goes with it, over the last axis.

    ``sim_all`` (..., N): the sim prediction of every sim trial (its episodes' mean), the paired ones included;
    ``sim_paired`` and ``real_paired`` (..., n): the sim prediction and the real outcome (mean of its real
    episodes) of each of the n paired trials. Leading axes broadcast. Returns arrays (leading shape) under:
    ``estimate`` (clipped to [0, 1]), ``standard_error``, ``low``/``high`` (the interval; Wilson's where the
    standard error is 0, see ``ppi_interval``), ``ppi_interval`` (bool), ``sim_rate``, ``rectifier``,
    ``real_rate``, ``real_low``/``real_high`` (Wilson, real trials alone), ``real_standard_error``,
    ``real_only_needed`` (real trials for the same standard error; NaN where it is 0), ``slope``,
    ``slope_low``, ``trials_saved`` (NaN unless claimed; see the module docstring)."""
    sim_all, sim_paired, real_paired = (np.asarray(a, dtype=np.float64) for a in (sim_all, sim_paired, real_paired))
    big_n, n = sim_all.shape[-1], real_paired.shape[-1]
    if sim_paired.shape[-1] != n:
        raise ValueError(f"sim_paired and real_paired must hold the same trials; got {sim_paired.shape[-1]} and {n}")
    if n < 2:
        raise ValueError(f"the prediction-powered interval needs at least 2 paired real trials, got {n}")
    if big_n < n:
        raise ValueError(f"the paired trials must be among the sim trials, but there are {n} paired and {big_n} sim")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    for name, values in (("sim_all", sim_all), ("sim_paired", sim_paired), ("real_paired", real_paired)):
        if not np.all((values >= 0) & (values <= 1)):
            raise ValueError(f"{name} must hold success rates in [0, 1]")

    rectifier = real_paired - sim_paired
    sim_rate, rectifier_mean = sim_all.mean(axis=-1), rectifier.mean(axis=-1)
    raw = sim_rate + rectifier_mean
    var_rectifier = rectifier.var(axis=-1, ddof=1)
    var_real = real_paired.var(axis=-1, ddof=1)
    variance = var_rectifier * (1 / n - 1 / big_n) + var_real / big_n
    standard_error = np.sqrt(np.clip(variance, 0, None))
    t = stats.t.ppf(1 - alpha / 2, n - 1)
    real_rate = real_paired.mean(axis=-1)
    real_low, real_high = _wilson(real_rate * n, n, alpha)
    ppi = standard_error > 0
    low = np.where(ppi, np.clip(raw - t * standard_error, 0, 1), real_low)
    high = np.where(ppi, np.clip(raw + t * standard_error, 0, 1), real_high)

    # Real trials alone for the same standard error, and whether the paired trials show the sim helps at all.
    safe_variance = np.where(variance > 0, variance, 1.0)
    real_only_needed = np.where(variance > 0, var_real / safe_variance, np.nan)
    sim_centred = sim_paired - sim_paired.mean(axis=-1, keepdims=True)
    real_centred = real_paired - real_rate[..., None]
    spread = np.sum(sim_centred**2, axis=-1)
    safe_spread = np.where(spread > 0, spread, 1.0)
    slope = np.where(spread > 0, np.sum(sim_centred * real_centred, axis=-1) / safe_spread, np.nan)
    if n > 2:
        residual = real_centred - np.nan_to_num(slope)[..., None] * sim_centred
        slope_se = np.sqrt(np.sum(residual**2, axis=-1) / (n - 2) / safe_spread)
        slope_low = np.where(spread > 0, slope - stats.t.ppf(1 - alpha / 2, n - 2) * slope_se, np.nan)
    else:
        slope_low = np.full(np.shape(slope), np.nan)
    saved = np.floor(real_only_needed - n)
    claimed = (slope_low > BREAK_EVEN_SLOPE) & (saved >= 1)
    return {
        "estimate": np.clip(raw, 0, 1),
        "standard_error": standard_error,
        "low": low,
        "high": high,
        "ppi_interval": ppi,
        "sim_rate": sim_rate,
        "rectifier": rectifier_mean,
        "real_rate": real_rate,
        "real_low": real_low,
        "real_high": real_high,
        "real_standard_error": np.sqrt(var_real / n),
        "real_only_needed": real_only_needed,
        "slope": slope,
        "slope_low": slope_low,
        "trials_saved": np.where(claimed, saved, np.nan),
    }


@dataclass(frozen=True)
class RealSuccessEstimate:
    """One policy's real success rate from N sim trials and n paired real trials (see the module docstring).

    ``trials_saved`` is None where the paired trials do not show that the simulator narrows the interval
    (``real_only_needed`` is then only the point estimate of the equal-width count, and may be below n)."""

    policy: str
    estimate: float
    interval: tuple[float, float]
    interval_method: str
    standard_error: float
    sim_rate: float
    rectifier: float
    real_rate: float
    real_only_interval: tuple[float, float]
    real_only_method: str
    sim_trials: int
    sim_episodes: int
    real_trials: int
    real_episodes: int
    real_only_needed: float | None
    trials_saved: int | None
    slope: float | None
    slope_low: float | None
    alpha: float = 0.05

    def to_json(self) -> dict:
        values = dict(self.__dict__)
        for key, value in values.items():
            if isinstance(value, float) and not np.isfinite(value):
                values[key] = None
        values["interval"], values["real_only_interval"] = list(self.interval), list(self.real_only_interval)
        return values


def estimate_real_success(
    sim: Mapping[str, Mapping[Hashable, Sequence[float] | np.ndarray]],
    real: Mapping[str, Mapping[Hashable, Sequence[float] | np.ndarray]],
    alpha: float = 0.05,
) -> dict[str, RealSuccessEstimate]:
    """Per policy of ``real``, the prediction-powered estimate of its real success rate.

    ``sim[policy][trial]``: the 0/1 outcomes of the trial's sim episodes (its seeds, styles, URDF versions);
    ``real[policy][trial]``: the 0/1 outcomes of the trial's real episodes. Every real trial must have sim
    episodes (that is what pairs them); a trial key is anything hashable (e.g. ``"OpenTopDrawer/a0"``)."""
    estimates = {}
    for policy, real_trials in real.items():
        if policy not in sim:
            raise ValueError(f"real episodes of {policy!r}, which has no sim episodes; sim has {sorted(sim)}")
        sim_trials = sim[policy]
        missing = [trial for trial in real_trials if trial not in sim_trials]
        if missing:
            raise ValueError(f"real trials of {policy!r} without sim episodes: {missing}; each real trial must be "
                             "one the simulator ran")
        sim_outcomes = {trial: _outcomes(values, f"sim[{policy!r}][{trial!r}]") for trial, values in sim_trials.items()}
        real_outcomes = {trial: _outcomes(values, f"real[{policy!r}][{trial!r}]")
                         for trial, values in real_trials.items()}
        paired = list(real_outcomes)
        result = prediction_powered(
            np.array([outcomes.mean() for outcomes in sim_outcomes.values()]),
            np.array([sim_outcomes[trial].mean() for trial in paired]),
            np.array([real_outcomes[trial].mean() for trial in paired]),
            alpha=alpha,
        )
        value = {key: float(array) for key, array in result.items()}
        estimates[policy] = RealSuccessEstimate(
            policy=policy,
            estimate=value["estimate"],
            interval=(value["low"], value["high"]),
            interval_method=PPI_METHOD if result["ppi_interval"] else
            WILSON_METHOD + " (no spread among the paired trials: the prediction-powered standard error is 0)",
            standard_error=value["standard_error"],
            sim_rate=value["sim_rate"],
            rectifier=value["rectifier"],
            real_rate=value["real_rate"],
            real_only_interval=(value["real_low"], value["real_high"]),
            real_only_method=WILSON_METHOD,
            sim_trials=len(sim_outcomes),
            sim_episodes=sum(outcomes.size for outcomes in sim_outcomes.values()),
            real_trials=len(paired),
            real_episodes=sum(outcomes.size for outcomes in real_outcomes.values()),
            real_only_needed=_finite_or_none(value["real_only_needed"]),
            trials_saved=None if np.isnan(value["trials_saved"]) else int(value["trials_saved"]),
            slope=_finite_or_none(value["slope"]),
            slope_low=_finite_or_none(value["slope_low"]),
            alpha=alpha,
        )
    return estimates


def _outcomes(values: Sequence[float] | np.ndarray, label: str) -> np.ndarray:
    outcomes = np.asarray(values, dtype=np.float64).ravel()
    if outcomes.size == 0 or not np.all((outcomes == 0) | (outcomes == 1)):
        raise ValueError(f"{label} must be one or more 0/1 episode outcomes")
    return outcomes


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
