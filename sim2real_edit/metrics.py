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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

SuccessRates = Mapping[str, float] | Sequence[float] | np.ndarray


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
    sim_ahead = sim_rates[:, None] > sim_rates[None, :]
    real_ahead = real_rates[:, None] > real_rates[None, :]
    real_gaps = np.abs(real_rates[:, None] - real_rates[None, :])
    max_violations = np.where(sim_ahead != real_ahead, real_gaps, 0.0).max(axis=1)
    return float(max_violations.mean())


def pearson_r(sim: SuccessRates, real: SuccessRates) -> float:
    """Pearson correlation of simulated and real rates, computed the way SIMPLER computes it."""
    sim_rates, real_rates = _aligned_rates(sim, real)
    sim_centred = sim_rates - sim_rates.mean()
    real_centred = real_rates - real_rates.mean()
    if np.all(sim_centred == real_centred):
        return 1.0
    denominator = np.sqrt(np.sum(sim_centred**2) * np.sum(real_centred**2)) + 1e-8
    return float(np.sum(sim_centred * real_centred) / denominator)


def bootstrap_ci(
    successes: Sequence[bool] | np.ndarray, n_boot: int = 10_000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap ``(low, high)`` interval of a success rate at confidence ``1 - alpha``
    (resamples from `bootstrap_rates`)."""
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
