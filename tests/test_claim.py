"""The claim's links on hand-made numbers: each verdict follows from the numbers, and can fail."""

from __future__ import annotations

from evaluation.claim import claim_links, claim_markdown
from evaluation.report import Difference

STYLE = "white_marble"
CROP, TRANSFER = f"edited+crop/{STYLE}", f"colour-transfer/{STYLE}"


def mae_of(crop: float = 0.07, transfer: float = 0.06, oracle: float = 0.03) -> dict:
    return {"unedited": (0.17, (0.13, 0.21)), "ceiling": (0.03, (0.02, 0.05)), "floor": (0.0, (0.0, 0.01)),
            CROP: (crop, None), TRANSFER: (transfer, None), "gain-oracle": (oracle, None)}


def versus_unedited(crop_interval=(-0.14, -0.07)) -> list[Difference]:
    return [Difference("ceiling", "unedited", "mae", "average", -0.14, (-0.18, -0.10)),
            Difference(CROP, "unedited", "mae", "average", -0.10, crop_interval),
            Difference(CROP, "unedited", "mmrv", "average", -0.1, (-0.2, -0.05)),
            Difference(CROP, "unedited", "pearson_r", "average", 0.3, (0.1, 0.6))]


def cards(trained=(0.067, 0.068, 0.066), control=(0.075, 0.076, 0.074)) -> list[dict]:
    found = [{"split": "test", "method": "identity", "total": 0.10},
             {"split": "test", "method": "untrained", "total": 0.076},
             {"split": "validation", "method": "trained (seed 0)", "total": 0.5}]  # never read: validation
    found += [{"split": "test", "method": f"random preferences (seed {i})", "total": t} for i, t in enumerate(control)]
    return found + [{"split": "test", "method": f"trained (seed {i})", "total": t} for i, t in enumerate(trained)]


def links(**changes) -> dict:
    values = {"mae": mae_of(), "differences": versus_unedited(),
              "versus_colour_transfer": [Difference(CROP, TRANSFER, "mae", "average", 0.01, (-0.02, 0.03))],
              "power": {"power": 0.95, "share_closed": 0.5}, "scorecards": cards(), "style": STYLE, **changes}
    return {link.name.split(" ")[1] + " " + link.name.split(" ")[2]: link for link in claim_links(**values)}


def test_every_link_holds_or_fails_from_its_numbers():
    found = links()
    assert found["gap is"].holds is True
    assert found["crop-edited sim"].holds is True and "closes 71%" in found["crop-edited sim"].evidence
    assert found["learned crop"].holds is False and "not distinguishable" in found["learned crop"].evidence
    assert found["trained specialist"].holds is True
    assert found["the gap"].holds is None and "mean colour" in found["the gap"].evidence  # the oracle closes 100%


def test_the_crop_link_fails_below_half_or_when_its_interval_holds_zero():
    assert links(mae=mae_of(crop=0.12))["crop-edited sim"].holds is False  # closes 36%
    assert links(differences=versus_unedited(crop_interval=(-0.2, 0.01)))["crop-edited sim"].holds is False


def test_beating_the_colour_transfer_needs_an_interval_below_zero():
    better = [Difference(CROP, TRANSFER, "mae", "average", -0.03, (-0.05, -0.01))]
    assert links(versus_colour_transfer=better)["learned crop"].holds is True
    worse = [Difference(CROP, TRANSFER, "mae", "average", 0.03, (0.01, 0.05))]
    assert "worse" in links(versus_colour_transfer=worse)["learned crop"].evidence


def test_one_training_seed_above_a_rival_fails_the_scorecard_link():
    assert links(scorecards=cards(trained=(0.067, 0.08, 0.066)))["trained specialist"].holds is False
    assert links(scorecards=cards(control=(0.075, 0.06, 0.074)))["trained specialist"].holds is False


def test_a_small_power_or_a_loud_floor_fails_the_gap_link():
    assert links(power={"power": 0.5, "share_closed": 0.5})["gap is"].holds is False
    loud = mae_of()
    loud["floor"] = (0.1, None)
    assert links(mae=loud)["gap is"].holds is False


def test_an_oracle_that_closes_little_says_the_gap_is_more_than_colour():
    assert "more than the cabinet's mean colour" in links(mae=mae_of(oracle=0.12))["the gap"].evidence


def test_a_run_without_unedited_or_ceiling_states_no_claim_and_the_markdown_names_the_verdicts():
    assert claim_links({"real": (0.0, None)}, [], [], None, [], STYLE) == []
    markdown = "\n".join(claim_markdown(list(links().values())))
    assert "| FAILS |" in markdown and "| holds |" in markdown
