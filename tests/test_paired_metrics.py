"""The joint trial bootstrap over paired domains: hand cases, shared indices, strata, undefined r, errors."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from sim2real_edit.metrics import COLUMNS, PairedOutcomes, joint_bootstrap, power_of_gap

# Three policies on two open and two close trials, one reset seed; rows are trials.
HAND_ACTIONS = ("open", "open", "close", "close")
HAND_REAL = {"A": [1, 1, 1, 0], "B": [1, 0, 0, 0], "C": [0, 0, 1, 1]}
HAND_UNEDITED = {"A": [1, 0, 1, 1], "B": [1, 0, 0, 0], "C": [0, 1, 1, 0]}


def _column(outcomes: dict[str, list[int]]) -> dict[str, np.ndarray]:
    return {policy: np.array(values)[:, None] for policy, values in outcomes.items()}


def _hand_case() -> PairedOutcomes:
    return PairedOutcomes(
        HAND_ACTIONS,
        {"real": _column(HAND_REAL), "unedited": _column(HAND_UNEDITED), "edited": _column(HAND_REAL)},
    )


def _random_paired(
    rng: np.random.Generator,
    domains: list[str],
    policies: int = 4,
    trials_per_action: int = 10,
    repeats: int = 2,
) -> tuple[tuple[str, ...], dict[str, dict[str, np.ndarray]]]:
    actions = tuple(rng.permutation(["open"] * trials_per_action + ["close"] * trials_per_action))
    outcomes = {
        domain: {f"p{p}": rng.random((len(actions), repeats)) < 0.5 for p in range(policies)}
        for domain in domains
    }
    return actions, outcomes


def test_hand_case_values_match_the_hand_computation():
    result = joint_bootstrap(_hand_case(), n_boot=200)
    unedited = result.domains["unedited"].columns
    assert set(result.domains) == {"unedited", "edited"}  # the reference is not compared with itself

    # Open: unedited rates [.5, .5, .5] against real [1, .5, 0]. Every pair is tied in sim and strict in
    # real: A violates by max(.5, 1), B by .5, C by nothing. Episodes agreeing: A 1, B 2, C 1 of 2 each.
    opening = unedited["open"]
    assert opening.mae == pytest.approx(1 / 3)
    assert opening.mmrv == pytest.approx(0.5)
    assert math.isnan(opening.pearson_r)  # constant sim rates: r is undefined
    assert opening.agreement == pytest.approx(4 / 6)
    assert opening.ties == 3
    assert opening.tied_pairs == (("A", "B"), ("A", "C"), ("B", "C"))
    assert opening.per_policy["A"].rate == 0.5 and opening.per_policy["A"].reference_rate == 1.0
    assert opening.per_policy["A"].abs_gap == 0.5 and opening.per_policy["B"].abs_gap == 0.0

    # Close: unedited [1, 0, .5] against real [.5, 0, 1]. A and C swap: each costs |.5 - 1|. Centred
    # [.5, -.5, 0] and [0, -.5, .5]: r = .25 / .5.
    closing = unedited["close"]
    assert closing.mae == pytest.approx(1 / 3)
    assert closing.mmrv == pytest.approx(1 / 3)
    assert closing.pearson_r == pytest.approx(0.5, abs=1e-7)
    assert closing.agreement == pytest.approx(4 / 6)
    assert closing.ties == 0

    # Average: [.75, .25, .5] on both sides -> a perfect match of rates, but not of episodes.
    average = unedited["average"]
    assert (average.mae, average.mmrv, average.pearson_r) == (0.0, 0.0, 1.0)
    assert average.agreement == pytest.approx(4 / 6)

    # edited is the reference itself; the differences are edited minus unedited, undefined where r was.
    by_key = {(d.domain, d.metric, d.column): d for d in result.differences}
    assert {d.versus for d in result.differences} == {"unedited"}
    assert len(result.differences) == len(COLUMNS) * 3  # one compared domain: mae, mmrv, pearson_r
    assert by_key["edited", "mae", "open"].value == pytest.approx(-1 / 3)
    assert by_key["edited", "mmrv", "close"].value == pytest.approx(-1 / 3)
    assert math.isnan(by_key["edited", "pearson_r", "open"].value)
    assert by_key["edited", "pearson_r", "close"].value == pytest.approx(0.5, abs=1e-7)
    assert result.trials == 4 and result.episodes_per_policy == 4


def test_agreement_pairs_episodes_by_reset_seed():
    rng = np.random.default_rng(3)
    actions, outcomes = _random_paired(rng, ["real"], repeats=2)
    real = outcomes["real"]
    # Same successes per trial, but the two seeds' outcomes swapped: rates match, episodes need not.
    outcomes["unedited"] = {policy: values[:, ::-1] for policy, values in real.items()}
    column = (
        joint_bootstrap(PairedOutcomes(actions, outcomes), n_boot=100).domains["unedited"].columns["average"]
    )
    differing_seeds = np.mean([np.mean(values[:, 0] != values[:, 1]) for values in real.values()])
    assert column.mae == 0.0
    assert column.agreement == pytest.approx(1 - differing_seeds)
    assert column.agreement < 1.0


def test_every_domain_and_policy_shares_the_draws():
    rng = np.random.default_rng(0)
    actions, outcomes = _random_paired(rng, ["real", "unedited", "noisy"])
    outcomes["copy of real"] = {policy: values.copy() for policy, values in outcomes["real"].items()}
    outcomes["copy of unedited"] = {policy: values.copy() for policy, values in outcomes["unedited"].items()}
    result = joint_bootstrap(PairedOutcomes(actions, outcomes), n_boot=500)

    for column in result.domains["copy of real"].columns.values():
        assert column.mae_interval == (0.0, 0.0)
        assert column.mmrv_interval == (0.0, 0.0)
        assert column.agreement_interval == (1.0, 1.0)
        assert all(gap.abs_gap_interval == (0.0, 0.0) for gap in column.per_policy.values())
    baseline_copies = [d for d in result.differences if d.domain == "copy of unedited"]
    assert len(baseline_copies) == 9
    for difference in baseline_copies:
        assert difference.interval == (0.0, 0.0), difference
    # A domain that really differs has a spread: the zeros above come from pairing, not from no resampling.
    low, high = result.domains["noisy"].columns["average"].mae_interval
    assert high - low > 0.02


def _independent_mae_draws(
    real: dict[str, np.ndarray],
    sim: dict[str, np.ndarray],
    actions: tuple[str, ...],
    n_boot: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The average-column MAE when each policy's sim and real trials are resampled independently."""
    action_array = np.array(actions)
    members = [np.flatnonzero(action_array == action) for action in ("open", "close")]

    def average_rates(outcomes: np.ndarray) -> np.ndarray:
        per_trial = outcomes.mean(axis=1)
        return np.mean(
            [per_trial[rng.choice(group, size=(n_boot, group.size))].mean(axis=1) for group in members],
            axis=0,
        )

    return np.mean(
        [np.abs(average_rates(sim[policy]) - average_rates(real[policy])) for policy in real], axis=0
    )


