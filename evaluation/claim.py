"""The miniature's claim, link by link: which conditions of the experiment's goal hold, with the numbers.

The goal (issue #24): the crop-edited simulator closes at least half of the gap between the unedited simulator
and the ceiling (the real cabinet's pixels composited into the sim frame) in policy MAE against the real world,
the joint-bootstrap interval of that difference excludes 0, and the trained specialist beats identity, the
untrained base and the random-preference control on the scorecard's test part over training seeds. Beside it
the skeptic's questions: is the gap there and can this run's size see it, does the learned editor beat a
colour transfer that learns nothing, and what is the gap made of (the gain oracle). A link that a run did not
measure is left out; the verdicts are computed, never written by hand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

#: The share of the unedited-to-ceiling gap the crop edit must close.
REQUIRED_SHARE = 0.5
#: A gain oracle closing at least this share of the gap means the policies respond to the cabinet's mean colour.
MEAN_COLOUR_SHARE = 0.9
#: The floor (sampling noise alone) must sit at most this share of the gap.
FLOOR_SHARE = 0.5
MIN_POWER = 0.8


class DifferenceLike(Protocol):
    domain: str
    versus: str
    metric: str
    column: str
    value: float | None
    interval: tuple[float, float] | None


@dataclass(frozen=True)
class ClaimLink:
    """One condition of the claim: whether it holds (None: a finding, not a condition) and the evidence."""

    name: str
    holds: bool | None
    evidence: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def verdict(self) -> str:
        return {True: "holds", False: "FAILS", None: "finding"}[self.holds]


def totals_by_method(cards: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Scorecard totals grouped by method, training seeds pooled ("trained (seed 1)" counts as "trained")."""
    totals: dict[str, list[float]] = {}
    for card in cards:
        totals.setdefault(re.sub(r" \(seed \d+\)$", "", card["method"]), []).append(card["total"])
    return totals


def _find(differences: Sequence[DifferenceLike], domain: str, metric: str) -> DifferenceLike | None:
    return next((d for d in differences if d.domain == domain and d.metric == metric and d.column == "average"),
                None)


def _cell(difference: DifferenceLike | None) -> str:
    if difference is None or difference.value is None:
        return "undefined"
    if difference.interval is None:
        return f"{difference.value:+.3f}"
    low, high = difference.interval
    undefined = getattr(difference, "undefined_share", 0.0)
    note = f" (r undefined in {undefined:.0%} of draws)" if undefined > 0 else ""
    return f"{difference.value:+.3f} [{low:+.3f}, {high:+.3f}]{note}"


def _excludes_zero_below(difference: DifferenceLike | None) -> bool:
    return difference is not None and difference.interval is not None and difference.interval[1] < 0


