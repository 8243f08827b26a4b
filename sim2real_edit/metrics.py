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

Paired domains: where every domain (unedited, edited, ceiling, floor, ...) and the reference real world run
the same trials at the same reset seeds (`PairedOutcomes`), `joint_bootstrap` draws one set of trial indices
per draw (within open and within close trials) and applies it to every policy and every domain, so trial
difficulty that sim and real share cancels. The reference is a domain of the same episodes or a table of rates measured
elsewhere (the real-world table), whose rates each draw redraws as Binomial(trials, rate) / trials from the
table's trial counts (or takes as exact, ``reference_exact``). It reports per domain and column (`COLUMNS`) the MAE of the
per-policy rates, paired episode agreement, MMRV, Pearson r (undefined where rates are constant) and the
ties behind MMRV, plus each domain's differences to a baseline domain over the same draws. `rate_interval` is
the cluster bootstrap's interval of a rate, or an exact Clopper-Pearson one where that bootstrap is degenerate
(0/n, n/n, every trial alike, one trial), so that no rate is reported as known exactly. `power_of_gap`
simulates experiments from pilot data to say how many trials detect a domain that closes part of the gap.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

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
    """MMRV of every row of ``sim`` (..., policies) against ``real``, which broadcasts against it: one
    reference row (policies,) for all draws, or one per draw. Reduces the last axis."""
    sim_ahead = sim[..., :, None] > sim[..., None, :]
    real_ahead = real[..., :, None] > real[..., None, :]
    real_gaps = np.abs(real[..., :, None] - real[..., None, :])
    return np.where(sim_ahead != real_ahead, real_gaps, 0.0).max(axis=-1).mean(axis=-1)


def _pearson_rows(sim: np.ndarray, real: np.ndarray) -> np.ndarray:
    """SIMPLER's Pearson r of every row of ``sim`` (..., policies) against ``real``, which broadcasts
    against it: one reference row (policies,) for all draws, or one per draw. Reduces the last axis."""
    sim_centred = sim - sim.mean(axis=-1, keepdims=True)
    real_centred = real - real.mean(axis=-1, keepdims=True)
    denominator = np.sqrt(np.sum(sim_centred**2, axis=-1) * np.sum(real_centred**2, axis=-1)) + 1e-8
    correlation = np.sum(sim_centred * real_centred, axis=-1) / denominator
    return np.where(np.all(sim_centred == real_centred, axis=-1), 1.0, correlation)


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


