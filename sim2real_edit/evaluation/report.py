"""The report of a run, rebuilt from its episode database alone: Markdown, JSON and PNG plots.

For every visual domain - the unedited simulator, each edited variant per style, and each edited variant
with all styles pooled - it gives each policy's open, close and average success rate with bootstrap
confidence intervals, and MMRV and Pearson r of those rates against the real-world table
(`configs/real_world.yaml`), with a sim-vs-real scatter plot. Where both edited variants ran, it sets
them side by side: does keeping the frame outside the cabinet exactly as rendered predict better?
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim2real_edit.metrics import bootstrap_ci, bootstrap_rates, mmrv, pearson_r
from sim2real_edit.real_world import RealWorldSuccess, real_world_success

from .config import EDITED, EDITED_COMPOSITED, UNEDITED, EvalConfig
from .results import EpisodeResult, ResultStore

COLUMNS = ("open", "close", "average")
REPORT_MARKDOWN = "report.md"
REPORT_JSON = "report.json"
PLOTS_DIR = "plots"
ALL_STYLES = "all styles"

TINY_NOTICE = (
    "**Tiny preset: this report demonstrates the machinery, not real results.** The episodes ran on the "
    "CPU stand-in drawer env (not SIMPLER), edited by tiny random-weight specialists."
)
STAND_IN_NOTICE = (
    "The policies are scripted policies of graded skill standing in for the RT-1 checkpoints (each is "
    "labelled with the checkpoint it stands in for); they read the stand-in's privileged state, not the "
    "camera, so no visual domain can change what they do."
)
DEMO_METRICS_NOTICE = (
    "MMRV and Pearson r are computed from the episodes that actually ran, against SIMPLER's real-world "
    "table; they say nothing about real robots."
)


@dataclass(frozen=True)
class RateEstimate:
    """A success rate with its percentile-bootstrap interval over ``episodes`` episodes."""

    rate: float
    low: float
    high: float
    episodes: int


@dataclass(frozen=True)
class PolicyRates:
    policy: str
    real_world_name: str | None
    open: RateEstimate | None
    close: RateEstimate | None
    average: RateEstimate | None

    def estimate(self, column: str) -> RateEstimate | None:
        return getattr(self, column)


@dataclass(frozen=True)
class Agreement:
    """MMRV and Pearson r of one column's simulated rates against the real ones, over ``policies``."""

    mmrv: float
    pearson_r: float
    policies: tuple[str, ...]


@dataclass(frozen=True)
class DomainReport:
    """One visual domain: ``domain`` (unedited / edited / edited+composited) and ``style`` (``""`` for the
    unedited simulator, a style name, or ``ALL_STYLES`` for the pooled styles)."""

    name: str
    domain: str
    style: str
    episodes: int
    rates: tuple[PolicyRates, ...]
    agreement: dict[str, Agreement | None]
    plot: str