def claim_links(
    mae: Mapping[str, tuple[float, tuple[float, float] | None]],
    differences: Sequence[DifferenceLike],
    versus_colour_transfer: Sequence[DifferenceLike],
    power: Mapping[str, Any] | None,
    scorecards: Sequence[Mapping[str, Any]],
    style: str,
) -> list[ClaimLink]:
    """The links of the claim this run measured. ``mae``: each domain view's average-column MAE against the
    real world (and its interval); ``differences``: versus the unedited sim; ``versus_colour_transfer``: versus
    the colour-transfer domain; ``scorecards``: the miniature's scorecard cards (with ``split``)."""
    links: list[ClaimLink] = []
    crop, transfer = f"edited+crop/{style}", f"colour-transfer/{style}"
    if "unedited" not in mae or "ceiling" not in mae:
        return links
    unedited, ceiling = mae["unedited"][0], mae["ceiling"][0]
    gap = unedited - ceiling
    ceiling_difference = _find(differences, "ceiling", "mae")
    floor = mae.get("floor", (None, None))[0]
    conditions = [_excludes_zero_below(ceiling_difference)]
    evidence = (f"MAE unedited {unedited:.3f}, ceiling {ceiling:.3f}: gap {gap:.3f} (ceiling - unedited "
                f"{_cell(ceiling_difference)})")
    if floor is not None:
        conditions.append(floor <= FLOOR_SHARE * gap)
        evidence += f"; floor (sampling noise alone) {floor:.3f}, at most {FLOOR_SHARE:.0%} of the gap"
    if power:
        conditions.append(power["power"] >= MIN_POWER)
        evidence += (f"; power to detect a domain closing {power['share_closed']:.0%} of it: {power['power']:.2f} "
                     f"(at least {MIN_POWER})")
    links.append(ClaimLink("The gap is there and this run's size can see it", all(conditions), evidence))

    def share(name: str) -> float | None:
        return (unedited - mae[name][0]) / gap if name in mae and gap > 0 else None

    def closed(name: str) -> str:
        value = share(name)
        return "an undefined share (no gap)" if value is None else f"{value:.0%}"

    if crop in mae:
        crop_share, crop_difference = share(crop), _find(differences, crop, "mae")
        holds = crop_share is not None and crop_share >= REQUIRED_SHARE and _excludes_zero_below(crop_difference)
        links.append(ClaimLink(
            f"The crop-edited sim closes at least {REQUIRED_SHARE:.0%} of the gap, its MAE difference excluding 0",
            holds,
            (f"MAE {mae[crop][0]:.3f}: closes {closed(crop)} of the gap; versus unedited: MAE {_cell(crop_difference)}, "
             f"MMRV {_cell(_find(differences, crop, 'mmrv'))}, r {_cell(_find(differences, crop, 'pearson_r'))}"),
        ))
    if crop in mae and transfer in mae:
        versus = _find(versus_colour_transfer, crop, "mae")
        if versus is not None and versus.interval is not None:
            low, high = versus.interval
            outcome = ("better" if high < 0 else "worse" if low > 0 else
                       "not distinguishable from it (the interval holds 0)")
        else:
            outcome = "not comparable"
        links.append(ClaimLink(
            "The learned crop edit beats the colour transfer from the exemplars (no learning, no real-world data)",
            _excludes_zero_below(versus),
            (f"MAE crop {mae[crop][0]:.3f}, colour transfer {mae[transfer][0]:.3f} (closes "
             f"{closed(transfer)} of the gap); crop - colour transfer {_cell(versus)}: {outcome}"),
        ))
    totals = totals_by_method([card for card in scorecards if card.get("split") == "test"])
    if "trained" in totals:
        trained = totals["trained"]
        rivals = {name: values for name, values in totals.items() if name != "trained"}
        beaten = all(max(trained) < min(values) for values in rivals.values())

        def summary(values: list[float]) -> str:
            return (f"{np.mean(values):.4f} +- {np.std(values, ddof=1):.4f} (n={len(values)})" if len(values) > 1
                    else f"{values[0]:.4f}")

        links.append(ClaimLink(
            "The trained specialist beats identity, untrained and the random control on the test part, every "
            "training seed below every rival",
            beaten if rivals else None,
            "scorecard total on the test part (lower is better): " + "; ".join(
                f"{name} {summary(values)}" for name, values in totals.items()),
        ))
    if "gain-oracle" in mae:
        oracle = share("gain-oracle")
        if oracle is not None:
            reading = ("the policies' outcomes respond to the cabinet's mean colour: a per-channel gain to the real "
                       "cabinet's mean closes nearly all of the gap, so a learned editor has little to add here. A "
                       "real world where it matters differs in more than mean colour - texture the policies read, "
                       "the geometry of light (specular highlights, shadows, inter-reflections), wear and clutter"
                       if oracle >= MEAN_COLOUR_SHARE else
                       "the gap is more than the cabinet's mean colour: texture or light matter to these policies")
            links.append(ClaimLink("What the gap is made of (the gain oracle uses real-world data: a diagnostic)", None,
                                   f"the gain oracle closes {oracle:.0%} of the gap: {reading}"))
    whole = [name for name in (f"edited/{style}", f"edited+composited/{style}") if name in mae]
    if whole:
        links.append(ClaimLink(
            "The paper's whole-frame domains, for context", None,
            "; ".join(f"{name} MAE {mae[name][0]:.3f}, closes {closed(name)} of the gap, versus unedited "
                      f"{_cell(_find(differences, name, 'mae'))}"
                      + (f", versus colour transfer {_cell(_find(versus_colour_transfer, name, 'mae'))}"
                         if _find(versus_colour_transfer, name, "mae") else "") for name in whole),
        ))
    return links


def claim_markdown(links: Sequence[ClaimLink]) -> list[str]:
    if not links:
        return []
    lines = ["## The claim, link by link", "",
             ("Computed from this run's paired episodes and the miniature's scorecard (MAE: mean over policies of "
              "|sim rate - real rate|, average column; brackets: joint-bootstrap intervals). A link that fails is "
              "the one to look at."), "",
             "| link | verdict | evidence |", "| --- | --- | --- |"]
    lines += [f"| {link.name} | {link.verdict} | {link.evidence} |" for link in links]
    return [*lines, ""]