def clopper_pearson(successes: float, n: float, alpha: float = 0.05) -> tuple[float, float]:
    """The exact (Clopper-Pearson) ``(low, high)`` interval of a binomial rate: 0 of 27 gives about
    (0, 0.128). Fractional ``successes`` (a rate times its units) use the same beta quantiles."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    low = 0.0 if successes == 0 else float(stats.beta.ppf(alpha / 2, successes, n - successes + 1))
    high = 1.0 if successes == n else float(stats.beta.ppf(1 - alpha / 2, successes + 1, n - successes))
    return low, high


def wilson_interval(successes: float, n: float, alpha: float = 0.05) -> tuple[float, float]:
    """The Wilson score ``(low, high)`` interval of a binomial rate (never collapses at 0/n or n/n)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    z = float(stats.norm.ppf(1 - alpha / 2))
    rate = successes / n
    centre = (rate + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(rate * (1 - rate) / n + z**2 / (4 * n**2))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


@dataclass(frozen=True)
class RateInterval:
    """A success rate's interval and how it was formed: ``"cluster bootstrap"`` (trials resampled), or
    ``"Clopper-Pearson"`` where the bootstrap is degenerate (see `rate_interval`) over ``units``."""

    low: float
    high: float
    method: str
    units: int


def rate_interval(
    strata: Sequence[TrialOutcomes], n_boot: int = 10_000, alpha: float = 0.05, seed: int = 0,
    independent_episodes: int | None = None,
) -> RateInterval:
    """`trial_rate`'s interval: the cluster bootstrap (`cluster_bootstrap_ci`) where it can vary, else an exact
    Clopper-Pearson interval, so that no rate is reported as known exactly.

    The bootstrap is degenerate where every draw gives the same rate (0/n, n/n, or every trial alike) or a rate
    group has one trial (nothing to resample). Clopper-Pearson then counts as units the trials (a trial's episodes
    are correlated, so this is the cautious count), or, where a rate group has one trial, the episodes -
    ``independent_episodes`` of them where given (episodes that repeat one another count once)."""
    parsed = _Strata.parse(strata)
    low, high = cluster_bootstrap_ci(strata, n_boot=n_boot, alpha=alpha, seed=seed)
    single_trial = any(successes.size == 1 for successes in parsed.successes)
    if low < high and not single_trial:
        return RateInterval(low, high, "cluster bootstrap", sum(s.size for s in parsed.successes))
    if single_trial:
        units = int(sum(episodes.sum() for episodes in parsed.episodes))
        if independent_episodes is not None:
            units = max(1, min(units, int(independent_episodes)))
    else:
        units = int(sum(s.size for s in parsed.successes))
    rate = parsed.rate
    low, high = clopper_pearson(rate * units, units, alpha)
    return RateInterval(low, high, "Clopper-Pearson", units)


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


# --- Paired domains: one joint trial bootstrap for every policy and every domain -------------------------

#: The rate columns of the paired report: open trials, close trials, and SIMPLER's open/close average.
COLUMNS = ("open", "close", "average")
_ACTIONS = ("open", "close")
_DIFFERENCE_METRICS = ("mae", "mmrv", "pearson_r")

Interval = tuple[float, float]


@dataclass(frozen=True)
class PairedOutcomes:
    """0/1 outcomes of policies x domains on shared trials.

    ``outcomes[domain][policy]`` is a (trials, repeats) array; entry ``[i, k]`` is the episode of trial i
    (a task at a start pose, whose action ``trial_actions[i]`` is "open" or "close") at reset seed k, and it
    is the same start state in every domain and for every policy. The arrays are stored as read-only float
    copies; policies keep the order of the first domain."""

    trial_actions: tuple[str, ...]
    outcomes: Mapping[str, Mapping[str, np.ndarray]]

    def __post_init__(self) -> None:
        actions = tuple(self.trial_actions)
        unknown = sorted({action for action in actions if action not in _ACTIONS})
        if unknown:
            raise ValueError(f"trial_actions must each be 'open' or 'close'; got {unknown}")
        missing = [action for action in _ACTIONS if action not in actions]
        if missing:
            raise ValueError(
                f"trial_actions hold no {missing[0]!r} trial; the open, close and average columns need at "
                "least one trial of each action"
            )
        if not isinstance(self.outcomes, Mapping) or not self.outcomes:
            raise ValueError(
                "outcomes must be a non-empty dict: outcomes[domain][policy] -> (trials, repeats)"
            )
        domains = list(self.outcomes)
        policies = list(self.outcomes[domains[0]])
        if len(policies) < 2:
            raise ValueError(
                f"ranking metrics need at least 2 policies, got {len(policies)} in {domains[0]!r}"
            )
        normalised: dict[str, dict[str, np.ndarray]] = {}
        shape: tuple[int, ...] | None = None
        for domain in domains:
            by_policy = self.outcomes[domain]
            if not isinstance(by_policy, Mapping) or set(by_policy) != set(policies):
                found = sorted(by_policy) if isinstance(by_policy, Mapping) else type(by_policy).__name__
                raise ValueError(
                    f"domain {domain!r} must hold the same policies as {domains[0]!r} ({sorted(policies)}); "
                    f"got {found}. Evaluate every policy in every domain, or drop the policy everywhere."
                )
            normalised[domain] = {}
            for policy in policies:
                array = np.array(by_policy[policy], dtype=np.float64)
                label = f"outcomes[{domain!r}][{policy!r}]"
                if array.ndim != 2 or array.shape[0] != len(actions) or array.shape[1] < 1:
                    raise ValueError(
                        f"{label} must be (trials, repeats) = ({len(actions)}, seeds), one row per trial of "
                        f"trial_actions; got shape {array.shape}"
                    )
                if shape is not None and array.shape != shape:
                    raise ValueError(
                        f"{label} has shape {array.shape} but others have {shape}: every domain and policy "
                        "must hold the same trials and reset seeds (paired episodes)"
                    )
                shape = array.shape
                if not np.all((array == 0) | (array == 1)):
                    raise ValueError(f"{label} must hold 0/1 or boolean episode outcomes")
                array.setflags(write=False)
                normalised[domain][policy] = array
        object.__setattr__(self, "trial_actions", actions)
        object.__setattr__(self, "outcomes", normalised)

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.outcomes)

    @property
    def policies(self) -> tuple[str, ...]:
        return tuple(next(iter(self.outcomes.values())))

    @property
    def repeats(self) -> int:
        return next(iter(next(iter(self.outcomes.values())).values())).shape[1]

    def stacked(self) -> np.ndarray:
        """All outcomes as one float array (domains, policies, trials, repeats), in `domains` x `policies`
        order."""
        return np.array(
            [[self.outcomes[domain][policy] for policy in self.policies] for domain in self.domains]
        )


