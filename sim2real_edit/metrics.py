"""How well a simulator ranks and predicts real-world policy performance, with SIMPLER's exact semantics.

Both metrics compare per-policy success rates in simulation with the same policies' real-world rates:

- `mmrv` (mean maximum rank violation, lower is better): for each policy i, the largest real-world gap
  ``|real_i - real_j|`` over the policies j that the simulator orders differently, where "orders" uses
  strict comparisons, ``(sim_i > sim_j) != (real_i > real_j)``; averaged over i. A tie on one side and a
  strict order on the other therefore counts as a violation for the policy that is ahead.
- `pearson_r`: ``sum(c_sim * c_real) / (sqrt(sum(c_sim**2) * sum(c_real**2)) + 1e-8)`` on the centred
  vectors, and exactly 1 when the centred vectors are equal (so two constant vectors give 1).

Inputs are either two sequences in the same policy order or two dicts keyed by policy name (aligned by
key). For the "average" column, pass the policies' open/close-averaged success rates.

Uncertainty: a trial (task at a start pose) repeated over diffusion seeds, styles and robot URDF versions
gives correlated episodes, so the intervals here resample *trials* and keep each trial's episodes together
(cluster bootstrap, `cluster_bootstrap_ci`); `agreement_bootstrap` resamples the trials of every policy
independently and recomputes MMRV and Pearson r on each draw. Both take one policy's outcomes as *strata*:
a list of rate groups whose rates are averaged (``[open_trials]`` for the open rate, ``[open_trials,
close_trials]`` for SIMPLER's open/close average), each a list of per-trial 0/1 outcome arrays. Trials are
resampled within their stratum. Percentile intervals from `scipy.stats.bootstrap`, seeded, so equal inputs
give equal intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

SuccessRates = Mapping[str, float] | Sequence[float] | np.ndarray
#: One rate group of a policy: one array of 0/1 episode outcomes per trial (its seeds, styles, URDF versions).
TrialOutcomes = Sequence[Sequence[bool] | Sequence[float] | np.ndarray]


def _aligned_rates(sim: SuccessRates, real: SuccessRates) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as float64 vectors in the same policy order, checked for shape and count."""
    sim_is_dict, real_is_dict = isinstance(sim, Mapping), isinstance(real, Mapping)
    if sim_is_dict != real_is_dict:
        raise TypeError(
            "sim and real must both be dicts keyed by policy name or both be sequences in the same policy "
            f"order; got {type(sim).__name__} and {type(real).__name__}"
        )
    if sim_is_dict:
        if set(sim) != set(real):
            raise ValueError(
                "sim and real must hold the same policies; only in sim: "
                f"{sorted(set(sim) - set(real))}, only in real: {sorted(set(real) - set(sim))}. "
                "Drop the extra policies or add the missing ones."
            )
        names = list(sim)
        sim_rates = np.array([sim[name] for name in names], dtype=np.float64)
        real_rates = np.array([real[name] for name in names], dtype=np.float64)
    else:
        sim_rates, real_rates = np.asarray(sim, dtype=np.float64), np.asarray(real, dtype=np.float64)
    if sim_rates.ndim != 1 or sim_rates.shape != real_rates.shape:
        raise ValueError(
            f"sim and real must be flat and of equal length (one rate per policy); got shapes "
            f"{sim_rates.shape} and {real_rates.shape}"
        )
    if len(sim_rates) < 2:
        raise ValueError(f"ranking metrics need at least 2 policies, got {len(sim_rates)}")
    if not (np.all(np.isfinite(sim_rates)) and np.all(np.isfinite(real_rates))):
        raise ValueError("success rates must be finite numbers; a NaN usually means a policy had no episodes")
    return sim_rates, real_rates


def mmrv(sim: SuccessRates, real: SuccessRates) -> float:
    """Mean maximum rank violation of the simulated rates against the real ones (0 is a perfect ranking)."""
    sim_rates, real_rates = _aligned_rates(sim, real)
    return float(_mmrv_rows(sim_rates[None], real_rates)[0])


def pearson_r(sim: SuccessRates, real: SuccessRates) -> float:
    """Pearson correlation of simulated and real rates, computed the way SIMPLER computes it."""
    sim_rates, real_rates = _aligned_rates(sim, real)
    return float(_pearson_rows(sim_rates[None], real_rates)[0])