@dataclass
class Report:
    config: EvalConfig
    episodes_stored: int
    real_world: dict[str, RealWorldSuccess]
    domains: list[DomainReport] = field(default_factory=list)

    @property
    def is_demo(self) -> bool:
        return self.config.preset == "tiny"

    @property
    def notice(self) -> str | None:
        """What a demo report must say about itself; None for a real run."""
        if not self.is_demo:
            return None
        stand_ins = any(policy.is_stand_in for policy in self.config.policies)
        return " ".join([TINY_NOTICE, *([STAND_IN_NOTICE] if stand_ins else []), DEMO_METRICS_NOTICE])

    def domain(self, name: str) -> DomainReport:
        for domain in self.domains:
            if domain.name == name:
                return domain
        raise KeyError(f"no domain {name!r} in the report; it has {[d.name for d in self.domains]}")

    def compositing_rows(self) -> list[tuple[str, DomainReport, DomainReport]]:
        """(style, edited, edited+composited) for every style where both variants ran, pooled last."""
        by_key = {(d.domain, d.style): d for d in self.domains}
        styles = [*self.config.styles, ALL_STYLES]
        return [
            (style, by_key[(EDITED, style)], by_key[(EDITED_COMPOSITED, style)])
            for style in styles
            if (EDITED, style) in by_key and (EDITED_COMPOSITED, style) in by_key
        ]

    def to_json(self) -> dict[str, Any]:
        def agreement(values: dict[str, Agreement | None]) -> dict[str, Any]:
            return {column: asdict(value) if value else None for column, value in values.items()}

        return {
            "notice": self.notice,
            "run": {
                "config_hash": self.config.config_hash,
                "episodes_stored": self.episodes_stored,
                "episodes_expected": self.config.expected_episodes(),
                "config": self.config.to_dict(),
            },
            "policies": [
                {
                    "name": policy.name,
                    "kind": policy.kind,
                    "stand_in": policy.is_stand_in,
                    "real_world_name": policy.real_world_name,
                    "real_world": _real_rates(self.real_world.get(policy.real_world_name or "")),
                }
                for policy in self.config.policies
            ],
            "domains": [
                {
                    "name": domain.name,
                    "domain": domain.domain,
                    "style": domain.style,
                    "episodes": domain.episodes,
                    "plot": domain.plot,
                    "agreement": agreement(domain.agreement),
                    "rates": [asdict(rates) for rates in domain.rates],
                }
                for domain in self.domains
            ],
            "compositing": [
                {"style": style, EDITED: agreement(edited.agreement),
                 EDITED_COMPOSITED: agreement(composited.agreement)}
                for style, edited, composited in self.compositing_rows()
            ],
        }

    def to_markdown(self) -> str:
        config = self.config
        lines = ["# Policy evaluation report", ""]
        if self.notice:
            lines += [f"> {self.notice}", ""]
        complete = "complete" if self.episodes_stored == config.expected_episodes() else "INCOMPLETE"
        lines += [
            (f"- Config `{config.config_hash}`, preset `{config.preset}`: {self.episodes_stored} of "
             f"{config.expected_episodes()} episodes stored ({complete})."),
            (f"- {len(config.trials)} trials x {config.seeds} seed(s); domains: {', '.join(config.domains)}; "
             f"styles: {', '.join(config.styles)}; episodes end at {config.max_episode_steps} steps."),
            "- Policies: " + "; ".join(_policy_label(p.name, p.real_world_name, p.is_stand_in)
                                       for p in config.policies) + ".",
            "",
            "## Agreement with the real world",
            "",
            ("MMRV: lower is better (0 = the simulator ranks the policies as the real world does). Pearson r: "
             "higher is better. Both over the policies with real-world rates; \"avg\" is on the open/close-"
             "averaged rates, as SIMPLER reports it."),
            "",
            "| domain | episodes | MMRV avg | r avg | MMRV open | r open | MMRV close | r close |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for domain in self.domains:
            cells = []
            for column in ("average", "open", "close"):
                value = domain.agreement[column]
                cells += [f"{value.mmrv:.3f}", f"{value.pearson_r:.3f}"] if value else ["-", "-"]
            lines.append(f"| {domain.name} | {domain.episodes} | " + " | ".join(cells) + " |")
        rows = self.compositing_rows()
        if rows:
            lines += [
                "",
                "## Edited vs edited+composited",
                "",
                ("`edited` is the paper's simulator (the specialist repaints the whole frame); "
                 "`edited+composited` keeps every pixel outside the simulator's exact cabinet mask as rendered."),
                "",
                "| style | MMRV avg, edited | MMRV avg, composited | r avg, edited | r avg, composited |",
                "| --- | ---: | ---: | ---: | ---: |",
            ]
            for style, edited, composited in rows:
                a, b = edited.agreement["average"], composited.agreement["average"]
                lines.append(
                    f"| {style} | {_fmt(a and a.mmrv)} | {_fmt(b and b.mmrv)} | {_fmt(a and a.pearson_r)} | "
                    f"{_fmt(b and b.pearson_r)} |"
                )
        lines += ["", "## Success rates", "",
                  ("Rates with 95% percentile-bootstrap intervals and episode counts; real-world rates from "
                   "`configs/real_world.yaml`."), ""]
        for domain in self.domains:
            lines += [
                f"### {domain.name}",
                "",
                "| policy | open | close | average | real open / close / avg |",
                "| --- | --- | --- | --- | --- |",
            ]
            for rates in domain.rates:
                policy = next(p for p in config.policies if p.name == rates.policy)
                real = self.real_world.get(rates.real_world_name or "")
                real_cell = f"{real.open:.3f} / {real.close:.3f} / {real.average:.3f}" if real else "-"
                lines.append(
                    f"| {_policy_label(policy.name, rates.real_world_name, policy.is_stand_in)} | "
                    + " | ".join(_estimate_cell(rates.estimate(column)) for column in COLUMNS)
                    + f" | {real_cell} |"
                )
            lines += ["", f"![{domain.name}: simulated vs real success]({domain.plot})", ""]
        return "\n".join(lines).rstrip() + "\n"


def build_report(run_dir: str | Path, n_boot: int = 10_000, alpha: float = 0.05) -> Report:
    """The report of ``run_dir``, computed from its episode database alone."""
    store = ResultStore.open(run_dir)
    episodes = store.episodes()
    config = store.config
    table = real_world_success()
    report = Report(config, len(episodes), table)
    for name, domain, style in _domain_views(config):
        chosen = [e for e in episodes if e.domain == domain and (style in ("", ALL_STYLES) or e.style == style)]
        if not chosen:
            continue
        rates = tuple(
            _policy_rates(policy.name, policy.real_world_name if policy.real_world_name in table else None,
                          [e for e in chosen if e.policy == policy.name], n_boot, alpha)
            for policy in config.policies
        )
        agreement = {column: _agreement(rates, table, column) for column in COLUMNS}
        plot = f"{PLOTS_DIR}/scatter_{_slug(name)}.png"
        report.domains.append(DomainReport(name, domain, style, len(chosen), rates, agreement, plot))
    return report


def write_report(run_dir: str | Path) -> Report:
    """Builds the report of ``run_dir`` and writes report.md, report.json and plots/ there."""
    run_dir = Path(run_dir)
    report = build_report(run_dir)
    (run_dir / REPORT_JSON).write_text(json.dumps(report.to_json(), indent=2) + "\n")
    (run_dir / REPORT_MARKDOWN).write_text(report.to_markdown())
    write_plots(report, run_dir)
    return report


def write_plots(report: Report, run_dir: Path) -> list[Path]:
    """A sim-vs-real scatter plot per domain (average rates, with intervals) and a summary of the metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (run_dir / PLOTS_DIR).mkdir(exist_ok=True)
    stand_ins = {policy.name: policy.is_stand_in for policy in report.config.policies}
    written = []
    for domain in report.domains:
        figure, axes = plt.subplots(figsize=(4.8, 4.5))
        axes.plot([0, 1], [0, 1], color="0.7", linewidth=1, linestyle="--")
        for rates in domain.rates:
            real = report.real_world.get(rates.real_world_name or "")
            if real is None or rates.average is None:
                continue
            estimate = rates.average
            axes.errorbar(real.average, estimate.rate, fmt="o",
                          yerr=[[estimate.rate - estimate.low], [estimate.high - estimate.rate]], capsize=3)
            label = f"{rates.policy}\n(as {rates.real_world_name})" if stand_ins[rates.policy] else rates.real_world_name
            right_half = real.average > 0.5  # label towards the middle so that it stays inside the axes
            axes.annotate(label, (real.average, estimate.rate), textcoords="offset points", fontsize=7,
                          xytext=(-6 if right_half else 6, 4), ha="right" if right_half else "left")
        value = domain.agreement["average"]
        subtitle = f"MMRV {value.mmrv:.3f}, r {value.pearson_r:.3f}" if value else "too few policies for metrics"
        axes.set(xlim=(-0.05, 1.05), ylim=(-0.05, 1.12), xlabel="real-world success (avg)",
                 ylabel="simulated success (avg)", title=f"{domain.name}\n{subtitle}")
        if report.is_demo:
            axes.text(0.98, 0.02, "tiny preset: stand-ins, not real results", transform=axes.transAxes,
                      ha="right", fontsize=7, color="crimson")
        figure.tight_layout()
        path = run_dir / domain.plot
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    measured = [d for d in report.domains if d.agreement["average"] is not None]
    if measured:
        figure, (left, right) = plt.subplots(1, 2, figsize=(9, 0.45 * len(measured) + 1.6), sharey=True)
        positions = np.arange(len(measured))
        mmrvs = [d.agreement["average"].mmrv for d in measured]
        correlations = [d.agreement["average"].pearson_r for d in measured]
        left.barh(positions, mmrvs, color="tab:red")
        right.barh(positions, correlations, color="tab:blue")
        for axes, values in ((left, mmrvs), (right, correlations)):
            for position, value in zip(positions, values):
                axes.annotate(f"{value:.3f}", (value, position), textcoords="offset points", xytext=(3, 0),
                              va="center", fontsize=8)
        left.set(yticks=positions, yticklabels=[d.name for d in measured], xlabel="MMRV (avg), lower is better",
                 xlim=(0, max(0.1, 1.2 * max(mmrvs))))
        right.set(xlabel="Pearson r (avg), higher is better", xlim=(-1, 1.2))
        left.invert_yaxis()
        figure.tight_layout()
        path = run_dir / PLOTS_DIR / "agreement.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written


def _domain_views(config: EvalConfig) -> list[tuple[str, str, str]]:
    """(name, domain, style) of every view of the report, in report order."""
    views = [(UNEDITED, UNEDITED, "")] if UNEDITED in config.domains else []
    for domain in (EDITED, EDITED_COMPOSITED):
        if domain in config.domains:
            views += [(f"{domain}/{style}", domain, style) for style in config.styles]
            if len(config.styles) > 1:
                views.append((f"{domain} ({ALL_STYLES})", domain, ALL_STYLES))
    return views


def _policy_rates(
    policy: str, real_world_name: str | None, episodes: list[EpisodeResult], n_boot: int, alpha: float
) -> PolicyRates:
    outcomes = {action: [e.success for e in episodes if e.action == action] for action in ("open", "close")}
    estimates = {
        action: RateEstimate(float(np.mean(values)), *bootstrap_ci(values, n_boot=n_boot, alpha=alpha), len(values))
        if values else None
        for action, values in outcomes.items()
    }
    average = None
    if estimates["open"] and estimates["close"]:
        low, high = _average_interval(outcomes["open"], outcomes["close"], n_boot, alpha)
        rate = (estimates["open"].rate + estimates["close"].rate) / 2
        average = RateEstimate(rate, low, high, len(outcomes["open"]) + len(outcomes["close"]))
    return PolicyRates(policy, real_world_name, estimates["open"], estimates["close"], average)


def _average_interval(
    open_outcomes: Sequence[bool], close_outcomes: Sequence[bool], n_boot: int, alpha: float, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap interval of (open rate + close rate) / 2, resampling the two tasks' episodes separately."""
    rng = np.random.default_rng(seed)
    means = [bootstrap_rates(outcomes, n_boot, rng) for outcomes in (open_outcomes, close_outcomes)]
    low, high = np.quantile((means[0] + means[1]) / 2, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _agreement(rates: Sequence[PolicyRates], table: dict[str, RealWorldSuccess], column: str) -> Agreement | None:
    """MMRV and Pearson r over the policies with a simulated rate in ``column`` and a real-world row."""
    sim, real = {}, {}
    for policy in rates:
        estimate = policy.estimate(column)
        if estimate is None or policy.real_world_name is None:
            continue
        sim[policy.policy] = estimate.rate
        real[policy.policy] = getattr(table[policy.real_world_name], column)
    if len(sim) < 2:
        return None
    return Agreement(mmrv(sim, real), pearson_r(sim, real), tuple(sim))


def _real_rates(real: RealWorldSuccess | None) -> dict[str, float] | None:
    return {column: getattr(real, column) for column in COLUMNS} if real else None


def _policy_label(name: str, real_world_name: str | None, stand_in: bool) -> str:
    if real_world_name is None:
        return f"{name} (no real-world rates)"
    return f"{name} (stand-in for {real_world_name})" if stand_in else f"{name} ({real_world_name})"


def _estimate_cell(estimate: RateEstimate | None) -> str:
    if estimate is None:
        return "-"
    return f"{estimate.rate:.3f} [{estimate.low:.3f}, {estimate.high:.3f}] (n={estimate.episodes})"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name.replace("+", " plus ")).strip("-").lower()