def test_shared_difficulty_makes_the_joint_interval_much_narrower_than_independent_resampling():
    rng = np.random.default_rng(1)
    trials_per_action, policies = 20, 5
    actions = ("open", "close") * trials_per_action
    difficulty = rng.random(len(actions))
    skill = np.linspace(0.3, 0.8, policies)
    # Success depends on trial difficulty against policy skill, the same in sim and real (both seeds).
    real = {
        f"p{p}": np.repeat((difficulty < skill[p])[:, None], 2, axis=1).astype(float) for p in range(policies)
    }
    sim = {}
    for policy, outcomes in real.items():
        flipped = outcomes.copy()
        flipped[rng.choice(np.flatnonzero(outcomes[:, 0] == 1)), :] = (
            0  # sim loses one trial the real world wins
        )
        sim[policy] = flipped
    paired = PairedOutcomes(actions, {"real": real, "unedited": sim})
    n_boot = 2000
    joint = joint_bootstrap(paired, n_boot=n_boot, seed=0).domains["unedited"].columns["average"]
    joint_width = joint.mae_interval[1] - joint.mae_interval[0]

    independent = _independent_mae_draws(real, sim, actions, n_boot, np.random.default_rng(0))
    independent_low, independent_high = np.quantile(independent, [0.025, 0.975])
    assert joint.mae == pytest.approx(
        1 / (2 * trials_per_action)
    )  # one of 20 open or close trials per policy
    # Measured: joint width 0.04, independent 0.115. Independent draws see the spread of trial difficulty
    # twice (sim and real drawn apart); joint draws see only which of the few lost trials were drawn.
    assert joint_width < 0.5 * (independent_high - independent_low), (
        joint.mae_interval,
        (independent_low, independent_high),
    )


