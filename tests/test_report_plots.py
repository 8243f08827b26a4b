"""The report's figures read: no text is cut off at the figure's edge, runs into another text or into a
neighbouring panel, and the per-policy figure shows every domain's rate beside the real one.

The reports are built here from their parts (no episodes run): many domains, as a full run with seven styles
has, and policies with long checkpoint-folder names."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from evaluation.config import (
    CEILING,
    COLOUR_TRANSFER,
    EDITED,
    EDITED_COMPOSITED,
    FLOOR,
    REAL,
    RT1,
    UNEDITED,
    EvalConfig,
    PolicySpec,
    graded_stand_ins,
    tiny_config,
)
from evaluation.report import (
    PLOTS_DIR,
    POLICY_RATES_PLOT,
    Agreement,
    DomainReport,
    PolicyRates,
    RateEstimate,
    Report,
    _real_reference,
    _slug,
    report_views,
    write_plots,
)
from sim2real_edit.real_world import real_world_success

SEVEN_STYLES = ("wood", "gold", "weathered_oak_with_brass_handles", "stone", "steel", "white_marble", "black_marble")
LONG_RT1_POLICIES = (
    PolicySpec("rt_1_tf_trained_for_000400120", RT1, "RT-1 (Converged)", checkpoint="/checkpoints/a"),
    PolicySpec("rt_1_tf_trained_for_000058240", RT1, "RT-1 (15%)", checkpoint="/checkpoints/b"),
    PolicySpec("rt_1_x_tf_trained_for_002272480_step", RT1, "RT-1-X", checkpoint="/checkpoints/c"),
    PolicySpec("rt_1_tf_trained_for_000001120_begin_of_training_run", RT1, None, checkpoint="/checkpoints/d"),
)


# ---------------------------------------------------------------------------------------------------------------
# The check


def layout_problems(figure: Figure) -> list[str]:
    """What keeps ``figure`` from reading as drawn: every text the renderer draws must lie inside the figure,
    must not intersect another drawn text, must not reach into the plotting area of an axes it does not
    belong to, and a text placed in an axes (an annotation) must stay inside that axes."""
    if not isinstance(figure.canvas, FigureCanvasAgg):  # pyplot.close gives a closed figure a bare canvas
        FigureCanvasAgg(figure)
    drawn: list[Text] = []
    draw = Text.draw

    def recording_draw(text, renderer):
        draw(text, renderer)
        if text.get_visible() and text.get_text().strip():
            drawn.append(text)

    Text.draw = recording_draw  # only the texts that are drawn: tick labels outside the limits are not
    try:
        figure.canvas.draw()
    finally:
        Text.draw = draw
    renderer = figure.canvas.get_renderer()
    owners = {}
    for axes in figure.axes:
        for artist in axes.findobj(Text):
            owners[id(artist)] = axes
    boxes = [(text, text.get_window_extent(renderer)) for text in drawn]
    frame = figure.bbox
    tolerance = 0.5  # pixels: rounding of the renderer's extents
    problems = []

    def name(text: Text) -> str:
        return repr(text.get_text()[:40])

    for text, box in boxes:
        if (box.x0 < frame.x0 - tolerance or box.y0 < frame.y0 - tolerance or box.x1 > frame.x1 + tolerance
                or box.y1 > frame.y1 + tolerance):
            problems.append(f"{name(text)} is cut off at the figure's edge: {box.bounds} outside {frame.bounds}")
        owner = owners.get(id(text))
        for axes in figure.axes:
            area = axes.get_window_extent(renderer).padded(-tolerance)
            if axes is not owner and box.overlaps(area):
                problems.append(f"{name(text)} reaches into another panel's plotting area")
        if owner is not None and text in owner.texts:
            area = owner.get_window_extent(renderer).padded(tolerance)
            if not (area.x0 <= box.x0 and box.x1 <= area.x1 and area.y0 <= box.y0 and box.y1 <= area.y1):
                problems.append(f"the annotation {name(text)} leaves its axes")
    for (first, first_box), (second, second_box) in combinations(boxes, 2):
        if first_box.padded(-tolerance).overlaps(second_box.padded(-tolerance)):
            problems.append(f"{name(first)} and {name(second)} overlap")
    return problems


def test_the_check_finds_overlapping_and_cut_off_labels():
    figure = Figure(figsize=(4, 2))
    left, right = figure.subplots(1, 2)
    left.set_xlabel("a very long x label that runs well into the neighbouring panel")
    right.set_xlabel("another x label")
    right.annotate("outside", (1.0, 1.0), xytext=(30, 0), textcoords="offset points")
    problems = layout_problems(figure)
    assert any("overlap" in problem for problem in problems)
    assert any("cut off" in problem for problem in problems)
    assert any("leaves its axes" in problem for problem in problems)
    tidy = Figure(figsize=(6, 3), layout="constrained")
    axes = tidy.subplots()
    axes.set(xlabel="success", ylabel="rate", title="fine")
    assert layout_problems(tidy) == []


# ---------------------------------------------------------------------------------------------------------------
# Reports built from their parts


def _estimate(rng: np.random.Generator, rate: float | None = None) -> RateEstimate:
    rate = float(np.clip(rng.uniform(0, 1) if rate is None else rate, 0, 1))
    half = rng.uniform(0.04, 0.15)
    return RateEstimate(rate, max(0.0, rate - half), min(1.0, rate + half), episodes=162, trials=54)


def _agreement(rng: np.random.Generator, policies: tuple[str, ...], reference: str) -> Agreement:
    value = rng.uniform(0, 0.4)
    r = rng.uniform(-1, 1)
    mae = rng.uniform(0, 0.3)
    return Agreement(value, r, policies, (max(0.0, value - 0.1), value + 0.2), (max(-1.0, r - 0.4), min(1.0, r + 0.3)),
                     reference=reference, mae=mae, mae_interval=(max(0.0, mae - 0.05), mae + 0.08),
                     episode_agreement=0.8, episode_agreement_interval=(0.7, 0.9))


def synthetic_report(config: EvalConfig, paired: bool) -> Report:
    """A report of every view of ``config``, with made-up rates and agreement: one view with an undefined r,
    one without intervals (a run in progress), one without the agreement (too few policies)."""
    rng = np.random.default_rng(0)
    table = real_world_success()
    report = Report(config, config.expected_episodes(), table)
    names = tuple(policy.name for policy in config.policies)
    for index, (name, domain, style) in enumerate(report_views(config)):
        rates = tuple(PolicyRates(policy.name, policy.real_world_name,
                                  *(_estimate(rng) for _ in range(3))) for policy in config.policies)
        reference = REAL if paired else "table"
        agreement = {column: _agreement(rng, names, reference) for column in ("open", "close", "average")}
        if domain == REAL:
            agreement = dict.fromkeys(agreement)
        elif index == 1:
            agreement["average"] = Agreement(0.0, None, names, (0.0, 0.05), None, reference=reference, mae=0.1,
                                             mae_interval=(0.05, 0.2), pearson_r_undefined_share=0.4,
                                             episode_agreement=0.9, episode_agreement_interval=(0.8, 1.0))
        elif index == 2:
            agreement["average"] = Agreement(0.2, 0.5, names, None, None, reference=reference, mae=0.1,
                                             episode_agreement=0.7)
        elif index == 3 and not paired:
            agreement["average"] = None
        report.domains.append(DomainReport(name, domain, style, 162 * len(names), rates, agreement,
                                           f"{PLOTS_DIR}/scatter_{_slug(name)}.png"))
    return report


def full_report() -> Report:
    """A full run's views: the unedited simulator and both edited variants in seven styles, pooled too (17)."""
    config = EvalConfig(policies=LONG_RT1_POLICIES, styles=SEVEN_STYLES, domains=(UNEDITED, EDITED, EDITED_COMPOSITED))
    return synthetic_report(config, paired=False)