def _json_number(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def _json_interval(interval: Interval | None) -> list[float | None] | None:
    return None if interval is None else [_json_number(bound) for bound in interval]


@dataclass(frozen=True)
class PolicyGap:
    """One policy's rate in a domain and in the reference, and |difference| with its interval."""

    rate: float
    reference_rate: float
    abs_gap: float
    abs_gap_interval: Interval

    def to_json(self) -> dict:
        return {
            "rate": _json_number(self.rate),
            "reference_rate": _json_number(self.reference_rate),
            "abs_gap": _json_number(self.abs_gap),
            "abs_gap_interval": _json_interval(self.abs_gap_interval),
        }


@dataclass(frozen=True)
class ColumnAgreement:
    """A domain against the reference in one column: values on the data as given, joint-bootstrap intervals.

    ``pearson_r`` is NaN where either side's rates are constant across policies; its interval is over the
    draws where it is defined (None if none is) and ``pearson_r_undefined_share`` is the share of draws
    where it is not. ``ties`` counts the policy pairs tied in the domain but strictly ordered in the
    reference (``tied_pairs`` names them): under strict comparisons each tie is a rank violation."""

    mae: float
    mae_interval: Interval
    agreement: float
    agreement_interval: Interval
    mmrv: float
    mmrv_interval: Interval
    pearson_r: float
    pearson_r_interval: Interval | None
    pearson_r_undefined_share: float
    ties: int
    tied_pairs: tuple[tuple[str, str], ...]
    per_policy: dict[str, PolicyGap]

    def to_json(self) -> dict:
        return {
            "mae": _json_number(self.mae),
            "mae_interval": _json_interval(self.mae_interval),
            "agreement": _json_number(self.agreement),
            "agreement_interval": _json_interval(self.agreement_interval),
            "mmrv": _json_number(self.mmrv),
            "mmrv_interval": _json_interval(self.mmrv_interval),
            "pearson_r": _json_number(self.pearson_r),
            "pearson_r_interval": _json_interval(self.pearson_r_interval),
            "pearson_r_undefined_share": float(self.pearson_r_undefined_share),
            "ties": int(self.ties),
            "tied_pairs": [list(pair) for pair in self.tied_pairs],
            "per_policy": {name: gap.to_json() for name, gap in self.per_policy.items()},
        }


@dataclass(frozen=True)
class DomainAgreement:
    """How one domain agrees with the reference, per column (`COLUMNS`)."""

    domain: str
    columns: dict[str, ColumnAgreement]

    def to_json(self) -> dict:
        return {
            "domain": self.domain,
            "columns": {name: column.to_json() for name, column in self.columns.items()},
        }


@dataclass(frozen=True)
class Difference:
    """``metric(domain) - metric(versus)`` in one column, on the data and over the same bootstrap draws.

    For pearson_r the interval is over the draws where both are defined (None if none is), and
    ``undefined_share`` is the share of draws where either r is undefined (0 for MAE and MMRV)."""

    domain: str
    versus: str
    metric: str
    column: str
    value: float
    interval: Interval | None
    undefined_share: float = 0.0

    def to_json(self) -> dict:
        return {
            "domain": self.domain,
            "versus": self.versus,
            "metric": self.metric,
            "column": self.column,
            "value": _json_number(self.value),
            "interval": _json_interval(self.interval),
            "undefined_share": float(self.undefined_share),
        }


@dataclass(frozen=True)
class JointBootstrap:
    """Every domain against the reference, and every domain against the baseline, from one set of draws."""

    reference: str
    baseline: str
    domains: dict[str, DomainAgreement]
    differences: list[Difference]
    n_boot: int
    alpha: float
    trials: int
    episodes_per_policy: int
    #: How the reference's rates vary over the draws: "paired episodes" (a domain, resampled with the trials),
    #: "binomial" (a table, redrawn from its trial counts) or "exact" (a table taken as exact).
    reference_draws: str = "paired episodes"

    def to_json(self) -> dict:
        return {
            "reference": self.reference,
            "baseline": self.baseline,
            "domains": [agreement.to_json() for agreement in self.domains.values()],
            "differences": [difference.to_json() for difference in self.differences],
            "n_boot": self.n_boot,
            "alpha": self.alpha,
            "trials": self.trials,
            "episodes_per_policy": self.episodes_per_policy,
            "reference_draws": self.reference_draws,
        }


class ReferenceRow(Protocol):
    """A reference measured elsewhere: a policy's open and close rates and the trials behind each
    (`sim2real_edit.real_world.RealWorldSuccess` is one)."""

    open: float
    close: float

    def trials_for(self, task: str) -> int: ...


def _table_rate_draws(
    table: Mapping[str, ReferenceRow], policies: Sequence[str], n_boot: int, rng: np.random.Generator, exact: bool
) -> dict[str, np.ndarray]:
    """Per column, the table's rates (policies, 1 + n_boot): column 0 as given, the others redrawn as
    Binomial(trials, rate) / trials per task (or as given, if ``exact``). The average column of a draw is formed
    on the common denominator, so equal counts give bit-equal averages (ties stay ties)."""
    missing = [policy for policy in policies if policy not in table]
    if missing:
        raise ValueError(f"the reference table has no rates for {missing}; add their rows or drop the policies")
    given = {task: np.array([float(getattr(table[p], task)) for p in policies]) for task in _ACTIONS}
    trials = {task: np.array([int(table[p].trials_for(task)) for p in policies]) for task in _ACTIONS}
    for task in _ACTIONS:
        if np.any((given[task] < 0) | (given[task] > 1)) or np.any(trials[task] < 1):
            raise ValueError(f"reference {task} rates must lie in [0, 1] and rest on at least 1 trial each")
    given["average"] = (given["open"] + given["close"]) / 2
    if exact:  # every draw is the data as given, bit for bit
        drawn = {column: np.repeat(given[column][:, None], n_boot, axis=1) for column in COLUMNS}
    else:
        counts = {task: rng.binomial(trials[task][:, None], given[task][:, None], size=(len(policies), n_boot))
                  for task in _ACTIONS}
        n_open, n_close = trials["open"][:, None], trials["close"][:, None]
        drawn = {
            "open": counts["open"] / n_open,
            "close": counts["close"] / n_close,
            "average": (counts["open"] * n_close + counts["close"] * n_open) / (2 * n_open * n_close),
        }
    return {column: np.concatenate([given[column][:, None], drawn[column]], axis=1) for column in COLUMNS}


def _stratified_trial_weights(
    actions: tuple[str, ...], n_boot: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per action, how often each trial enters each draw: int (1 + n_boot, trials) counts. Row 0 is the data
    as given (each of the action's trials once); every other row resamples the action's trials with
    replacement. A count of 0 keeps the other action's trials out of the column."""
    weights = {}
    action_array = np.array(actions)
    for action in _ACTIONS:
        members = np.flatnonzero(action_array == action)
        drawn = rng.choice(members, size=(n_boot, members.size), replace=True)
        flat = (np.arange(n_boot)[:, None] * len(actions) + drawn).ravel()
        counts = np.bincount(flat, minlength=n_boot * len(actions)).reshape(n_boot, len(actions))
        given = np.zeros((1, len(actions)), dtype=counts.dtype)
        given[0, members] = 1
        weights[action] = np.concatenate([given, counts])
    return weights


def _column_rates(
    successes: np.ndarray, weights: dict[str, np.ndarray], repeats: int
) -> dict[str, np.ndarray]:
    """Rates (..., 1 + n_boot) per column from integer per-trial counts (..., trials).

    Each column divides exact integer counts by one denominator, so equal counts give bit-equal rates: ties
    stay ties (the average is formed on the common denominator, not as a float mean of two rates)."""
    n_open, n_close = int(weights["open"][0].sum()), int(weights["close"][0].sum())
    open_counts, close_counts = successes @ weights["open"].T, successes @ weights["close"].T
    return {
        "open": open_counts / (n_open * repeats),
        "close": close_counts / (n_close * repeats),
        "average": (open_counts * n_close + close_counts * n_open) / (2 * n_open * n_close * repeats),
    }


def _percentile_intervals(draws: np.ndarray, alpha: float) -> np.ndarray:
    """Percentile bounds (2, ...) over the last axis of ``draws``, ignoring NaN draws; NaN where no draw is
    defined."""
    bounds = [alpha / 2, 1 - alpha / 2]
    if not np.isnan(draws).any():
        return np.quantile(draws, bounds, axis=-1)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: reported as an undefined interval
        return np.nanquantile(draws, bounds, axis=-1)


def _interval(bounds: np.ndarray, *index: int) -> Interval | None:
    low, high = float(bounds[(0, *index)]), float(bounds[(1, *index)])
    return None if np.isnan(low) else (low, high)


def joint_bootstrap(
    paired: PairedOutcomes,
    reference: str = "real",
    baseline: str | None = "unedited",
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    *,
    reference_table: Mapping[str, ReferenceRow] | None = None,
    reference_exact: bool = False,
) -> JointBootstrap:
    """Every domain's agreement with ``reference`` and its differences to ``baseline``, with percentile
    intervals from one joint trial bootstrap.

    One draw resamples the trial indices with replacement within each action (open among open, close among
    close) and uses the same indices for every policy and every domain, the reference included, so trial
    difficulty shared by sim and real cancels instead of widening the intervals. Per draw and column:
    per-policy rates, |rate - reference rate| and their mean over policies (MAE), the share of paired
    episodes (trial, seed) with the reference's outcome (average column: the mean of open and close),
    MMRV and Pearson r against the reference's rates of that draw. Values are on the data as given.

    The reference is either a domain of ``paired`` (its episodes resampled with the rest) or, with
    ``reference_table``, rates measured elsewhere (policy -> a row with ``open``, ``close`` and
    ``trials_for(task)``, e.g. `sim2real_edit.real_world.RealWorldSuccess`) named ``reference``. Each draw then
    redraws every policy's table rates as Binomial(trials, rate) / trials (independently of the trial
    resampling and of each other: the real trials are other episodes), unless ``reference_exact``, which takes
    them as exact. A table reference has no paired episodes, so episode agreement is NaN (interval None).
    ``baseline=None``: no differences."""
    domains = paired.domains
    if reference_table is None and reference not in domains:
        raise ValueError(f"reference domain {reference!r} is not among the outcomes' domains {list(domains)}")
    if reference_table is not None and reference in domains:
        raise ValueError(f"the table reference {reference!r} has the name of a domain; name it otherwise")
    if baseline is not None and baseline not in domains:
        raise ValueError(f"baseline domain {baseline!r} is not among the outcomes' domains {list(domains)}")
    if reference == baseline:
        raise ValueError(f"reference and baseline must differ; both are {reference!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")

    policies = paired.policies
    outcomes = paired.stacked().astype(np.int64)  # (domains, policies, trials, repeats)
    repeats = paired.repeats
    rng = np.random.default_rng(seed)
    weights = _stratified_trial_weights(paired.trial_actions, n_boot, rng)

    # Every array below has draws on its last axis (or second last, before policies); index 0 is the data.
    rates = _column_rates(outcomes.sum(axis=-1), weights, repeats)  # column -> (domains, policies, draws)
    if reference_table is None:
        reference_index = domains.index(reference)
        same_as_reference = (outcomes == outcomes[reference_index]).sum(axis=(1, 3))  # (domains, trials)
        agreement = {
            action: same_as_reference @ weights[action].T / (weights[action][0].sum() * repeats * len(policies))
            for action in _ACTIONS
        }
        agreement["average"] = (agreement["open"] + agreement["close"]) / 2
    else:
        # The table's rates (drawn after the trial weights, so exact and binomial runs share the sim draws) go in
        # as one more row of every rate array, after the domains.
        table_rates = _table_rate_draws(reference_table, policies, n_boot, rng, exact=reference_exact)
        rates = {column: np.concatenate([rates[column], table_rates[column][None]]) for column in COLUMNS}
        reference_index = len(domains)
        agreement = dict.fromkeys(COLUMNS, np.full((len(domains) + 1, n_boot + 1), np.nan))
    baseline_index = None if baseline is None else domains.index(baseline)

    metrics: dict[
        str, dict[str, np.ndarray]
    ] = {}  # column -> metric -> (domains, draws), abs_gaps with policies
    for column in COLUMNS:
        domain_rates = np.moveaxis(rates[column], 1, -1)  # (domains, draws, policies)
        reference_rates = domain_rates[reference_index]
        constant = (np.ptp(domain_rates, axis=-1) == 0) | (np.ptp(reference_rates, axis=-1) == 0)
        abs_gaps = np.abs(domain_rates - reference_rates)
        metrics[column] = {
            "abs_gaps": np.moveaxis(abs_gaps, 1, -1),  # (domains, policies, draws)
            "mae": abs_gaps.mean(axis=-1),
            "agreement": agreement[column],
            "mmrv": _mmrv_rows(domain_rates, reference_rates),
            "pearson_r": np.where(constant, np.nan, _pearson_rows(domain_rates, reference_rates)),
        }
    bounds = {
        column: {name: _percentile_intervals(values[..., 1:], alpha) for name, values in by_metric.items()}
        for column, by_metric in metrics.items()
    }

    results: dict[str, DomainAgreement] = {}
    for d, domain in enumerate(domains):
        if domain == reference:
            continue
        columns = {}
        for column in COLUMNS:
            values, intervals = metrics[column], bounds[column]
            given_rates, given_reference = rates[column][d, :, 0], rates[column][reference_index, :, 0]
            tied_pairs = tuple(
                (policies[i], policies[j])
                for i in range(len(policies))
                for j in range(i + 1, len(policies))
                if given_rates[i] == given_rates[j] and given_reference[i] != given_reference[j]
            )
            columns[column] = ColumnAgreement(
                mae=float(values["mae"][d, 0]),
                mae_interval=_interval(intervals["mae"], d),
                agreement=float(values["agreement"][d, 0]),
                agreement_interval=_interval(intervals["agreement"], d),
                mmrv=float(values["mmrv"][d, 0]),
                mmrv_interval=_interval(intervals["mmrv"], d),
                pearson_r=float(values["pearson_r"][d, 0]),
                pearson_r_interval=_interval(intervals["pearson_r"], d),
                pearson_r_undefined_share=float(np.mean(np.isnan(values["pearson_r"][d, 1:]))),
                ties=len(tied_pairs),
                tied_pairs=tied_pairs,
                per_policy={
                    policy: PolicyGap(
                        rate=float(given_rates[p]),
                        reference_rate=float(given_reference[p]),
                        abs_gap=float(values["abs_gaps"][d, p, 0]),
                        abs_gap_interval=_interval(intervals["abs_gaps"], d, p),
                    )
                    for p, policy in enumerate(policies)
                },
            )
        results[domain] = DomainAgreement(domain, columns)

    compared = [d for d, domain in enumerate(domains) if domain not in (reference, baseline)]
    differences = []
    for metric in _DIFFERENCE_METRICS if baseline_index is not None else ():
        for column in COLUMNS:
            gaps = metrics[column][metric][compared] - metrics[column][metric][baseline_index]
            gap_bounds = _percentile_intervals(gaps[:, 1:], alpha)
            differences += [
                Difference(
                    domains[d], baseline, metric, column, float(gaps[row, 0]), _interval(gap_bounds, row),
                    undefined_share=float(np.mean(np.isnan(gaps[row, 1:]))),
                )
                for row, d in enumerate(compared)
            ]
    differences.sort(key=lambda difference: compared.index(domains.index(difference.domain)))

    return JointBootstrap(
        reference=reference,
        baseline=baseline,
        domains=results,
        differences=differences,
        n_boot=n_boot,
        alpha=alpha,
        trials=len(paired.trial_actions),
        episodes_per_policy=len(paired.trial_actions) * repeats,
        reference_draws=("paired episodes" if reference_table is None else "exact" if reference_exact
                         else "binomial"),
    )


@dataclass(frozen=True)
class GapPower:
    """How often an experiment of ``trials`` trials detects a domain that closes ``share_closed`` of the gap.

    ``power`` is the share of simulated experiments whose interval of (baseline MAE - candidate MAE) lies
    entirely above 0. The MAEs are the pilot's (baseline, ceiling) and the simulated candidate's mean."""

    power: float
    baseline_mae: float
    ceiling_mae: float
    candidate_mae: float
    share_closed: float
    trials: int
    simulations: int

    def to_json(self) -> dict:
        return {
            name: _json_number(value) if isinstance(value, float) else value
            for name, value in self.__dict__.items()
        }


def power_of_gap(
    pilot: PairedOutcomes,
    ceiling: str = "ceiling",
    baseline: str = "unedited",
    reference: str = "real",
    share_closed: float = 0.5,
    trials_per_action: int | None = None,
    column: str = "average",
    n_simulations: int = 200,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> GapPower:
    """The power of the joint bootstrap to show that a domain beats ``baseline`` in MAE, from pilot data.

    Each simulated experiment draws ``trials_per_action`` trials per action from the pilot's (default: as
    many as the pilot has), keeps their episodes in every domain, and builds a candidate domain whose every
    episode is the ceiling's with probability ``share_closed`` and the baseline's otherwise (so its rates sit
    that share of the way from the baseline to the ceiling). The experiment detects the candidate when the
    `joint_bootstrap` interval of (candidate MAE - baseline MAE) in ``column`` lies below 0."""
    for role, name in (("ceiling", ceiling), ("baseline", baseline), ("reference", reference)):
        if name not in pilot.domains:
            raise ValueError(f"{role} domain {name!r} is not among the pilot's domains {list(pilot.domains)}")
    if len({ceiling, baseline, reference}) < 3:
        raise ValueError(
            f"ceiling, baseline and reference must be three different domains; got "
            f"{ceiling!r}, {baseline!r}, {reference!r}"
        )
    if not 0 < share_closed <= 1:
        raise ValueError(f"share_closed must lie in (0, 1], got {share_closed}")
    if column not in COLUMNS:
        raise ValueError(f"column must be one of {COLUMNS}, got {column!r}")
    if n_simulations < 1:
        raise ValueError(f"n_simulations must be at least 1, got {n_simulations}")
    if trials_per_action is not None and trials_per_action < 1:
        raise ValueError(
            f"trials_per_action must be at least 1 (or None for the pilot's), got {trials_per_action}"
        )

    rng = np.random.default_rng(seed)
    actions = np.array(pilot.trial_actions)
    members = {action: np.flatnonzero(actions == action) for action in _ACTIONS}
    sizes = {action: trials_per_action or group.size for action, group in members.items()}
    candidate = "candidate"
    pilot_result = joint_bootstrap(
        pilot, reference=reference, baseline=baseline, n_boot=1, alpha=alpha, seed=seed
    )

    detected, candidate_maes = 0, []
    for simulation in range(n_simulations):
        trials = np.concatenate([rng.choice(members[action], size=sizes[action]) for action in _ACTIONS])
        drawn = {
            domain: {policy: pilot.outcomes[domain][policy][trials] for policy in pilot.policies}
            for domain in (reference, baseline, ceiling)
        }
        drawn[candidate] = {
            policy: np.where(rng.random(outcomes.shape) < share_closed, drawn[ceiling][policy], outcomes)
            for policy, outcomes in drawn[baseline].items()
        }
        experiment = PairedOutcomes(tuple(actions[trials]), drawn)
        result = joint_bootstrap(
            experiment,
            reference=reference,
            baseline=baseline,
            n_boot=n_boot,
            alpha=alpha,
            seed=seed + simulation + 1,
        )
        difference = next(
            d
            for d in result.differences
            if d.domain == candidate and d.metric == "mae" and d.column == column
        )
        detected += difference.interval is not None and difference.interval[1] < 0
        candidate_maes.append(result.domains[candidate].columns[column].mae)

    return GapPower(
        power=detected / n_simulations,
        baseline_mae=pilot_result.domains[baseline].columns[column].mae,
        ceiling_mae=pilot_result.domains[ceiling].columns[column].mae,
        candidate_mae=float(np.mean(candidate_maes)),
        share_closed=float(share_closed),
        trials=sum(sizes.values()),
        simulations=n_simulations,
    )