def test_trials_are_drawn_only_within_their_action():
    # Three open and five close trials, interleaved; the domain succeeds on every open trial, never on close.
    actions = ("close", "open", "close", "close", "open", "close", "open", "close")
    is_open = np.array([action == "open" for action in actions])
    domain = {f"p{p}": np.repeat(is_open[:, None], 2, axis=1).astype(float) for p in range(3)}
    reference = {policy: np.zeros_like(values) for policy, values in domain.items()}
    result = joint_bootstrap(PairedOutcomes(actions, {"real": reference, "unedited": domain}), n_boot=1000)
    columns = result.domains["unedited"].columns
    assert columns["open"].mae_interval == (1.0, 1.0)
    assert columns["close"].mae_interval == (0.0, 0.0)
    assert columns["close"].agreement_interval == (1.0, 1.0)
    assert columns["average"].mae_interval == (0.5, 0.5)
    assert all(gap.abs_gap_interval == (0.0, 0.0) for gap in columns["close"].per_policy.values())


def test_pearson_is_undefined_where_rates_are_constant():
    rng = np.random.default_rng(2)
    actions, outcomes = _random_paired(rng, ["real", "unedited"])
    outcomes["constant"] = {policy: np.ones_like(values) for policy, values in outcomes["real"].items()}
    result = joint_bootstrap(PairedOutcomes(actions, outcomes), n_boot=300)
    for name, column in result.domains["constant"].columns.items():
        assert math.isnan(column.pearson_r), name
        assert column.pearson_r_undefined_share == 1.0
        assert column.pearson_r_interval is None
        assert column.to_json()["pearson_r"] is None
    defined = result.domains["unedited"].columns["average"]
    assert defined.pearson_r_undefined_share < 1.0 and defined.pearson_r_interval is not None
    versus_constant = [d for d in result.differences if d.domain == "constant" and d.metric == "pearson_r"]
    assert all(d.interval is None and d.to_json()["value"] is None for d in versus_constant)
    assert all(d.undefined_share == 1.0 for d in versus_constant)
    assert all(d.undefined_share == 0.0 for d in result.differences if d.metric != "pearson_r")


def test_an_r_difference_states_the_share_of_draws_it_leaves_out():
    # One policy at 1 of 6 trials, the others at 0: many draws leave out that trial and r is undefined there.
    actions = ("open", "close") * 3
    real = {f"p{p}": np.full((6, 1), float(p == 0)) for p in range(3)}
    rare = {f"p{p}": np.zeros((6, 1)) for p in range(3)}
    rare["p0"][0] = 1.0
    result = joint_bootstrap(PairedOutcomes(actions, {"real": real, "unedited": real, "rare": rare}),
                             baseline="unedited", n_boot=2000)
    difference = next(d for d in result.differences
                      if d.domain == "rare" and d.metric == "pearson_r" and d.column == "average")
    share = result.domains["rare"].columns["average"].pearson_r_undefined_share
    assert 0.2 < share < 0.5  # (5/6)**6 = 0.33 of the draws leave out the one success
    # unedited's r is defined wherever rare's is (p0 differs from the others in every draw that keeps a trial),
    # so the difference is undefined exactly where rare's r is.
    assert difference.undefined_share == share
    assert difference.to_json()["undefined_share"] == share


def test_the_seed_fixes_the_result_and_to_json_is_plain_json():
    rng = np.random.default_rng(4)
    actions, outcomes = _random_paired(rng, ["real", "unedited", "edited"])
    paired = PairedOutcomes(actions, outcomes)
    first, again = joint_bootstrap(paired, n_boot=300, seed=7), joint_bootstrap(paired, n_boot=300, seed=7)
    other = joint_bootstrap(paired, n_boot=300, seed=8)
    text = json.dumps(first.to_json(), allow_nan=False)
    assert text == json.dumps(again.to_json(), allow_nan=False)
    assert text != json.dumps(other.to_json(), allow_nan=False)
    loaded = json.loads(text)
    assert [entry["domain"] for entry in loaded["domains"]] == ["unedited", "edited"]
    assert {entry["metric"] for entry in loaded["differences"]} == {"mae", "mmrv", "pearson_r"}
    assert (
        loaded["domains"][0]["columns"]["average"]["mae"] == first.domains["unedited"].columns["average"].mae
    )


def test_the_report_size_runs_fast():
    rng = np.random.default_rng(5)
    domains = [
        "real",
        "unedited",
        "edited",
        "edited+composited",
        "edited+crop",
        "colour-transfer",
        "gain-oracle",
        "ceiling",
        "floor",
    ]
    actions, outcomes = _random_paired(rng, domains, policies=10, trials_per_action=27, repeats=2)
    paired = PairedOutcomes(actions, outcomes)
    start = time.perf_counter()
    result = joint_bootstrap(paired, n_boot=2000)
    elapsed = time.perf_counter() - start
    assert len(result.differences) == 7 * 3 * len(COLUMNS)
    assert elapsed < 3.0  # a loop over draws takes tens of seconds; vectorised it is ~0.1 s on 2 cores