def paired_report() -> Report:
    """The miniature's paired views on the stand-in (against its own real world), the stand-ins' labels."""
    policies = (*graded_stand_ins(), PolicySpec("cnn-bc-aug0.5-s1-00400-a-long-checkpoint-name", "scripted",
                                                None, skill=0.5))
    config = tiny_config(policies=policies, styles=("wood", "white_marble"),
                         domains=(UNEDITED, EDITED, COLOUR_TRANSFER, CEILING, FLOOR, REAL))
    return synthetic_report(config, paired=True)


@pytest.fixture
def drawn_figures(monkeypatch):
    """The figures `write_plots` saves, by file name, kept open for the check."""
    figures: dict[str, Figure] = {}
    save = Figure.savefig

    def recording_save(figure, path, *args, **kwargs):
        figures[Path(path).name] = figure
        return save(figure, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_save)
    return figures


@pytest.mark.parametrize("build", [full_report, paired_report])
def test_no_label_of_any_figure_is_cut_off_or_overlaps(build, tmp_path, drawn_figures):
    report = build()
    written = write_plots(report, tmp_path)
    assert {path.name for path in written} == set(drawn_figures)
    assert "agreement.png" in drawn_figures
    problems = {name: layout_problems(figure) for name, figure in drawn_figures.items()}
    assert {name: found for name, found in problems.items() if found} == {}


