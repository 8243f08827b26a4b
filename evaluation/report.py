"""The report of a run, rebuilt from its episode database alone: Markdown, JSON and PNG plots.

For every visual domain - the unedited simulator, each edited variant per style, and each edited variant
with all styles pooled - it gives each policy's open, close and average success rate with bootstrap
confidence intervals, and MMRV and Pearson r of those rates against the real-world table
(the config's `real_world_table`, by default `configs/real_world.yaml`) with bootstrap intervals, and a sim-vs-real scatter plot. Where both edited
variants ran, it sets them side by side: does keeping the frame outside the cabinet exactly as rendered
predict better? Rates pool the run's robot URDF versions (SIMPLER averages its four); with more than one,
each version's rates are given too.

Intervals are cluster bootstraps over trials (`sim2real_edit.metrics`): a trial's episodes over seeds,
styles and URDF versions are correlated, so they are resampled together. Only the episodes of the config
stored in the run folder count; the report says if the database holds any others.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from envs.protocol import DEFAULT_URDF_VERSION, SCENE_VARIANTS, URDF_VERSIONS, VARIANT_AGGREGATION
from sim2real_edit.metrics import (
    PairedOutcomes,
    TrialOutcomes,
    clopper_pearson,
    joint_bootstrap,
    mmrv,
    pearson_r,
    power_of_gap,
    rate_interval,
    trial_rate,
)
from sim2real_edit.real_world import RealWorldSuccess, real_world_success

from .claim import ClaimLink, claim_links, claim_markdown, totals_by_method
from .config import (
    CEILING,
    COLOUR_TRANSFER,
    DOMAINS,
    EDITED,
    EDITED_COMPOSITED,
    REAL,
    STYLED_DOMAINS,
    UNEDITED,
    EvalConfig,
    PolicySpec,
    view_name,
)
from .disagreement import sim_real_disagreements
from .real_episodes import REAL_EPISODES_CSV, RealSuccessEntry, read_real_episodes, real_success_entries
from .repeats import SEED_FREE_DOMAINS, independent_episodes, simulator_ignores_seed
from .report_html import REPORT_HTML, report_html
from .results import EpisodeResult, ResultStore, write_text_atomically
from .videos import INDEX_NAME, VIDEOS_DIR, read_video_index

COLUMNS = ("open", "close", "average")
REPORT_MARKDOWN = "report.md"
REPORT_JSON = "report.json"
PLOTS_DIR = "plots"
POLICY_RATES_PLOT = f"{PLOTS_DIR}/policy_rates.png"
ALL_STYLES = "all styles"
BOOTSTRAP_DRAWS = 10_000
BOOTSTRAP_SEED = 0
POWER_SIMULATIONS = 200
POWER_DRAWS = 1000

TINY_NOTICE = (
    "**Tiny preset: a miniature on a CPU, not real results.** The episodes ran on the CPU stand-in drawer env "
    "(not SIMPLER), edited by tiny specialists on a tiny base trained on the stand-in's frames."
)
STAND_IN_NOTICE = (
    "The policies are scripted policies of graded skill standing in for the RT-1 checkpoints (each is "
    "labelled with the checkpoint it stands in for); they read the stand-in's privileged state, not the "
    "camera, so no visual domain can change what they do."
)
SUCCESS_RULE = ("an episode ends at the policy's terminate or the step limit and counts as a success if the drawer "
                "meets the task's threshold at that last step (SIMPLER's evaluator)")
DEMO_METRICS_NOTICE = (
    "MMRV and Pearson r are computed from the episodes that actually ran, against the run's real-world table; "
    "they say nothing about real robots."
)
#: The tiny preset's summary of its miniature, written into the run folder by
#: `miniature.experiment.write_miniature_summary`.
MINIATURE_JSON = "miniature.json"


@dataclass(frozen=True)
class RateEstimate:
    """A success rate with its interval over ``episodes`` episodes of ``trials`` trials: the percentile cluster
    bootstrap (a trial's episodes resampled together), or Clopper-Pearson where that bootstrap cannot vary
    (``method``; `sim2real_edit.metrics.rate_interval`)."""

    rate: float
    low: float
    high: float
    episodes: int
    trials: int
    method: str = "cluster bootstrap"
    #: Episodes that are not repeats of another (`evaluation.repeats`): fewer than ``episodes`` where a
    #: deterministic policy in a deterministic domain ran the same episode at several seeds.
    independent_episodes: int | None = None


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
    """MMRV and Pearson r of one column's simulated rates against the real ones, over ``policies``, with
    percentile intervals from one joint bootstrap that resamples the same trials for every policy and domain.

    Against a real-world table (``reference="table"``) each draw also redraws the table's rates from their trial
    counts (``reference_draws="binomial"``) or takes them as exact (``"exact"``, ``--real-rates-exact``); a
    view that is not complete (a run in progress) has values without intervals (``reference_draws=None``).
    Against the run's own real-world domain (``reference="real"``, paired episodes) the real episodes are
    resampled with the rest, and it adds the share of paired episodes with the real outcome
    (``episode_agreement``). Both give the mean absolute gap between sim and real rates (``mae``), the share of
    draws where r is undefined (constant rates; ``pearson_r`` is None where it is undefined on the data) and the
    policy pairs tied in sim only."""

    mmrv: float
    pearson_r: float | None
    policies: tuple[str, ...]
    mmrv_interval: tuple[float, float] | None
    pearson_r_interval: tuple[float, float] | None
    reference: str = "table"
    mae: float | None = None
    mae_interval: tuple[float, float] | None = None
    episode_agreement: float | None = None
    episode_agreement_interval: tuple[float, float] | None = None
    pearson_r_undefined_share: float | None = None
    ties: tuple[tuple[str, str], ...] = ()
    reference_draws: str | None = None

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["pearson_r"] = _json_number(self.pearson_r) if self.pearson_r is not None else None
        values["ties"] = [list(pair) for pair in self.ties]
        return values


@dataclass(frozen=True)
class Difference:
    """``metric(domain) - metric(versus)`` on the data, with its interval over the joint bootstrap's draws."""

    domain: str
    versus: str
    metric: str  # mae, mmrv or pearson_r
    column: str
    value: float | None
    interval: tuple[float, float] | None
    undefined_share: float = 0.0  # pearson_r: the draws where either r is undefined (the interval leaves them out)


@dataclass(frozen=True)
class SeedSpread:
    """MMRV and Pearson r of one column computed from each seed's episodes alone: how much the verdict moves
    with the diffusion noise and start jitter of another seed."""

    mmrv: tuple[float, ...]
    pearson_r: tuple[float, ...]

    @property
    def mmrv_mean(self) -> float:
        return float(np.mean(self.mmrv))

    @property
    def mmrv_sd(self) -> float:
        return _sample_sd(self.mmrv)

    @property
    def defined_pearson_r(self) -> tuple[float, ...]:
        """The seeds' r where it is defined (NaN marks a seed whose rates are constant)."""
        return tuple(value for value in self.pearson_r if not np.isnan(value))

    @property
    def pearson_r_mean(self) -> float:
        """Mean over the seeds where r is defined; NaN if it is defined at none."""
        return float(np.mean(self.defined_pearson_r)) if self.defined_pearson_r else float("nan")

    @property
    def pearson_r_sd(self) -> float:
        return _sample_sd(self.defined_pearson_r)

    def to_json(self) -> dict[str, Any]:
        return {"mmrv": list(self.mmrv), "pearson_r": [_json_number(value) for value in self.pearson_r],
                "mmrv_mean": self.mmrv_mean, "mmrv_sd": _json_number(self.mmrv_sd),
                "pearson_r_mean": _json_number(self.pearson_r_mean), "pearson_r_sd": _json_number(self.pearson_r_sd),
                "pearson_r_undefined_seeds": len(self.pearson_r) - len(self.defined_pearson_r)}


def _sample_sd(values: tuple[float, ...]) -> float:
    """Standard deviation with Bessel's correction; NaN for fewer than two values."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


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
    rates_by_urdf_version: dict[str, tuple[PolicyRates, ...]] = field(default_factory=dict)  # if several ran
    agreement_over_seeds: dict[str, SeedSpread | None] = field(default_factory=dict)  # if several seeds ran
    rates_by_variant: dict[str, tuple[PolicyRates, ...]] = field(default_factory=dict)  # variant aggregation


@dataclass
class Report:
    config: EvalConfig
    episodes_stored: int
    real_world: dict[str, RealWorldSuccess]
    domains: list[DomainReport] = field(default_factory=list)
    other_config_rows: dict[str, int] = field(default_factory=dict)  # episodes of other configs, left out
    n_boot: int = BOOTSTRAP_DRAWS
    alpha: float = 0.05
    miniature: dict[str, Any] | None = None  # the tiny preset's `miniature.json`, where the run has one
    differences: list[Difference] = field(default_factory=list)  # versus the unedited sim (paired runs)
    paired_note: str | None = None  # why a run with a real-world domain has no paired analysis
    power: dict[str, Any] | None = None  # of this run's size to detect a domain closing half the ceiling's gap
    real_rates_exact: bool = False  # the real-world table's rates taken as exact in the agreement intervals
    # Real success from the sim episodes and the paired real episodes of `real_episodes.csv`, per view and policy.
    real_success: list[RealSuccessEntry] = field(default_factory=list)
    real_episodes_file: str | None = None
    versus_colour_transfer: list[Difference] = field(default_factory=list)  # the same draws as `differences`
    # Paired trials whose simulated outcome differs from the real world's (`evaluation.disagreement`).
    disagreements: dict[str, Any] | None = None
    # The stored episodes' videos (`evaluation.videos`): one entry per video, with the episode's outcome.
    videos: list[dict[str, Any]] = field(default_factory=list)

    def videos_summary(self) -> dict[str, Any]:
        """The videos' count and sizes, and how many stored episodes have none (run without videos)."""
        sizes = [video["bytes"] for video in self.videos]
        return {
            "index": f"{VIDEOS_DIR}/{INDEX_NAME}",
            "videos": len(sizes),
            "episodes_without_video": self.episodes_stored - len(sizes),
            "total_bytes": sum(sizes),
            "mean_bytes": round(float(np.mean(sizes)), 1) if sizes else None,
            "mean_encode_s": round(float(np.mean([video["encode_s"] for video in self.videos])), 4)
            if sizes else None,
            "episodes": self.videos,
        }

    def claim(self) -> list[ClaimLink]:
        """The miniature's claim, link by link (`evaluation.claim`); empty unless the run is paired."""
        if not self.paired:
            return []
        mae = {d.name: (d.agreement["average"].mae, d.agreement["average"].mae_interval) for d in self.domains
               if d.agreement.get("average") is not None and d.agreement["average"].mae is not None}
        scorecards = (self.miniature or {}).get("scorecard") or []
        return claim_links(mae, self.differences, self.versus_colour_transfer, self.power, scorecards,
                           self.config.styles[0] if self.config.styles else "")

    @property
    def paired(self) -> bool:
        """Whether agreement is measured against the run's own real-world domain (paired episodes)."""
        return any(a is not None and a.reference == REAL for d in self.domains for a in d.agreement.values())

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
            return {column: value.to_json() if value else None for column, value in values.items()}

        return {
            "notice": self.notice,
            "run": {
                "config_hash": self.config.config_hash,
                "episodes_stored": self.episodes_stored,
                "episodes_expected": self.config.expected_episodes(),
                "urdf_versions": list(self.config.urdf_versions),
                "setting": self.config.setting,
                "variants": list(self.config.variants()),
                "success_rule": SUCCESS_RULE,
                "other_config_rows": self.other_config_rows,
                "config": self.config.to_dict(),
            },
            "bootstrap": {
                "method": ("percentile; cluster bootstrap over trials (a trial's seeds, styles and URDF versions "
                           "resampled together), Clopper-Pearson where it cannot vary (0/n, n/n, one trial); "
                           "MMRV/r/MAE: one joint bootstrap, the same resampled trials (within open and close) for "
                           "every policy and domain, " + (
                               "the real-world domain included" if self.paired else
                               "the real-world table's rates " + ("taken as exact" if self.real_rates_exact else
                                                                  "redrawn as Binomial(trials, rate) / trials")) +
                           "; r undefined where the rates are constant (the share of such draws is given)"),
                "real_rates": ("paired episodes" if self.paired else "exact" if self.real_rates_exact
                               else "binomial"),
                "confidence": 1 - self.alpha,
                "draws": self.n_boot,
                "seed": BOOTSTRAP_SEED,
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
                    "rates_by_urdf_version": {urdf: [asdict(rates) for rates in by_policy]
                                              for urdf, by_policy in domain.rates_by_urdf_version.items()},
                    "rates_by_variant": {variant: [asdict(rates) for rates in by_policy]
                                         for variant, by_policy in domain.rates_by_variant.items()},
                    "agreement_over_seeds": {column: spread.to_json() if spread else None
                                             for column, spread in domain.agreement_over_seeds.items()},
                }
                for domain in self.domains
            ],
            "compositing": [
                {"style": style, EDITED: agreement(edited.agreement),
                 EDITED_COMPOSITED: agreement(composited.agreement)}
                for style, edited, composited in self.compositing_rows()
            ],
            "differences": [{**asdict(d), "value": _json_number(d.value) if d.value is not None else None}
                            for d in self.differences],
            "paired_note": self.paired_note,
            "power": self.power,
            "differences_versus_colour_transfer": [
                {**asdict(d), "value": _json_number(d.value) if d.value is not None else None}
                for d in self.versus_colour_transfer],
            "claim": [link.to_json() for link in self.claim()],
            "real_episodes_file": self.real_episodes_file,
            "real_success": [entry.to_json() for entry in self.real_success],
            "real_trials_saved": {view: {"policies_claimed": sum(count is not None for count in counts),
                                         "policies": len(counts), "trials": sum(count or 0 for count in counts)}
                                  for view, counts in self.real_trials_saved().items()},
            "miniature": self.miniature,
            "sim_real_disagreements": self.disagreements,
            "videos": self.videos_summary(),
        }

    def _real_success_markdown(self) -> list[str]:
        """The prediction-powered section: each policy's real success from all sim trials and the paired real
        ones, beside the real trials alone, and the real trials the simulator saves."""
        alpha = self.real_success[0].estimate.alpha
        lines = [
            "## Real success from sim plus a few real trials (prediction-powered)",
            "",
            (f"Real episodes from `{self.real_episodes_file}`. Estimate: the mean sim prediction over the N sim trials "
             "(a trial's sim episodes averaged) plus the mean of (real - sim) over the n paired real trials; "
             f"{1 - alpha:.0%} interval: Student's t (n-1 df) on its standard error, clipped to [0, 1] (Wilson's where "
             "that error is 0). Real only: the same n real trials, Wilson score interval. Saved: the real trials a "
             "real-only estimate needs for the same standard error, minus n; claimed only where the 95% interval of "
             "the slope of real on sim lies above 1/2 (the point from which the sim narrows the interval), else "
             "none."),
            "",
            ("| view | policy | real success (sim + real) | real only | sim rate | rectifier | N sim / n real trials | "
             "real trials saved |"),
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for entry in self.real_success:
            e = entry.estimate
            marker = "" if e.interval_method.startswith("prediction") else " (Wilson)"
            saved = "none" if e.trials_saved is None else str(e.trials_saved)
            lines.append(
                f"| {entry.domain} | {_policy_label(e.policy, entry.real_world_name, False)} | "
                f"{e.estimate:.3f} [{e.interval[0]:.3f}, {e.interval[1]:.3f}]{marker} | "
                f"{e.real_rate:.3f} [{e.real_only_interval[0]:.3f}, {e.real_only_interval[1]:.3f}] | {e.sim_rate:.3f} | "
                f"{e.rectifier:+.3f} | {e.sim_trials} / {e.real_trials} | {saved} |")
        lines += ["", "Real trials saved per view, summed over its policies (claimed savings only):", "",
                  "| view | policies with a claimed saving | real trials saved |", "| --- | ---: | ---: |"]
        for view, saved_counts in self.real_trials_saved().items():
            lines.append(f"| {view} | {sum(count is not None for count in saved_counts)} of {len(saved_counts)} | "
                         f"{sum(count or 0 for count in saved_counts)} |")
        return [*lines, ""]

    def real_trials_saved(self) -> dict[str, list[int | None]]:
        """Each view's claimed real-trial savings, one entry per policy (None: none claimed)."""
        saved: dict[str, list[int | None]] = {}
        for entry in self.real_success:
            saved.setdefault(entry.domain, []).append(entry.estimate.trials_saved)
        return saved

    def _paired_markdown(self) -> list[str]:
        """The paired section: per domain MAE, episode agreement, MMRV and r against the run's real world, what
        share of the unedited-to-ceiling gap each domain closes, and the differences to the unedited sim."""
        config = self.config
        lines = [
            "## Paired with the real world: MAE, agreement, ranking",
            "",
            (f"Every domain ran the same {len(config.trials)} trials x {config.seeds} seed(s) as the real world, so each "
             "simulated episode has a real twin. MAE: mean over policies of |sim rate - real rate| (avg column; lower "
             "is better). Agreement: share of paired episodes with the real outcome. `ceiling`: the real cabinet's "
             "pixels composited into the sim frame (the best a cabinet editor can do); `floor`: the real world under "
             "fresh sensor noise (sampling noise alone); `gain-oracle`: the sim cabinet's colour scaled to the real "
             "cabinet's mean (uses real-world information: a diagnostic, not a method). Intervals: one joint "
             f"bootstrap over trials ({self.n_boot} draws), the same resampled trials for every policy and domain."),
            "",
            "| domain | MAE avg | gap closed | agreement | MMRV avg | r avg | r undefined | tied in sim only |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        by_name = {d.name: d.agreement.get("average") for d in self.domains}
        unedited, ceiling = by_name.get(UNEDITED), by_name.get("ceiling")
        gap = unedited.mae - ceiling.mae if unedited and ceiling and unedited.mae is not None else None
        for domain in self.domains:
            value = by_name[domain.name]
            if value is None or value.mae is None:
                continue
            # The floor is the real world against itself: a share of the sim's gap means nothing there.
            closed = f"{(unedited.mae - value.mae) / gap:.0%}" if gap and domain.domain != "floor" else "-"
            ties = ", ".join(f"{a} = {b}" for a, b in value.ties) or "-"
            undefined = f"{value.pearson_r_undefined_share:.0%}" if value.pearson_r_undefined_share is not None else "-"
            lines.append(
                f"| {domain.name} | {_metric_cell(value.mae, value.mae_interval)} | {closed} | "
                f"{_metric_cell(value.episode_agreement, value.episode_agreement_interval)} | "
                f"{_metric_cell(value.mmrv, value.mmrv_interval)} | {_r_cell(value, share=False)} | {undefined} | "
                f"{ties} |")
        if gap is not None:
            floor = by_name.get("floor")
            floor_text = (f"; the floor (real against itself under fresh noise) has MAE {floor.mae:.3f}"
                          if floor and floor.mae is not None else "")
            lines += ["", f"The gap a cabinet editor can close: MAE(unedited) - MAE(ceiling) = {gap:.3f}{floor_text}."]
        if self.power:
            lines += [(f"Power of this run's size ({self.power['trials']} trials, {self.power['simulations']} "
                       f"simulated experiments from its own unedited, ceiling and real episodes): a domain closing "
                       f"{self.power['share_closed']:.0%} of the gap is detected (its MAE difference's interval "
                       f"excludes 0) with probability {self.power['power']:.2f}.")]
        averages = [d for d in self.differences if d.column == "average"]
        if averages:
            lines += ["", (f"Differences versus `{averages[0].versus}` (avg column; negative MAE/MMRV and positive r "
                           "are better; an interval that excludes 0 is a difference the data can tell; an r difference's interval "
                           "leaves out the draws where either r is undefined, `undef.` gives their share):"), "",
                      "| domain | MAE | MMRV | r |", "| --- | ---: | ---: | ---: |"]
            for name in dict.fromkeys(d.domain for d in averages):
                cells = []
                for metric in ("mae", "mmrv", "pearson_r"):
                    found = next((d for d in averages if d.domain == name and d.metric == metric), None)
                    cell = ("-" if found is None or found.value is None else
                            _metric_cell(found.value, found.interval) if found.interval else f"{found.value:+.3f}")
                    if found is not None and found.undefined_share > 0:
                        cell += f" (undef. {found.undefined_share:.0%})"
                    cells.append(cell)
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return [*lines, ""]

    def to_markdown(self) -> str:
        config = self.config
        lines = ["# Policy evaluation report", ""]
        if self.notice:
            lines += [f"> {self.notice}", ""]
        complete = "complete" if self.episodes_stored == config.expected_episodes() else "INCOMPLETE"
        if self.other_config_rows:
            counts = ", ".join(f"`{key}`: {count}" for key, count in self.other_config_rows.items())
            lines += [(f"> **Warning: the database also holds {sum(self.other_config_rows.values())} episode(s) "
                       f"of other configurations ({counts}).** They are left out of everything below; only "
                       f"config `{config.config_hash}`'s episodes count."), ""]
        lines += [
            (f"- Config `{config.config_hash}`, preset `{config.preset}`: {self.episodes_stored} of "
             f"{config.expected_episodes()} episodes stored ({complete})."),
            (f"- {len(config.trials)} trials x {config.seeds} seed(s) x {len(config.urdf_versions)} robot URDF "
             f"version(s); domains: {', '.join(config.domains)}; styles: {', '.join(config.styles)}."),
            f"- Robot URDF versions: {_urdf_description(config.urdf_versions)}",
            f"- Setting: {_setting_description(config)}",
            f"- Episodes: {SUCCESS_RULE}; at most {config.max_episode_steps} steps.",
            "- Policies: " + "; ".join(_policy_label(p.name, p.real_world_name, p.is_stand_in)
                                       for p in config.policies) + ".",
            (f"- Intervals: {1 - self.alpha:.0%} percentile cluster bootstrap over trials ({self.n_boot} draws, "
             f"seed {BOOTSTRAP_SEED}): a trial's episodes (its seeds, styles and URDF versions) are resampled "
             "together; where that cannot vary (0/n, n/n, every trial alike, one trial) an exact Clopper-Pearson "
             "interval over the trials (marked `*`). MMRV and r intervals: one joint bootstrap, the same resampled "
             "trials for every policy and domain, "
             + ("the real-world domain's included." if self.paired else
                "with the real-world table's rates taken as exact (--real-rates-exact)." if self.real_rates_exact else
                "with each real-world rate redrawn as Binomial(trials, rate) / trials from the table's trial counts.")
             + " r is undefined where the rates are constant; `undef.` gives the share of draws where it is, and "
             "its interval is over the others."),
            "",
        ]
        if self.videos:
            summary = self.videos_summary()
            lines += [(f"- Episode videos: {summary['videos']} (`{summary['index']}`, one line per video with its "
                       f"size), {summary['total_bytes'] / 1e6:.1f} MB in all, {summary['mean_bytes'] / 1e3:.1f} kB "
                       f"and {summary['mean_encode_s']:.2f} s of encoding per episode on average"
                       + (f"; {summary['episodes_without_video']} stored episodes ran without video"
                          if summary["episodes_without_video"] else "") + ". Watch them in `report.html`."), ""]
        if self.disagreements and self.disagreements["real_domain"]:
            counts = ", ".join(f"{c['view']} {c['disagree']} of {c['paired']}" for c in self.disagreements["counts"])
            lines += [f"- Paired trials where sim and real disagree: {counts} (listed in `report.html`).", ""]
        if self.paired:
            lines += claim_markdown(self.claim())
            lines += self._paired_markdown()
        if self.real_success:
            lines += self._real_success_markdown()
        lines += [
            "## Agreement with the real world",
            "",
            ("MMRV: lower is better (0 = the simulator ranks the policies as the real world does). Pearson r: "
             "higher is better. Both over the policies with real-world rates; \"avg\" is on the open/close-"
             "averaged rates, as SIMPLER reports it. Brackets: bootstrap intervals."
             + (" Paired: against the run's real-world domain on the same trials and seeds." if self.paired
                else "")),
            "",
        ]
        if self.paired_note:
            lines += [f"> Not paired: {self.paired_note}.", ""]
        lines += [
            "| domain | episodes | MMRV avg | r avg | MMRV open | r open | MMRV close | r close |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for domain in self.domains:
            cells = []
            for column in ("average", "open", "close"):
                value = domain.agreement[column]
                cells += [_metric_cell(value.mmrv, value.mmrv_interval),
                          _r_cell(value)] if value else ["-", "-"]
            lines.append(f"| {domain.name} | {domain.episodes} | " + " | ".join(cells) + " |")
        spreads = [(domain, domain.agreement_over_seeds.get("average")) for domain in self.domains]
        if any(spread for _, spread in spreads):
            lines += [
                "",
                f"### Spread over the {config.seeds} seeds",
                "",
                ("MMRV and r of the average rates computed from each seed's episodes alone (a seed fixes the "
                 "diffusion noise and the robot's start jitter): mean +- standard deviation, and each seed's value."),
                "",
                "| domain | MMRV avg | r avg | MMRV per seed | r per seed |",
                "| --- | ---: | ---: | --- | --- |",
            ]
            for domain, spread in spreads:
                if spread:
                    undefined = len(spread.pearson_r) - len(spread.defined_pearson_r)
                    r_mean = ("undefined" if not spread.defined_pearson_r else
                              f"{spread.pearson_r_mean:.3f} +- {spread.pearson_r_sd:.3f}"
                              + (f" ({undefined} seed(s) undefined)" if undefined else ""))
                    lines.append(
                        f"| {domain.name} | {spread.mmrv_mean:.3f} +- {spread.mmrv_sd:.3f} | {r_mean} | "
                        + ", ".join(f"{v:.3f}" for v in spread.mmrv) + " | "
                        + ", ".join(_r_point(v) for v in spread.pearson_r) + " |")
        if self.miniature:
            lines += ["", *_miniature_markdown(self.miniature)]
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
                    f"| {style} | {_fmt(a and a.mmrv)} | {_fmt(b and b.mmrv)} | {_r_point(a and a.pearson_r, a)} | "
                    f"{_r_point(b and b.pearson_r, b)} |"
                )
        lines += ["", "## Success rates", "",
                  (f"Rates with {1 - self.alpha:.0%} cluster-bootstrap intervals (`*`: Clopper-Pearson over the "
                   "trials, where the cluster bootstrap cannot vary), episode and trial counts; real-world rates "
                   f"from `{_table_label(self.config)}`."), ""]
        if _policy_rate_views(self):
            lines += [f"![Every domain's average success per policy against the real world's]({POLICY_RATES_PLOT})",
                      ""]
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
            if domain.domain in SEED_FREE_DOMAINS and config.seeds > 1 and simulator_ignores_seed(config):
                counts = [(rates.policy, rates.average) for rates in domain.rates if rates.average is not None]
                lines += ["", (f"Independent episodes per policy ({domain.name} depends on the simulator's state "
                               "alone, and the simulator ignores the reset seed: a deterministic policy's episodes "
                               "of one trial repeat at every seed; they are run once, the other seeds stored as "
                               "copies that count zero): " + "; ".join(
                                   f"{policy} {estimate.independent_episodes} of {estimate.episodes}"
                                   for policy, estimate in counts) + ".")]
            if domain.rates_by_urdf_version:
                urdfs = list(domain.rates_by_urdf_version)
                lines += ["", f"Average success by robot URDF version ({domain.name}):", "",
                          "| policy | " + " | ".join(urdfs) + " |", "| --- |" + " --- |" * len(urdfs)]
                for index, rates in enumerate(domain.rates):
                    lines.append(f"| {rates.policy} | " + " | ".join(
                        _estimate_cell(domain.rates_by_urdf_version[urdf][index].average) for urdf in urdfs) + " |")
            if domain.rates_by_variant:
                variants = list(domain.rates_by_variant)
                lines += ["", f"Average success by scene variant ({domain.name}; the tables above average them):",
                          "", "| policy | " + " | ".join(variants) + " |", "| --- |" + " --- |" * len(variants)]
                for index, rates in enumerate(domain.rates):
                    lines.append(f"| {rates.policy} | " + " | ".join(
                        _estimate_cell(domain.rates_by_variant[variant][index].average) for variant in variants) + " |")
            lines += ["", f"![{domain.name}: simulated vs real success]({domain.plot})", ""]
        return "\n".join(lines).rstrip() + "\n"


def build_report(run_dir: str | Path, n_boot: int = BOOTSTRAP_DRAWS, alpha: float = 0.05,
                 real_rates_exact: bool = False) -> Report:
    """The report of ``run_dir``, computed from its episode database alone (the stored config's episodes), and
    from its ``real_episodes.csv`` where it has one (`evaluation.real_episodes`: real success estimates).

    ``real_rates_exact``: take the real-world table's rates as exact in the agreement intervals (by default each
    draw redraws them from the table's trial counts)."""
    store = ResultStore.open(run_dir)
    episodes = store.episodes()
    config = store.config
    table = real_world_success(config.real_world_table)
    summary = Path(run_dir) / MINIATURE_JSON
    miniature = json.loads(summary.read_text()) if summary.is_file() else None
    report = Report(config, len(episodes), table, other_config_rows=store.other_config_rows(), n_boot=n_boot,
                    alpha=alpha, miniature=miniature, real_rates_exact=real_rates_exact,
                    disagreements=sim_real_disagreements(config, episodes))
    by_key = {episode.key: episode for episode in episodes}
    report.videos = [{**record.to_json(), "success": by_key[record.key].success, "steps": by_key[record.key].steps}
                     for record in read_video_index(run_dir, set(by_key))]
    real_names = {policy.name: policy.real_world_name if policy.real_world_name in table else None
                  for policy in config.policies}
    view_episodes = episodes_by_view(config, episodes)
    for name, domain, style, chosen in view_episodes:
        by_policy = {policy: [e for e in chosen if e.policy == policy] for policy in real_names}
        rates = tuple(_policy_rates(policy, real_names[policy], by_policy[policy], n_boot, alpha, config)
                      for policy in real_names)
        agreement = dict.fromkeys(COLUMNS)  # measured below, against the table or the run's real-world domain
        by_urdf = {}
        if len(config.urdf_versions) > 1:
            by_urdf = {urdf: tuple(_policy_rates(policy, real_names[policy],
                                                 [e for e in by_policy[policy] if e.urdf_version == urdf],
                                                 n_boot, alpha, config) for policy in real_names)
                       for urdf in config.urdf_versions}
        over_seeds = {}
        if config.seeds > 1 and REAL not in config.domains:
            over_seeds = {column: _seed_spread(by_policy, real_names, table, column, config.seeds)
                          for column in COLUMNS}
        by_variant = {}
        if config.setting == VARIANT_AGGREGATION:
            by_variant = {variant: tuple(_policy_rates(policy, real_names[policy],
                                                       [e for e in by_policy[policy] if _variant(e) == variant],
                                                       n_boot, alpha, config) for policy in real_names)
                          for variant in config.variants()}
        plot = f"{PLOTS_DIR}/scatter_{_slug(name)}.png"
        report.domains.append(DomainReport(name, domain, style, len(chosen), rates, agreement, plot, by_urdf,
                                           over_seeds, by_variant))
    if REAL in config.domains:
        _add_paired_agreement(report, episodes, n_boot, alpha)
    else:
        _add_table_agreement(report, episodes, n_boot, alpha)
    real_file = Path(run_dir) / REAL_EPISODES_CSV
    if real_file.is_file():
        real = read_real_episodes(real_file, config)
        report.real_episodes_file = REAL_EPISODES_CSV
        report.real_success = real_success_entries(
            config, [(name, domain, chosen) for name, domain, _, chosen in view_episodes], real, alpha=alpha)
    return report


def _add_paired_agreement(report: Report, episodes: list[EpisodeResult], n_boot: int, alpha: float) -> None:
    """Replaces every domain's agreement by the paired one against the run's real-world domain: sim and real
    rates from the same trials and reset seeds, one joint bootstrap for all policies and domains."""
    config = report.config
    views = [d for d in report.domains if d.style != ALL_STYLES]
    paired = paired_outcomes(config, episodes, [(view.name, view.domain, view.style) for view in views])
    if paired is None:
        report.paired_note = ("the paired analysis needs every policy's episode of every trial and seed in every "
                              "domain; this run is incomplete, so agreement is against the real-world table")
        _add_table_agreement(report, episodes, n_boot, alpha)
        return
    baseline = UNEDITED if UNEDITED in paired.domains else next(v.name for v in views if v.name != REAL)
    joint = joint_bootstrap(paired, reference=REAL, baseline=baseline, n_boot=n_boot, alpha=alpha,
                            seed=BOOTSTRAP_SEED)
    for index, view in enumerate(report.domains):
        if view.name not in joint.domains and view.name != REAL:
            continue
        agreement: dict[str, Agreement | None] = dict.fromkeys(COLUMNS)
        if view.name != REAL:
            for column, value in joint.domains[view.name].columns.items():
                agreement[column] = Agreement(
                    value.mmrv, None if np.isnan(value.pearson_r) else value.pearson_r, paired.policies,
                    value.mmrv_interval, value.pearson_r_interval, reference=REAL, mae=value.mae,
                    mae_interval=value.mae_interval, episode_agreement=value.agreement,
                    episode_agreement_interval=value.agreement_interval,
                    pearson_r_undefined_share=value.pearson_r_undefined_share, ties=value.tied_pairs,
                    reference_draws=joint.reference_draws)
        report.domains[index] = replace(view, agreement=agreement)
    report.differences = _differences(joint)
    transfer = next((v.name for v in views if v.domain == COLOUR_TRANSFER), None)
    if transfer is not None and transfer != baseline:  # the same seed: the same resampled trials
        report.versus_colour_transfer = _differences(joint_bootstrap(
            paired, reference=REAL, baseline=transfer, n_boot=n_boot, alpha=alpha, seed=BOOTSTRAP_SEED))
    if CEILING in paired.domains and UNEDITED in paired.domains:
        # Simulated experiments of this run's size from its own unedited, ceiling and real episodes.
        report.power = power_of_gap(paired, ceiling=CEILING, baseline=UNEDITED, reference=REAL,
                                    n_simulations=POWER_SIMULATIONS, n_boot=POWER_DRAWS, alpha=alpha,
                                    seed=BOOTSTRAP_SEED).to_json()


def _differences(joint) -> list[Difference]:
    return [Difference(d.domain, d.versus, d.metric, d.column, None if np.isnan(d.value) else d.value, d.interval,
                       d.undefined_share) for d in joint.differences]


def paired_outcomes(config: EvalConfig, episodes: list[EpisodeResult],
                    views: list[tuple[str, str, str]]) -> PairedOutcomes | None:
    """Outcomes[view][policy] as (trials, repeats) arrays for the (name, domain, style) views: rows in the
    config's trial order, columns the (URDF version, seed) pairs; None if any episode is missing."""
    trials = config.trial_list()
    repeats = [(urdf, seed) for urdf in config.urdf_versions for seed in range(config.seeds)]
    index = {(e.domain, e.style, e.policy, e.task, e.pose, e.urdf_version, e.seed): e.success for e in episodes}
    outcomes: dict[str, dict[str, np.ndarray]] = {}
    for name, domain, style in views:
        outcomes[name] = {}
        for policy in config.policies:
            values = np.full((len(trials), len(repeats)), np.nan)
            for row, trial in enumerate(trials):
                for column, (urdf, seed) in enumerate(repeats):
                    key = (domain, style, policy.name, trial.task.name, trial.pose, urdf, seed)
                    if key in index:
                        values[row, column] = index[key]
            if np.isnan(values).any():
                return None
            outcomes[name][policy.name] = values
    return PairedOutcomes(tuple(trial.task.action for trial in trials), outcomes)


def write_report(run_dir: str | Path, real_rates_exact: bool = False,
                 real_episodes: str | Path | None = None) -> Report:
    """Builds the report of ``run_dir`` and writes report.md, report.json, plots/ and report.html (the page
    with the tables, plots and videos; `evaluation.report_html`) there, each file replaced whole, so a
    concurrent reader never sees half of one. ``real_rates_exact``: see `build_report`.
    ``real_episodes``: a CSV of real episodes (`evaluation.real_episodes`), checked against the run and copied
    into the run folder as ``real_episodes.csv`` (replacing any earlier one), so that later rebuilds keep it."""
    run_dir = Path(run_dir)
    if real_episodes is not None:
        add_real_episodes(run_dir, real_episodes)
    report = build_report(run_dir, real_rates_exact=real_rates_exact)
    document = report.to_json()
    write_text_atomically(run_dir / REPORT_JSON, json.dumps(document, indent=2) + "\n")
    write_text_atomically(run_dir / REPORT_MARKDOWN, report.to_markdown())
    write_plots(report, run_dir)
    write_text_atomically(run_dir / REPORT_HTML, report_html(document, run_dir))
    return report


def add_real_episodes(run_dir: str | Path, path: str | Path) -> Path:
    """Checks the real-episodes CSV ``path`` against the run in ``run_dir`` (its policies and trials) and copies
    it into the run folder as ``real_episodes.csv``; returns the copy's path."""
    run_dir, path = Path(run_dir), Path(path)
    read_real_episodes(path, ResultStore.open(run_dir).config)
    target = run_dir / REAL_EPISODES_CSV
    if not (target.exists() and target.resolve() == path.resolve()):
        write_text_atomically(target, path.read_text(encoding="utf-8-sig"))
    return target


def write_plots(report: Report, run_dir: Path) -> list[Path]:
    """A sim-vs-real scatter plot per domain (average rates, with intervals), a summary of the metrics, and
    every domain's rate per policy beside the real one (`POLICY_RATES_PLOT`).

    Every figure is laid out by matplotlib's constrained layout and sized from what it holds (the number of
    domains and panels, the longest domain name); long names are wrapped, so that no label is cut off at the
    figure's edge or runs into a neighbouring panel's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (run_dir / PLOTS_DIR).mkdir(exist_ok=True)
    figures = [(domain.plot, _scatter_figure(plt, report, domain)) for domain in report.domains]
    agreement = _agreement_figure(plt, report)
    if agreement is not None:
        figures.append((f"{PLOTS_DIR}/agreement.png", agreement))
    policy_rates = _policy_rates_figure(plt, report)
    if policy_rates is not None:
        figures.append((POLICY_RATES_PLOT, policy_rates))
    written = []
    for name, figure in figures:
        path = run_dir / name
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written


def _paired_real_rates(report: Report) -> dict[str, PolicyRates]:
    """The run's own real-world rates per policy, where agreement is measured against them (paired runs)."""
    return {rates.policy: rates for rates in report.domain(REAL).rates} if report.paired else {}


def _scatter_figure(plt, report: Report, domain: DomainReport):
    stand_ins = {policy.name: policy.is_stand_in for policy in report.config.policies}
    paired_real = _paired_real_rates(report)
    figure, axes = plt.subplots(figsize=(4.8, 4.8), layout="constrained")
    axes.plot([0, 1], [0, 1], color="0.7", linewidth=1, linestyle="--")
    labels = []
    for rates in domain.rates:
        real = report.real_world.get(rates.real_world_name or "")
        if rates.policy in paired_real and paired_real[rates.policy].average is not None:
            twin = paired_real[rates.policy]
            real = RealWorldSuccess(twin.open.rate, twin.close.rate, twin.average.trials)
        if real is None or rates.average is None:
            continue
        estimate = rates.average
        points = axes.plot(real.average, estimate.rate, "o")
        axes.errorbar(real.average, (estimate.low + estimate.high) / 2, yerr=(estimate.high - estimate.low) / 2,
                      fmt="none", capsize=3, ecolor=points[0].get_color())
        label = rates.real_world_name or rates.policy  # paired runs plot policies without a table row too
        if stand_ins[rates.policy] and rates.real_world_name:
            label = f"{rates.policy}\n(as {rates.real_world_name})"
        labels.append((real.average, estimate.rate, _wrap_label(label, 24), points[0].get_color()))
    value = domain.agreement["average"]
    subtitle = (f"MMRV {_metric_cell(value.mmrv, value.mmrv_interval)}\nr {_r_cell(value)}" if value
                else "too few policies for metrics")
    axes.set(xlim=(-0.05, 1.05), ylim=(-0.05, 1.12), xlabel="real-world success (avg)",
             ylabel="simulated success (avg)")
    axes.set_title(f"{_wrap_label(domain.name, 40)}\n{subtitle}", fontsize=10)
    if report.is_demo:  # below the axes, where no point's label can cover it
        figure.supxlabel("tiny preset: stand-ins, not real results", x=0.98, ha="right", fontsize=7,
                         color="crimson")
    _place_point_labels(figure, axes, labels)
    return figure


def _place_point_labels(figure, axes, labels: list[tuple[float, float, str, str]]) -> None:
    """Labels the points (x, y, text, colour) of ``axes`` in their colours, each where it stays inside the axes and clear of the labels
    placed before it: towards the middle of the axes first (left of a point in the right half, below a point
    near the top), then the other corners, then further away; where nothing fits, the first place."""
    figure.draw_without_rendering()  # the constrained layout fixes where the axes lie
    renderer = figure.canvas.get_renderer()
    area = axes.get_window_extent(renderer)
    placed = []
    for x, y, text, colour in labels:
        towards_x, towards_y = (-1 if x > 0.5 else 1), (-1 if y > 0.8 else 1)
        corners = [(towards_x, towards_y), (towards_x, -towards_y), (-towards_x, towards_y), (-towards_x, -towards_y)]
        places = [(6 * sx, sy * distance, sx, sy) for distance in (6, 18, 30) for sx, sy in corners]
        for index, (dx, dy, sx, sy) in enumerate([*places, places[0]]):
            note = axes.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=7,
                                 color=colour, ha="left" if sx > 0 else "right", va="bottom" if sy > 0 else "top")
            box = note.get_window_extent(renderer)
            inside = area.x0 <= box.x0 and box.x1 <= area.x1 and area.y0 <= box.y0 and box.y1 <= area.y1
            if index == len(places) or (inside and not any(box.overlaps(other) for other in placed)):
                placed.append(box)
                break
            note.remove()


def _agreement_figure(plt, report: Report):
    """MMRV, Pearson r (and MAE, paired) of each domain's average rates with their intervals, side by side;
    None where no domain has them."""
    measured = [d for d in report.domains if d.agreement["average"] is not None]
    if not measured:
        return None
    averages = [d.agreement["average"] for d in measured]
    nan_interval = (float("nan"), float("nan"))
    panels = [("MMRV (avg) with 95% interval, lower is better", [v.mmrv for v in averages],
               [v.mmrv_interval or nan_interval for v in averages], "tab:red"),
              ("Pearson r (avg) with 95% interval, higher is better",
               [np.nan if v.pearson_r is None else v.pearson_r for v in averages],
               [v.pearson_r_interval or nan_interval for v in averages], "tab:blue")]
    if report.paired:
        panels.insert(0, ("MAE |sim - real| (avg) with 95% interval, lower is better",
                          [v.mae for v in averages], [v.mae_interval or nan_interval for v in averages],
                          "tab:purple"))
    names = [_wrap_label(d.name, 32) for d in measured]
    width = _label_width_inches(names) + 3.1 * len(panels) + 0.3
    figure, axes_row = plt.subplots(1, len(panels), figsize=(width, 0.45 * len(measured) + 1.9), sharey=True,
                                    layout="constrained")
    positions = np.arange(len(measured))
    for axes, (label, values, intervals, colour) in zip(axes_row, panels):
        values = np.array(values, dtype=float)
        axes.barh(positions, np.nan_to_num(values), color=colour)
        # Drawn from the interval's own ends: a bootstrap interval need not contain the point estimate.
        lows, highs = np.array(intervals, dtype=float).T
        axes.errorbar((lows + highs) / 2, positions, xerr=(highs - lows) / 2, fmt="none", capsize=3,
                      ecolor="0.3")
        # Each value right of its bar and interval, wherever either ends; the limits below leave room for it.
        ends = np.nan_to_num(np.fmax(np.fmax(values, highs), 0.0))
        for position, value, end in zip(positions, values, ends):
            text = "undefined" if np.isnan(value) else f"{value:.3f}"
            axes.annotate(text, (end, position), textcoords="offset points", xytext=(4, 0), va="center",
                          fontsize=8)
        axes.set_xlabel(_wrap_label(label, 34), fontsize=8)
        axes.tick_params(axis="x", labelsize=8)
    mmrv_axes, r_axes = axes_row[-2], axes_row[-1]
    highest_mmrv = max(max([value.mmrv, *(value.mmrv_interval or ())]) for value in averages)
    mmrv_axes.set_xlim(0, max(0.1, 1.35 * highest_mmrv))
    r_axes.set_xlim(-1.05, 1.4)
    r_axes.set_xticks([-1, -0.5, 0, 0.5, 1])
    if report.paired:
        axes_row[0].set_xlim(0, max(0.1, 1.35 * max(max([value.mae, *(value.mae_interval or ())])
                                                    for value in averages)))
    axes_row[0].set(yticks=positions, yticklabels=names)
    axes_row[0].invert_yaxis()
    return figure


def _policy_rate_views(report: Report) -> list[DomainReport]:
    """The rows of the per-policy figure: every simulated view with an average rate (a paired run's own real
    world is the figure's reference, not a row)."""
    return [d for d in report.domains if d.domain != REAL and any(r.average is not None for r in d.rates)]


def _real_reference(report: Report, policy: PolicySpec) -> tuple[float, float, float, str] | None:
    """A policy's real average success rate, its interval and where both come from: the run's own real-world
    episodes (paired runs), else the real-world table's row, with an exact Clopper-Pearson interval over the
    row's open and close trials; None where the policy has neither."""
    paired = _paired_real_rates(report)
    if paired:
        estimate = paired[policy.name].average if policy.name in paired else None
        return None if estimate is None else (estimate.rate, estimate.low, estimate.high, "the run's real episodes")
    real = report.real_world.get(policy.real_world_name or "")
    if real is None:
        return None
    trials = real.trials_for("open") + real.trials_for("close")
    low, high = clopper_pearson(real.average * trials, trials, report.alpha)
    return real.average, low, high, f"{_table_label(report.config)}, Clopper-Pearson over its trials"


def _policy_rates_figure(plt, report: Report):
    """One panel per policy: each domain's average success rate with its interval (a row per domain, coloured
    by the kind of domain, a diamond where the styles are pooled) against the policy's real rate (dashed) and
    its interval (grey band). None where no domain has a rate."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    views = _policy_rate_views(report)
    if not views:
        return None
    policies = report.config.policies
    rows = -(-len(policies) // 4)  # at most four panels a row, the rows as even as they go
    columns = -(-len(policies) // rows)
    names = [_wrap_label(view.name, 32) for view in views]
    lines = sum(name.count("\n") + 1 for name in names)
    figure, grid = plt.subplots(rows, columns, sharex=True, sharey=True, squeeze=False, layout="constrained",
                                figsize=(_label_width_inches(names) + 2.6 * columns + 0.4,
                                         rows * (0.22 * lines + 0.08 * len(views) + 1.1) + 1.3))
    colours = {domain: f"C{index}" for index, domain in enumerate(DOMAINS)}
    positions = np.arange(len(views))
    sources = set()
    for axes, policy in zip(grid.flat, policies):
        reference = _real_reference(report, policy)
        if reference is not None:
            rate, low, high, source = reference
            sources.add(source)
            axes.axvspan(low, high, color="0.88", zorder=0, gid="real-world interval")
            axes.axvline(rate, color="0.3", linestyle="--", linewidth=1, zorder=1, gid="real-world rate")
        for position, view in zip(positions, views):
            estimate = next(r.average for r in view.rates if r.policy == policy.name)
            if estimate is None:
                continue
            colour = colours[view.domain]
            # Drawn from the interval's own ends: a bootstrap interval need not contain the point estimate.
            axes.errorbar((estimate.low + estimate.high) / 2, position, xerr=(estimate.high - estimate.low) / 2,
                          fmt="none", ecolor=colour, capsize=2, label=view.name)
            axes.plot(estimate.rate, position, "D" if view.style == ALL_STYLES else "o", color=colour,
                      markersize=4.5, zorder=3)
        if reference is None:
            about = "no real-world rate"
        elif policy.is_stand_in and policy.real_world_name:
            about = f"stand-in for {policy.real_world_name}"
        else:
            about = f"real: {policy.real_world_name or 'paired real episodes'}"
        axes.set_title(f"{_wrap_label(policy.name, 30)}\n({_wrap_label(about, 30)})", fontsize=9)
        axes.grid(axis="x", color="0.92", zorder=0)
        axes.tick_params(labelsize=8)
    for axes in grid.flat[len(policies):]:
        axes.set_visible(False)
    for column in range(columns):  # the lowest panel of each column carries the x axis
        lowest = [grid[row, column] for row in range(rows) if row * columns + column < len(policies)][-1]
        lowest.xaxis.set_tick_params(labelbottom=True)
        lowest.set_xlabel("success rate (open/close average)", fontsize=8)
    grid[0, 0].set(yticks=positions, yticklabels=names, xlim=(-0.03, 1.03), ylim=(len(views) - 0.5, -0.5))
    handles = [Line2D([], [], color="0.3", marker="o", linestyle="-", markersize=4.5),
               (Patch(color="0.88"), Line2D([], [], color="0.3", linestyle="--", linewidth=1))]
    labels = [f"simulated domain, {1 - report.alpha:.0%} interval (diamond: styles pooled)",
              f"real world, {1 - report.alpha:.0%} interval ({'; '.join(sorted(sources)) or 'none'})"]
    legend = figure.legend(handles, [_wrap_label(label, 60) for label in labels], loc="outside lower center",
                           ncols=2 if columns > 1 else 1, fontsize=8, frameon=False,
                           title="tiny preset: stand-ins, not real results" if report.is_demo else None,
                           title_fontproperties={"size": 7})
    legend.get_title().set_color("crimson")
    figure.suptitle("Average success per policy: every domain against the real world", fontsize=10)
    return figure


def _label_width_inches(labels: list[str], fontsize: float = 10) -> float:
    """A generous estimate of the widest line of ``labels`` in inches (DejaVu Sans averages about 0.55 em)."""
    longest = max((len(line) for label in labels for line in label.split("\n")), default=0)
    return longest * 0.6 * fontsize / 72


def _wrap_label(text: str, width: int) -> str:
    """``text`` in lines of at most ``width`` characters, broken after a space, '-', '_' or '/' where it can
    be (a checkpoint folder's name has no spaces), inside a word where it must; its own line breaks kept."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for piece in re.findall(r"[^ _/-]*[ _/-]|[^ _/-]+$", paragraph):
            if line and len(line) + len(piece.rstrip()) > width:
                lines.append(line.rstrip())
                line = ""
            while len(piece) > width:
                lines.append(piece[:width])
                piece = piece[width:]
            line += piece
        lines.append(line.rstrip())
    return "\n".join(lines)


def report_views(config: EvalConfig) -> list[tuple[str, str, str]]:
    """(name, domain, style) of every view of the report, in report order."""
    views = [(domain, domain, "") for domain in DOMAINS if domain in config.domains and domain not in STYLED_DOMAINS]
    for domain in DOMAINS:  # the reading order, not the run order
        if domain in STYLED_DOMAINS and domain in config.domains:
            views += [(view_name(domain, style), domain, style) for style in config.styles]
            if len(config.styles) > 1:
                views.append((f"{domain} ({ALL_STYLES})", domain, ALL_STYLES))
    return views


def episodes_by_view(config: EvalConfig, episodes: list[EpisodeResult]
                     ) -> list[tuple[str, str, str, list[EpisodeResult]]]:
    """(name, domain, style, its episodes) of every view of the report that has episodes, in report order."""
    views = []
    for name, domain, style in report_views(config):
        chosen = [e for e in episodes if e.domain == domain and (style in ("", ALL_STYLES) or e.style == style)]
        if chosen:
            views.append((name, domain, style, chosen))
    return views


def _trial_outcomes(episodes: list[EpisodeResult], action: str) -> TrialOutcomes:
    """One array of 0/1 outcomes per trial of ``action``, in trial order: the clusters of the bootstrap."""
    trials: dict[tuple[str, str], list[bool]] = {}
    for episode in episodes:
        if episode.action == action:
            trials.setdefault((episode.task, episode.pose), []).append(episode.success)
    return [np.array(outcomes, dtype=np.float64) for _, outcomes in sorted(trials.items())]


def _column_strata(episodes: list[EpisodeResult], column: str) -> list[TrialOutcomes] | None:
    """The rate groups of a column: open or close trials, or both for the open/close average; None if a
    group has no episodes."""
    actions = ("open", "close") if column == "average" else (column,)
    strata = [_trial_outcomes(episodes, action) for action in actions]
    return strata if all(strata) else None


def _policy_rates(
    policy: str, real_world_name: str | None, episodes: list[EpisodeResult], n_boot: int, alpha: float,
    config: EvalConfig,
) -> PolicyRates:
    estimates = {}
    for column in COLUMNS:
        strata = _column_strata(episodes, column)
        if strata is None:
            estimates[column] = None
            continue
        actions = ("open", "close") if column == "average" else (column,)
        independent = independent_episodes((e for e in episodes if e.action in actions), config)
        interval = rate_interval(strata, n_boot=n_boot, alpha=alpha, seed=BOOTSTRAP_SEED,
                                 independent_episodes=independent)
        estimates[column] = RateEstimate(
            trial_rate(strata), interval.low, interval.high,
            episodes=sum(trial.size for stratum in strata for trial in stratum),
            trials=sum(len(stratum) for stratum in strata), method=interval.method,
            independent_episodes=independent,
        )
    return PolicyRates(policy, real_world_name, estimates["open"], estimates["close"], estimates["average"])


def _add_table_agreement(report: Report, episodes: list[EpisodeResult], n_boot: int, alpha: float) -> None:
    """Every view's MMRV, r and MAE against the real-world table, over the policies with a row in it.

    The views where every such policy has every episode (each trial x URDF version x seed, x style for the
    pooled styles) share one joint bootstrap: the same resampled trials for every policy and view, and each
    draw redraws the table's rates as Binomial(trials, rate) / trials unless ``report.real_rates_exact``. Other
    views (a run in progress), and runs whose trials lack the open or the close task, get the values on the data
    without intervals."""
    config = report.config
    rows = {policy.name: report.real_world[policy.real_world_name] for policy in config.policies
            if policy.real_world_name in report.real_world}
    if len(rows) < 2:
        return
    actions = tuple(trial.task.action for trial in config.trial_list())
    outcomes = {}
    if set(actions) == {"open", "close"}:
        for view in report.domains:
            view_outcomes = _view_outcomes(config, episodes, view, list(rows))
            if view_outcomes is not None:
                outcomes[view.name] = view_outcomes
    joint = None
    if outcomes:
        joint = joint_bootstrap(PairedOutcomes(actions, outcomes), reference="table", baseline=None, n_boot=n_boot,
                                alpha=alpha, seed=BOOTSTRAP_SEED, reference_table=rows,
                                reference_exact=report.real_rates_exact)
    for index, view in enumerate(report.domains):
        agreement: dict[str, Agreement | None] = dict.fromkeys(COLUMNS)
        if joint is not None and view.name in joint.domains:
            for column, value in joint.domains[view.name].columns.items():
                agreement[column] = Agreement(
                    value.mmrv, None if np.isnan(value.pearson_r) else value.pearson_r, tuple(rows),
                    value.mmrv_interval, value.pearson_r_interval, reference="table", mae=value.mae,
                    mae_interval=value.mae_interval, pearson_r_undefined_share=value.pearson_r_undefined_share,
                    ties=value.tied_pairs, reference_draws=joint.reference_draws)
        else:
            by_policy = {policy: [e for e in episodes if e.domain == view.domain and e.policy == policy
                                  and (view.style in ("", ALL_STYLES) or e.style == view.style)] for policy in rows}
            agreement = {column: _point_agreement(by_policy, rows, column) for column in COLUMNS}
        report.domains[index] = replace(view, agreement=agreement)


def _view_outcomes(config: EvalConfig, episodes: list[EpisodeResult], view: DomainReport,
                   policies: list[str]) -> dict[str, np.ndarray] | None:
    """Outcomes[policy] of one view as (trials, repeats) arrays: rows in the config's trial order, columns the
    (style, URDF version, seed) triples of the view (every style for the pooled styles); None if any is missing."""
    styles = config.styles if view.style == ALL_STYLES else (view.style,)
    repeats = [(style, urdf, seed) for style in styles for urdf in config.urdf_versions for seed in range(config.seeds)]
    index = {(e.policy, e.task, e.pose, e.style, e.urdf_version, e.seed): e.success
             for e in episodes if e.domain == view.domain}
    outcomes = {}
    for policy in policies:
        try:
            outcomes[policy] = np.array([[index[(policy, trial.task.name, trial.pose, *repeat)] for repeat in repeats]
                                         for trial in config.trial_list()], dtype=np.float64)
        except KeyError:
            return None
    return outcomes


def _point_agreement(by_policy: dict[str, list[EpisodeResult]], rows: dict[str, RealWorldSuccess],
                     column: str) -> Agreement | None:
    """MMRV and r of ``column`` on the data, without intervals, over the policies with episodes in it."""
    sim, real = {}, {}
    for policy, episodes in by_policy.items():
        strata = _column_strata(episodes, column)
        if strata is not None:
            sim[policy], real[policy] = trial_rate(strata), getattr(rows[policy], column)
    if len(sim) < 2:
        return None
    r = _defined_pearson_r(sim, real)
    return Agreement(mmrv(sim, real), None if np.isnan(r) else r, tuple(sim), None, None, reference="table")


def _defined_pearson_r(sim: dict[str, float], real: dict[str, float]) -> float:
    """SIMPLER's Pearson r, or NaN where either side's rates are constant (where SIMPLER's formula gives 0)."""
    if np.ptp(list(sim.values())) == 0 or np.ptp(list(real.values())) == 0:
        return float("nan")
    return pearson_r(sim, real)


def _seed_spread(
    by_policy: dict[str, list[EpisodeResult]], real_names: dict[str, str | None],
    table: dict[str, RealWorldSuccess], column: str, seeds: int,
) -> SeedSpread | None:
    """MMRV and Pearson r of ``column`` from each seed's episodes alone; None where a seed lacks them."""
    mmrvs, correlations = [], []
    for seed in range(seeds):
        sim, real = {}, {}
        for policy, episodes in by_policy.items():
            strata = _column_strata([e for e in episodes if e.seed == seed], column)
            if strata is None or real_names[policy] is None:
                continue
            sim[policy] = trial_rate(strata)
            real[policy] = getattr(table[real_names[policy]], column)
        if len(sim) < 2:
            return None
        mmrvs.append(mmrv(sim, real))
        correlations.append(_defined_pearson_r(sim, real))
    return SeedSpread(tuple(mmrvs), tuple(correlations))


def _miniature_markdown(miniature: dict[str, Any]) -> list[str]:
    """The tiny preset's section: what the miniature is, its frames, its pieces and their measurements."""
    base = miniature["base"]
    lines = ["## The miniature", "", miniature["what"], ""]
    if miniature.get("figure"):
        lines += [(f"![simulator, edited, edited+composited and real-world frames of the same scenes]"
                   f"({miniature['figure']})"), ""]
    if base:
        lines.append(
            f"- **Tiny base** (trained on stand-in frames to reproduce its input, {base['seconds']:.0f} s): VAE "
            f"reconstruction {base['vae_psnr']:.1f} dB PSNR, the untrained specialist's edit {base['edit_psnr']:.1f} "
            f"dB (inside the cabinet {base['edit_cabinet_psnr']:.1f} dB), on 32 held-out frames.")
    lines += [
        ("- **Policy family** (CNN checkpoints of several behaviour-cloning runs; chosen before any edited "
         "evaluation, from real-world rates measured on selection seeds the evaluation never uses):"),
        "",
        "| policy | open | close | average | kept |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    selection = miniature.get("policy_selection") or {}
    kept = {c["name"]: c for c in selection.get("candidates", [])} if isinstance(selection, dict) else {}
    for name, rates in miniature["real_world"].items():
        reason = kept.get(name, {}).get("reason", "")
        lines.append(f"| {name} | {rates['open']:.3f} | {rates['close']:.3f} | {rates['average']:.3f} | {reason} |")
    if selection.get("rule"):
        lines += ["", f"  Selection rule: {selection['rule'].get('statement', selection['rule'])}"]
    lines += [
        "",
        ("- **Specialist** (D3PO from analytic judges on simulator frames - cabinet crops with exact masks; never a "
         "real-world frame), one per training seed, beside the baselines on held-out frames and noise seeds: the "
         "validation part for choices, the test part for reporting. total = structure + semantic (lower is "
         "better); outside / inside change = mean |edit - input| outside / inside the cabinet (grey levels); edges = "
         "correlation of the input's and the edit's edge strength inside the cabinet (1: every line kept); colour / "
         "sim = the cabinet material's mean colour over the simulator's, per channel."),
        "",
    ]
    for split in ("test", "validation"):
        cards = [card for card in miniature["scorecard"] if card.get("split", "unsplit") == split]
        if not cards:
            continue
        lines += [f"  {split.capitalize()} part:", "",
                  "| method | total | structure | semantic | outside change | inside change | edges | colour / sim |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        lines += [_scorecard_row(card) for card in cards]
        lines += _over_training_seeds(cards)
        lines.append("")
    seconds = ", ".join(f"{stage} {value:.0f} s" for stage, value in miniature["seconds"].items())
    lines += ["", f"- Build times of this run (0 s: found built): {seconds}.", ""]
    return lines


def _scorecard_row(card: dict[str, Any]) -> str:
    ratio = "/".join(f"{value:.2f}" for value in card.get("colour_ratio_to_sim") or ())
    edges = card.get("edge_structure")
    return (f"| {card['method']} | {card['total']:.3f} +- {card['total_spread']:.3f} | {card['structure']:.4f} | "
            f"{card['semantic']:.3f} | {card['outside_change']:.1f} | {card['inside_change']:.1f} | "
            f"{'-' if edges is None else f'{edges:.3f}'} | {ratio or '-'} |")


def _over_training_seeds(cards: list[dict[str, Any]]) -> list[str]:
    """Mean and spread of the trained and control totals over training seeds, beside identity and untrained."""
    groups = totals_by_method(cards)
    if all(len(totals) < 2 for totals in groups.values()):
        return []
    cells = [f"{method} {np.mean(totals):.3f} +- {_sample_sd(tuple(totals)):.3f} (n={len(totals)})"
             if len(totals) > 1 else f"{method} {totals[0]:.3f}" for method, totals in groups.items()]
    return ["", "  Over training seeds (mean +- sd of the total): " + "; ".join(cells) + "."]


def _json_number(value: float) -> float | None:
    return None if np.isnan(value) else value


def _real_rates(real: RealWorldSuccess | None) -> dict[str, float] | None:
    return {column: getattr(real, column) for column in COLUMNS} if real else None


def _table_label(config: EvalConfig) -> str:
    return config.real_world_table or "configs/real_world.yaml"


def _policy_label(name: str, real_world_name: str | None, stand_in: bool) -> str:
    if real_world_name is None:
        return f"{name} (no real-world rates)"
    return f"{name} (stand-in for {real_world_name})" if stand_in else f"{name} ({real_world_name})"


def _estimate_cell(estimate: RateEstimate | None) -> str:
    if estimate is None:
        return "-"
    marker = "" if estimate.method == "cluster bootstrap" else "*"
    independent = estimate.independent_episodes
    repeats = f", {independent} independent" if independent is not None and independent < estimate.episodes else ""
    return (f"{estimate.rate:.3f} [{estimate.low:.3f}, {estimate.high:.3f}]{marker} "
            f"(n={estimate.episodes}{repeats}, {estimate.trials} trials)")


def _r_cell(value: Agreement, share: bool = True) -> str:
    """r with its interval and (``share``) the share of draws where r is undefined; "undefined" where the rates
    are constant on the data (SIMPLER's formula would print 0)."""
    undefined = value.pearson_r_undefined_share
    note = f" (undef. {undefined:.0%})" if share and undefined is not None else ""
    if value.pearson_r is None:
        return "undefined" + note
    if value.pearson_r_interval is None:
        return f"{value.pearson_r:.3f}" + note
    return _metric_cell(value.pearson_r, value.pearson_r_interval) + note


def _r_point(r: float | None, value: Agreement | None = None) -> str:
    """An r without interval: "undefined" where it is (NaN, or None of an agreement that exists)."""
    if r is None:
        return "-" if value is None else "undefined"
    return "undefined" if np.isnan(r) else f"{r:.3f}"


def _metric_cell(value: float, interval: tuple[float, float] | None) -> str:
    if interval is None:
        return f"{value:.3f} (no interval: run incomplete)"
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def _variant(episode: EpisodeResult) -> str:
    """The scene variant of a variant-aggregation episode (its pose is ``variant/grid pose``)."""
    return episode.pose.partition("/")[0]


def _setting_description(config: EvalConfig) -> str:
    if config.setting != VARIANT_AGGREGATION:
        return ("SIMPLER's visual matching (real background overlays at the nine robot poses a0 ... c2); "
                "`--setting variant-aggregation` runs its other setting.")
    variants = config.variants()
    chosen = (f"all {len(SCENE_VARIANTS)}" if variants == tuple(SCENE_VARIANTS)
              else f"{len(variants)} of {len(SCENE_VARIANTS)}, the others left out of the run (`--variants`)")
    return (f"SIMPLER's **variant aggregation**: scene variants {', '.join(f'`{v}`' for v in variants)} ({chosen}) "
            "x 6 tasks x a 3x3 robot grid, no real background. As in SIMPLER's metrics, a policy's open (close) "
            "success is averaged over its open (close) tasks in every variant (each variant weighs the same where "
            "its trials are complete) and the average is the mean of open and close.")


def _urdf_description(urdf_versions: tuple[str, ...]) -> str:
    names = ", ".join(f"`{name}`" for name in urdf_versions)
    if urdf_versions == URDF_VERSIONS:
        return (f"{names}: SIMPLER's four visual-matching versions; rates pool them, as SIMPLER's published "
                "numbers average them.")
    if urdf_versions == (DEFAULT_URDF_VERSION,):
        return f"{names} (the paper's protocol; SIMPLER's published numbers average four, `--urdf-versions all`)."
    return f"{names} (a subset of SIMPLER's four; rates pool them)."


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name.replace("+", " plus ")).strip("-").lower()