def _valid_outcomes() -> dict[str, dict[str, np.ndarray]]:
    return {domain: {policy: np.zeros((4, 2)) for policy in ("A", "B")} for domain in ("real", "unedited")}


@pytest.mark.parametrize(
    ("actions", "outcomes", "message"),
    [
        (("open", "open", "close", "push"), _valid_outcomes(), "'open' or 'close'"),
        (("open",) * 4, _valid_outcomes(), "no 'close' trial"),
        (HAND_ACTIONS, {}, "non-empty"),
        (HAND_ACTIONS, {"real": {"A": np.zeros((4, 2))}}, "at least 2 policies"),
        (
            HAND_ACTIONS,
            {**_valid_outcomes(), "edited": {"A": np.zeros((4, 2)), "C": np.zeros((4, 2))}},
            "same policies",
        ),
        (HAND_ACTIONS, {"real": {"A": np.zeros((4, 2)), "B": np.zeros(4)}}, r"\(trials, repeats\)"),
        (
            HAND_ACTIONS,
            {"real": {"A": np.zeros((4, 2)), "B": np.zeros((4, 3))}},
            "same trials and reset seeds",
        ),
        (HAND_ACTIONS, {"real": {"A": np.zeros((4, 2)), "B": np.full((4, 2), 0.5)}}, "0/1"),
    ],
)
def test_bad_outcomes_are_refused_with_the_problem_named(actions, outcomes, message):
    with pytest.raises(ValueError, match=message):
        PairedOutcomes(actions, outcomes)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"reference": "reality"}, "reference domain 'reality'"),
        ({"baseline": "edited"}, "baseline domain 'edited'"),
        ({"baseline": "real"}, "must differ"),
        ({"n_boot": 0}, "n_boot"),
        ({"alpha": 1.0}, "alpha"),
    ],
)
def test_bad_bootstrap_arguments_are_refused(arguments, message):
    paired = PairedOutcomes(HAND_ACTIONS, _valid_outcomes())
    with pytest.raises(ValueError, match=message):
        joint_bootstrap(paired, **arguments)


def _pilot_with_a_gap(ceiling_is_baseline: bool = False) -> PairedOutcomes:
    """Four policies of graded skill; the sim loses a quarter of the real world's successes."""
    rng = np.random.default_rng(6)
    actions = ("open", "close") * 20
    skill = np.linspace(0.2, 0.8, 4)
    real = {f"p{p}": rng.random((len(actions), 2)) < skill[p] for p in range(len(skill))}
    sim = {policy: outcomes & (rng.random(outcomes.shape) < 0.75) for policy, outcomes in real.items()}
    return PairedOutcomes(
        actions, {"real": real, "unedited": sim, "ceiling": sim if ceiling_is_baseline else real}
    )


def test_power_grows_with_the_trials_and_vanishes_without_a_gap():
    pilot = _pilot_with_a_gap()
    small = power_of_gap(pilot, trials_per_action=3, n_simulations=40, n_boot=300)
    full = power_of_gap(pilot, n_simulations=40, n_boot=300)
    assert full.trials == 40 and small.trials == 6
    assert full.ceiling_mae == 0.0 and full.baseline_mae > 0.05
    # Half the episodes taken from the ceiling (the real world itself) halve the gap, up to sampling noise.
    assert full.candidate_mae == pytest.approx(full.baseline_mae / 2, rel=0.25)
    assert full.power >= 0.9
    assert small.power < full.power
    nothing_to_close = power_of_gap(_pilot_with_a_gap(ceiling_is_baseline=True), n_simulations=20, n_boot=200)
    assert nothing_to_close.power == 0.0
    assert json.loads(json.dumps(full.to_json(), allow_nan=False))["power"] == full.power


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"ceiling": "oracle"}, "ceiling domain 'oracle'"),
        ({"ceiling": "unedited"}, "three different domains"),
        ({"share_closed": 0.0}, "share_closed"),
        ({"column": "push"}, "column"),
        ({"trials_per_action": 0}, "trials_per_action"),
        ({"n_simulations": 0}, "n_simulations"),
    ],
)
def test_bad_power_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        power_of_gap(_pilot_with_a_gap(), **arguments)