@pytest.mark.parametrize("build", [full_report, paired_report])
def test_policy_rates_figure_shows_every_domain_against_the_real_rate(build, tmp_path, drawn_figures):
    report = build()
    written = write_plots(report, tmp_path)
    assert tmp_path / POLICY_RATES_PLOT in written and (tmp_path / POLICY_RATES_PLOT).stat().st_size > 0
    assert f"]({POLICY_RATES_PLOT})" in report.to_markdown()
    figure = drawn_figures[Path(POLICY_RATES_PLOT).name]
    assert layout_problems(figure) == []
    views = [domain for domain in report.domains if domain.domain != REAL]  # a paired run's real world: reference
    panels = [axes for axes in figure.axes if axes.get_visible()]
    assert len(panels) == len(report.config.policies)
    for axes, policy in zip(panels, report.config.policies):
        assert axes.get_title().replace("\n", "").startswith(policy.name)
        # One series per domain: its interval (labelled with the domain) and its rate.
        assert [container.get_label() for container in axes.containers] == [view.name for view in views]
        estimates = [next(r.average for r in view.rates if r.policy == policy.name) for view in views]
        markers = [line for line in axes.lines if line.get_marker() in ("o", "D")]
        assert [line.get_xdata()[0] for line in markers] == pytest.approx([e.rate for e in estimates])
        for container, estimate in zip(axes.containers, estimates):
            (segments,) = container.lines[2]
            assert sorted(segments.get_segments()[0][:, 0]) == pytest.approx([estimate.low, estimate.high])
        reference = [line.get_xdata()[0] for line in axes.lines if line.get_gid() == "real-world rate"]
        if report.paired:
            assert reference == [report.domain(REAL).rates[report.config.policies.index(policy)].average.rate]
        elif policy.real_world_name is None:
            assert reference == []
        else:
            assert reference == [pytest.approx(report.real_world[policy.real_world_name].average)]


def test_the_real_tables_rate_has_an_exact_interval_over_its_trials():
    report = full_report()
    rate, low, high, source = _real_reference(report, LONG_RT1_POLICIES[0])
    converged = report.real_world["RT-1 (Converged)"]
    assert rate == converged.average and low < rate < high and "Clopper-Pearson" in source
    # 0.815 and 0.926 of 27 trials each: 47 of 54 successes.
    assert (low, high) == pytest.approx((0.7512, 0.9464), abs=1e-3)
    assert _real_reference(report, LONG_RT1_POLICIES[3]) is None