def _mmrv_rows(sim: np.ndarray, real: np.ndarray) -> np.ndarray:
    """MMRV of every row of ``sim`` (draws x policies) against ``real`` (policies,)."""
    sim_ahead = sim[:, :, None] > sim[:, None, :]
    real_ahead = real[:, None] > real[None, :]
    real_gaps = np.abs(real[:, None] - real[None, :])
    return np.where(sim_ahead != real_ahead, real_gaps, 0.0).max(axis=2).mean(axis=1)


def _pearson_rows(sim: np.ndarray, real: np.ndarray) -> np.ndarray:
    """SIMPLER's Pearson r of every row of ``sim`` (draws x policies) against ``real`` (policies,)."""
    sim_centred = sim - sim.mean(axis=1, keepdims=True)
    real_centred = real - real.mean()
    denominator = np.sqrt(np.sum(sim_centred**2, axis=1) * np.sum(real_centred**2)) + 1e-8
    correlation = np.sum(sim_centred * real_centred, axis=1) / denominator
    return np.where(np.all(sim_centred == real_centred, axis=1), 1.0, correlation)


def bootstrap_ci(
    successes: Sequence[bool] | np.ndarray, n_boot: int = 10_000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap ``(low, high)`` interval of a success rate at confidence ``1 - alpha``, treating
    the episodes as independent (resamples from `bootstrap_rates`). Episodes that repeat trials over seeds or
    styles are not independent: use `cluster_bootstrap_ci` for those."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    boot_means = bootstrap_rates(successes, n_boot, np.random.default_rng(seed))
    low, high = np.quantile(boot_means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_rates(successes: Sequence[bool] | np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` bootstrap resamples of a success rate (float (n_boot,)), drawn from ``rng``.

    For 0/1 outcomes, the mean of a resample with replacement of n trials is Binomial(n, rate) / n, so the
    bootstrap means are drawn from that distribution directly (same distribution, no (n_boot, n) array).
    """
    outcomes = np.asarray(successes, dtype=np.float64).ravel()
    if outcomes.size == 0:
        raise ValueError("bootstrap_ci needs at least one episode outcome")
    if not np.all((outcomes == 0) | (outcomes == 1)):
        raise ValueError("successes must be 0/1 or booleans, one per episode")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    return rng.binomial(outcomes.size, outcomes.mean(), size=n_boot) / outcomes.size


@dataclass(frozen=True)
class _Strata:
    """One policy's rate groups as per-trial success counts and episode counts."""

    successes: tuple[np.ndarray, ...]
    episodes: tuple[np.ndarray, ...]

    @classmethod
    def parse(cls, strata: Sequence[TrialOutcomes], label: str = "the policy") -> _Strata:
        if isinstance(strata, np.ndarray) or not strata or not all(isinstance(s, Sequence | np.ndarray) for s in strata):
            raise ValueError(
                f"{label}: give a list of rate groups, each a list of per-trial 0/1 outcome arrays, e.g. "
                "[open_trials] or [open_trials, close_trials]"
            )
        successes, episodes = [], []
        for stratum in strata:
            if len(stratum) == 0:
                raise ValueError(f"{label}: a rate group holds no trials; drop it or add its trials' outcomes")
            trials = [np.asarray(trial, dtype=np.float64).ravel() for trial in stratum]
            if any(trial.size == 0 for trial in trials):
                raise ValueError(f"{label}: every trial needs at least one episode outcome")
            if not all(np.all((trial == 0) | (trial == 1)) for trial in trials):
                raise ValueError(f"{label}: outcomes must be 0/1 or booleans, one per episode")
            successes.append(np.array([trial.sum() for trial in trials]))
            episodes.append(np.array([trial.size for trial in trials], dtype=np.float64))
        return cls(tuple(successes), tuple(episodes))

    @property
    def rate(self) -> float:
        return float(np.mean([s.sum() / n.sum() for s, n in zip(self.successes, self.episodes)]))

    def resampled(self) -> list[np.ndarray]:
        """The trial indices of the strata with two or more trials: what the bootstrap resamples. A stratum
        of one trial keeps its rate in every draw (there is no between-trial spread to resample)."""
        return [np.arange(s.size) for s in self.successes if s.size > 1]

    def draw_rates(self, samples: Sequence[np.ndarray]) -> np.ndarray:
        """The policy's rate for each draw, given the resampled trial indices (draws x trials) of the
        strata that `resampled` lists, in its order."""
        samples = iter(samples)
        rates = []
        for successes, episodes in zip(self.successes, self.episodes):
            if successes.size > 1:
                indices = next(samples)
                rates.append(successes[indices].sum(axis=-1) / episodes[indices].sum(axis=-1))
            else:
                rates.append(successes[0] / episodes[0])
        return np.mean(np.broadcast_arrays(*rates), axis=0)


def trial_rate(strata: Sequence[TrialOutcomes]) -> float:
    """A policy's success rate from its rate groups: each group's successes over its episodes, averaged over
    the groups (``[open_trials, close_trials]`` gives SIMPLER's open/close average)."""
    return _Strata.parse(strata).rate


def cluster_bootstrap_ci(
    strata: Sequence[TrialOutcomes], n_boot: int = 10_000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile cluster-bootstrap ``(low, high)`` interval of `trial_rate` at confidence ``1 - alpha``:
    each draw resamples the trials of every rate group with replacement, keeping each trial's episodes
    together. Equal inputs and ``seed`` give equal intervals."""
    parsed = _Strata.parse(strata)
    samples = parsed.resampled()
    if not samples:
        return parsed.rate, parsed.rate
    result = _percentile_bootstrap(samples, parsed.draw_rates, n_boot, alpha, seed)
    low, high = result.confidence_interval
    return float(low), float(high)


@dataclass(frozen=True)
class AgreementInterval:
    """Percentile bootstrap intervals of MMRV and Pearson r, and the values on the data as given."""

    mmrv: float
    pearson_r: float
    mmrv_interval: tuple[float, float]
    pearson_r_interval: tuple[float, float]


def agreement_bootstrap(
    sim: Mapping[str, Sequence[TrialOutcomes]],
    real: Mapping[str, float],
    n_boot: int = 10_000,
    alpha: float = 0.05,
    seed: int = 0,
) -> AgreementInterval:
    """MMRV and Pearson r of the policies' simulated rates (`trial_rate` of each policy's rate groups)
    against their real rates, with percentile bootstrap intervals: each draw resamples the trials of every
    policy independently (within each rate group) and recomputes both metrics."""
    if not isinstance(sim, Mapping) or not isinstance(real, Mapping):
        raise TypeError("sim and real must be dicts keyed by policy name (sim: rate groups, real: rates)")
    parsed = {name: _Strata.parse(strata, f"policy {name!r}") for name, strata in sim.items()}
    point_sim = {name: strata.rate for name, strata in parsed.items()}
    sim_rates, real_rates = _aligned_rates(point_sim, real)
    names = list(point_sim)
    policies = [parsed[name] for name in names]
    value = AgreementInterval(float(_mmrv_rows(sim_rates[None], real_rates)[0]),
                              float(_pearson_rows(sim_rates[None], real_rates)[0]), (0.0, 0.0), (0.0, 0.0))
    samples, sample_counts = [], []
    for policy in policies:
        resampled = policy.resampled()
        samples += resampled
        sample_counts.append(len(resampled))
    if not samples:
        return AgreementInterval(value.mmrv, value.pearson_r, (value.mmrv, value.mmrv),
                                 (value.pearson_r, value.pearson_r))

    def metrics(drawn: Sequence[np.ndarray]) -> np.ndarray:
        columns, start = [], 0
        for policy, count in zip(policies, sample_counts):
            columns.append(policy.draw_rates(drawn[start : start + count]))
            start += count
        draws = np.stack(np.broadcast_arrays(*columns), axis=-1)  # (..., policies)
        flat = draws.reshape(-1, len(policies))
        return np.stack([_mmrv_rows(flat, real_rates), _pearson_rows(flat, real_rates)]).reshape(
            2, *draws.shape[:-1])

    result = _percentile_bootstrap(samples, metrics, n_boot, alpha, seed)
    low, high = result.confidence_interval
    return AgreementInterval(value.mmrv, value.pearson_r, (float(low[0]), float(high[0])),
                             (float(low[1]), float(high[1])))


def _percentile_bootstrap(samples: list[np.ndarray], statistic, n_boot: int, alpha: float, seed: int):
    """`scipy.stats.bootstrap` over independent ``samples`` (trial indices), percentile method.

    ``statistic`` takes the list of resampled index arrays (each ``(..., trials)``) and returns the statistic
    of every draw."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    return stats.bootstrap(
        tuple(samples),
        lambda *drawn, axis=-1: statistic(drawn),
        n_resamples=n_boot,
        vectorized=True,
        paired=False,
        axis=-1,
        confidence_level=1 - alpha,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
