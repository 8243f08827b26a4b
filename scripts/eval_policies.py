"""Evaluate policies in the unedited and the edited simulators, and report how well each predicts the real world.

    python scripts/eval_policies.py --preset tiny                        # the paper in miniature, on a CPU
    python scripts/eval_policies.py --preset tiny --material wood        # ... with a wood real world
    python scripts/eval_policies.py --checkpoints ckpts/rt_1_tf_trained_for_000400120 ... --run-dir runs/rt1
    python scripts/eval_policies.py --report runs/rt1                    # rebuild the report from the database
    python scripts/eval_policies.py --ray auto --run-dir runs/rt1        # on the Ray cluster of `ray start`

The full preset is the paper's protocol: the four RT-1 checkpoints (default: under
$SIM2REAL_EDIT_HOME/checkpoints) x 54 trials x 3 seeds x 7 styles, plus the unedited simulator, in both
edited variants ("edited": the paper's; "edited+composited": only the cabinet's exact pixels are edited).
Episodes end and are judged as in SIMPLER's evaluator: at the policy's terminate or the step limit, success
at that last step. The paper ran one robot URDF (recolor_cabinet_visual_matching_1, the default);
--urdf-versions all runs SIMPLER's four (its published visual-matching numbers average them).
Every finished episode goes into RUN_DIR/episodes.sqlite at once; run the same command again after a crash
and it continues where it stopped. One run writes a run folder at a time (a second one is refused and told
who holds it). RUN_DIR/report.md, report.json and plots/ hold the report.

With --ray, the episodes are spread over Ray workers (one per GPU by default), each holding its policies
and vector envs loaded once; this process stays the database's only writer, with the same resume guarantee.
Without --ray, Ray is never imported.

The tiny preset is the paper's experiment in miniature, offline on a CPU - not SIMPLER, RT-1 or a real robot:
it builds (once, cached under $SIM2REAL_EDIT_HOME/tiny) a tiny InstructPix2Pix base trained to reproduce
stand-in frames, CNN policies trained by behaviour cloning in a miniature real world (white-marble cabinet,
warm light, camera noise) whose success there is the real-world table, and a white-marble specialist trained
by D3PO on simulator frames only; then it evaluates the policies in the plain and both edited simulators over
3 seeds. With --policies it runs the given scripted stand-in policies instead (no miniature).
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sim2real_edit import cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("--report", metavar="RUN_DIR", help="only rebuild the report of RUN_DIR from its database")
    parser.add_argument("--preset", choices=["full", "tiny"], default="full",
                        help="full: the paper's protocol; tiny: the paper in miniature on a CPU (default: full)")
    parser.add_argument("--small", action="store_true",
                        help="tiny preset: the tests' minutes-sized miniature (runs every step, not to its quality)")
    parser.add_argument("--material",
                        help="tiny preset: the real world's cabinet, a style of configs/styles.yaml (default: "
                             "white_marble); the miniature is built for it and run in runs/eval-tiny-<material>")
    parser.add_argument("--policies", "--checkpoints", nargs="+", dest="policies", metavar="POLICY",
                        help="RT-1 checkpoint folders, or scripted policy names (tiny preset: scripted-expert, "
                             "scripted-good, scripted-poor, scripted-random)")
    parser.add_argument("--checkpoint-root", help="folder holding the four published RT-1 checkpoints "
                                                  "(full preset default: $SIM2REAL_EDIT_HOME/checkpoints)")
    parser.add_argument("--trials", nargs="+", help="trial keys (OpenTopDrawer/a0) or task names (all poses), "
                                                    "or 'all' (default: all 54; tiny: 12)")
    parser.add_argument("--seeds", type=cli.positive_int,
                        help="diffusion seeds per trial (default 3; tiny: 3, 1 with --policies)")
    parser.add_argument("--styles", nargs="+", help="styles of configs/styles.yaml, or 'all' (default: all; "
                                                    "tiny: white_marble, wood with --policies)")
    parser.add_argument("--domains", nargs="+",
                        choices=["unedited", "edited", "edited+composited", "edited+crop", "colour-transfer",
                                 "gain-oracle", "ceiling", "floor", "real"],
                        help="visual domains (default: unedited, edited, edited+composited; tiny: every domain, the "
                             "miniature real world's included; gain-oracle, ceiling, floor and real need the tiny "
                             "preset)")
    parser.add_argument("--urdf-versions", nargs="+", metavar="URDF",
                        help="robot URDF versions of SIMPLER's visual matching, or 'all' for its four "
                             "(default: recolor_cabinet_visual_matching_1, the paper's; 'none' is SIMPLER's None)")
    parser.add_argument("--setting", choices=["visual-matching", "variant-aggregation"], default="visual-matching",
                        help="SIMPLER's drawer setting: visual matching (real background overlays, 54 trials) or "
                             "variant aggregation (7 simulated scene variants x 6 tasks x a 3x3 robot grid, 378 "
                             "trials, SIMPLER's original robot URDF; SIMPLER only, not --preset tiny)")
    parser.add_argument("--variants", nargs="+", metavar="VARIANT",
                        help="variant aggregation only: its scene variants to run, or 'all' (default): base, bedroom, "
                             "office, brighter, darker, station2, station3. The run refuses to start while a chosen "
                             "variant's SIMPLER asset is missing and names it; the report averages over the variants "
                             "run")
    parser.add_argument("--max-episode-steps", type=cli.positive_int, help="step limit (default 113; tiny: 48)")
    parser.add_argument("--edit-steps", type=cli.positive_int,
                        help="denoising steps per edit (default 20; tiny: the specialist's 3)")
    parser.add_argument("--edit-short-side", type=cli.positive_int,
                        help="edit frames at this short side (default 256; tiny: 64)")
    parser.add_argument("--sentence-encoder", help="RT-1's Universal Sentence Encoder: TF-Hub URL or local folder")
    parser.add_argument("--run-dir", help="run folder (default: runs/eval-<preset>)")
    parser.add_argument("--num-envs", type=cli.positive_int, help="envs per vector env (default 8; tiny: 12)")
    parser.add_argument("--vectorization", choices=["async", "sync"],
                        help="simulators in subprocesses or in this process (default async; tiny: sync)")
    parser.add_argument("--device", help="device of the editing specialists (default: cuda if available)")
    parser.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], help="of the editing specialists")
    parser.add_argument("--torch-threads", type=cli.positive_int, help="torch intra-op threads (tiny default: 1)")
    parser.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                        help="run on Ray: 'auto' joins the cluster of `ray start`, ray://HOST:10001 a remote one; "
                             "no ADDRESS starts Ray on this machine")
    parser.add_argument("--ray-workers", type=cli.positive_int, metavar="N",
                        help="Ray workers (default: one per GPU of the cluster, on CPU one per CPU)")
    parser.add_argument("--ray-gpus-per-worker", type=cli.non_negative_float, metavar="G",
                        help="GPUs per Ray worker, fractions allowed (default: 1 where the cluster has GPUs, else 0)")
    parser.add_argument("--shader", choices=["rt", "ibl"],
                        help="SIMPLER's renderer: rt ray-traces (SIMPLER's setting, the default; slow without an "
                             "NVIDIA GPU), ibl rasterises (fast; its episodes repeat exactly, so a deterministic "
                             "policy's unedited episodes run once per trial, see --run-every-seed)")
    parser.add_argument("--run-every-seed", action="store_true",
                        help="run every seed even where an episode cannot differ from its seed-0 twin (a "
                             "deterministic policy in the unedited or colour-edited domain of a simulator that "
                             "ignores the reset seed, e.g. SIMPLER); by default those are stored as copies")
    parser.add_argument("--videos", action=argparse.BooleanOptionalAction, default=None,
                        help="write one MP4 per episode under RUN_DIR/videos (the policy's frame beside the unedited "
                             "render, with step, action and drawer opening; indexed in videos/index.jsonl, shown in "
                             f"report.html). Default: on for runs of at most {VIDEO_DEFAULT_EPISODES} episodes "
                             "(a few tiny-preset ones, not the miniature's main job), off otherwise; --no-videos "
                             "switches it off. "
                             "Not with --ray")
    parser.add_argument("--real-rates-exact", action="store_true",
                        help="take the real-world table's rates as exact in the MMRV and Pearson r intervals (default: "
                             "each bootstrap draw redraws them as Binomial(trials, rate) / trials from the table's "
                             "trial counts, 27 per task in SIMPLER's)")
    parser.add_argument("--real-episodes", metavar="FILE.csv",
                        help="real-world episodes of some of the run's trials (CSV with the header "
                             "policy,task,trial,outcome; see evaluation/real_episodes.py): the report estimates each "
                             "policy's real success from all sim trials plus these paired real ones, and the real "
                             "trials the simulator saves. Copied into the run folder; works with --report too")
    args = parser.parse_args(argv)
    if args.ray is None and (args.ray_workers is not None or args.ray_gpus_per_worker is not None):
        parser.error("--ray-workers and --ray-gpus-per-worker need --ray [ADDRESS]")
    if args.videos and args.ray is not None:
        parser.error("--videos records on this machine only: drop --ray, or pass --no-videos")
    if args.small and (args.preset != "tiny" or args.policies):
        parser.error("--small sizes the tiny preset's miniature: use it with --preset tiny and without --policies")
    if args.material is not None and args.preset != "tiny":
        parser.error("--material chooses the miniature real world's cabinet: use it with --preset tiny")
    if args.shader is not None and args.preset == "tiny":
        parser.error("--shader chooses SIMPLER's renderer; the tiny preset's CPU stand-in has its own: drop it")
    if args.setting == "variant-aggregation":
        if args.preset == "tiny":
            parser.error("--setting variant-aggregation needs SIMPLER's scene variants; the CPU stand-in of "
                         "--preset tiny has none: run it with --preset full on SIMPLER")
        if args.urdf_versions:
            parser.error("--setting variant-aggregation uses SIMPLER's original robot URDF only: leave out "
                         "--urdf-versions")
    elif args.variants:
        parser.error("--variants chooses scene variants of --setting variant-aggregation; visual matching has none")
    return args


def build_config(args: argparse.Namespace):
    from evaluation import config as evaluation
    from sim2real_edit.styles import StyleRegistry

    overrides: dict[str, Any] = {}
    if args.policies:
        overrides["policies"] = resolve_policies(args.policies)
    elif args.preset == "full" and args.checkpoint_root:
        overrides["policies"] = evaluation.published_rt1_policies(args.checkpoint_root)
    if args.setting == "variant-aggregation":
        overrides["setting"] = args.setting
        overrides["trials"] = evaluation.select_trials(args.trials, args.setting, args.variants)
    elif args.trials:
        overrides["trials"] = evaluation.select_trials(args.trials)
    if args.styles:
        registry = StyleRegistry.load()
        names = registry.names if args.styles == ["all"] else [registry.get(name).name for name in args.styles]
        overrides["styles"] = tuple(dict.fromkeys(names))
    for option in ("seeds", "max_episode_steps", "edit_steps", "edit_short_side", "sentence_encoder"):
        if getattr(args, option) is not None:
            overrides[option] = getattr(args, option)
    if args.domains:
        overrides["domains"] = tuple(dict.fromkeys(args.domains))
    if args.urdf_versions:
        overrides["urdf_versions"] = evaluation.select_urdf_versions(args.urdf_versions)
    if args.preset == "tiny":
        if "policies" not in overrides:  # the miniature: its CNN policies, real world and specialist
            from miniature.experiment import (
                MINIATURE_EXECUTION,
                MiniatureSettings,
                build_miniature,
            )

            settings = MiniatureSettings.small() if args.small else MiniatureSettings()
            if args.material is not None:
                settings = replace(settings, material=args.material)
            if "domains" in overrides:  # build only what these domains need (no specialist for baselines alone)
                settings = replace(settings, domains=overrides["domains"])
            miniature = build_miniature(settings, progress=True)
            return miniature.eval_config(**overrides), MINIATURE_EXECUTION, miniature
        if args.material is not None:
            from miniature.policy_family import real_material_env_kwargs

            overrides["env_kwargs"] = real_material_env_kwargs(args.material)
        return evaluation.tiny_config(**overrides), evaluation.TINY_EXECUTION, None
    if args.shader is not None:
        overrides["env_kwargs"] = {"shader_dir": args.shader}
    return evaluation.full_config(**overrides), evaluation.ExecutionOptions(), None


#: Runs of at most this many episodes record videos unless told otherwise: about 0.25 s and 57 kB per episode
#: on a 2-core CPU (README), so a minute and 30 MB here, against 25 minutes and 330 MB for the main job.
VIDEO_DEFAULT_EPISODES = 500


def default_videos(config, local: bool) -> bool:
    """Whether a run records episode videos when neither --videos nor --no-videos is given."""
    if not local:
        return False
    if config.expected_episodes() > VIDEO_DEFAULT_EPISODES:
        print(f"videos: off by default for {config.expected_episodes()} episodes (more than "
              f"{VIDEO_DEFAULT_EPISODES}); --videos records them")
        return False
    return True


def resolve_policies(entries: list[str]):
    """Scripted policy names become scripted stand-ins; anything else is an RT-1 checkpoint folder."""
    from evaluation.config import graded_stand_ins, rt1_policies
    from policies.scripted import GRADED_SKILLS

    specs = []
    for entry in entries:
        specs += graded_stand_ins([entry]) if entry in GRADED_SKILLS else rt1_policies([entry])
    return tuple(specs)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from evaluation import run_evaluation, write_report
    from evaluation.run_folder import check_run_folder_available
    from sim2real_edit.outputs import check_writable_folder
    from sim2real_edit.styles import check_data_root

    if args.report:
        check_writable_folder(args.report, what=f"--report {args.report}", fix="copy the run folder somewhere "
                              "writable and pass that copy")
        report = write_report(args.report, real_rates_exact=args.real_rates_exact, real_episodes=args.real_episodes)
        print_outputs(Path(args.report), report)
        return

    # Before the miniature builds or anything loads: a run folder or data root that would refuse the run.
    run_dir = Path(args.run_dir or default_run_dir(args.preset, args.material, args.setting))
    check_run_folder_available(run_dir)
    if args.preset == "tiny":
        check_data_root()  # the miniature and the tiny specialists live there
    real_rows = None
    if args.real_episodes:  # its form now, its policies and trials once the config is known: before any episode
        from evaluation.real_episodes import match_real_episodes, parse_real_episodes

        real_rows = parse_real_episodes(args.real_episodes)
    config, execution, miniature = build_config(args)
    check_local_inputs(config)
    if real_rows is not None:
        match_real_episodes(real_rows, config, args.real_episodes)
    changes = {key: value for key, value in (("num_envs", args.num_envs),
                                             ("vectorization_mode", args.vectorization),
                                             ("device", args.device), ("dtype", args.dtype),
                                             ("torch_threads", args.torch_threads)) if value is not None}
    if args.run_every_seed:
        changes["run_repeats_once"] = False
    # On by default for small runs only (default_videos); never on Ray, where workers run the episodes.
    changes["videos"] = args.videos if args.videos is not None else default_videos(config, args.ray is None)
    execution = replace(execution, **changes)
    cli.on_interrupt(lambda: saved_episodes_note(run_dir))
    started = time.perf_counter()
    if args.ray is None:
        summary = run_evaluation(config, run_dir, execution)
    else:
        from evaluation.distributed import RayOptions, run_evaluation_on_ray

        ray_options = RayOptions(address=args.ray or None, num_workers=args.ray_workers,
                                 gpus_per_worker=args.ray_gpus_per_worker)
        summary = run_evaluation_on_ray(config, run_dir, execution, ray_options)
    if miniature is not None:
        from miniature.experiment import write_miniature_summary

        write_miniature_summary(miniature, run_dir)
    report_started = time.perf_counter()
    report = write_report(run_dir, real_rates_exact=args.real_rates_exact, real_episodes=args.real_episodes)
    copied = (f", stored {summary.episodes_copied} repeats of a deterministic episode as copies of its seed-0 "
              "twin" if summary.episodes_copied else "")
    print(f"ran {summary.episodes_run} episodes ({summary.episodes_already_done} were already done{copied}) in "
          f"{time.perf_counter() - started:.0f} s")
    stages = {**({f"build {name}": seconds for name, seconds in miniature.seconds.items()} if miniature else {}),
              **{f"episodes {name}": seconds for name, seconds in summary.domain_seconds.items()},
              "report": time.perf_counter() - report_started}
    print_time_spent(run_dir, stages)
    print_outputs(run_dir, report)


def print_time_spent(run_dir: Path, stages: dict[str, float]) -> None:
    """Where this invocation's time went, printed and appended to RUN_DIR/timings.jsonl (one line per run)."""
    import json
    import os

    print("where the time went (this run; pieces found built and episodes already stored take ~0 s):")
    for name, seconds in stages.items():
        print(f"  {name:<40} {seconds:8.1f} s")
    record = {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(),
              "seconds": {name: round(seconds, 1) for name, seconds in stages.items()}}
    with open(run_dir / "timings.jsonl", "a") as log:
        log.write(json.dumps(record) + "\n")


def default_run_dir(preset: str, material: str | None, setting: str = "visual-matching") -> str:
    """``runs/eval-<preset>``; another real-world material than white marble runs in ``runs/eval-tiny-<material>``,
    beside white marble's run; variant aggregation in ``runs/eval-<preset>-variant-aggregation``."""
    from envs.appearance import REAL_CABINET_STYLE, real_material_style

    if setting != "visual-matching":
        return f"runs/eval-{preset}-{setting}"
    if material is None or real_material_style(material) == REAL_CABINET_STYLE:
        return f"runs/eval-{preset}"
    return f"runs/eval-{preset}-{real_material_style(material)}"


def check_local_inputs(config) -> None:
    """The RT-1 checkpoint folders and the styles' trained specialists are all there: everything missing in
    one error, before anything loads."""
    from evaluation.config import STYLED_DOMAINS
    from policies.rt1 import CHECKPOINT_LAYOUT
    from sim2real_edit.specialist import CONFIG_NAME
    from sim2real_edit.styles import StyleRegistry

    def complete(folder: Path) -> bool:
        return all((folder / entry.rstrip("/")).exists() for entry in CHECKPOINT_LAYOUT)

    problems = []
    checkpoints = [spec.checkpoint for spec in config.policies
                   if spec.kind == "rt1" and not complete(Path(spec.checkpoint))]
    if checkpoints:
        problems.append(
            f"{len(checkpoints)} RT-1 checkpoint folder(s) missing or incomplete (each holds "
            f"{', '.join(CHECKPOINT_LAYOUT)}): {', '.join(checkpoints)}. Download SIMPLER's RT-1 checkpoints "
            "there, or pass --checkpoints FOLDER ... or --checkpoint-root FOLDER")
    if config.preset != "tiny" and any(domain in STYLED_DOMAINS for domain in config.domains):
        registry = StyleRegistry.load()
        untrained = [style for style in config.styles
                     if not (registry.get(style).specialist_dir / CONFIG_NAME).is_file()]
        if untrained:
            problems.append(
                f"no trained specialist for {', '.join(untrained)} under {registry.root / 'specialists'}. Train "
                "each with `python scripts/train_specialist.py --style STYLE --frames frames/`, or evaluate "
                "fewer --styles, or only --domains unedited")
    if config.setting == "variant-aggregation":  # SIMPLER's stages and cabinets of the chosen variants
        from envs.simpler import missing_assets_message, missing_variant_assets, simpler_asset_dir

        asset_dir = simpler_asset_dir()
        missing = missing_variant_assets(config.variants(), asset_dir)
        if missing:
            problems.append(missing_assets_message(missing, asset_dir).rstrip("."))
    if problems:
        raise FileNotFoundError(
            "; ".join(problems) + ". Without checkpoints, trained specialists, a GPU or SIMPLER, run the CPU "
            "demo: python scripts/eval_policies.py --preset tiny")


def saved_episodes_note(run_dir: Path) -> str:
    """How many finished episodes an interrupted run keeps, and how to continue it."""
    import sqlite3
    from contextlib import closing

    database = run_dir / "episodes.sqlite"
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
            done = connection.execute("SELECT COUNT(*) FROM episodes").fetchone()[0]
    except sqlite3.Error:  # not created yet
        done = 0
    return (f"{done} finished episodes are saved in {database}; run the same command again to continue "
            "(stored episodes are not repeated)")


def print_outputs(run_dir: Path, report) -> None:
    if report.other_config_rows:
        print(f"WARNING: {run_dir} also holds {sum(report.other_config_rows.values())} episode(s) of other configs; "
              "the report leaves them out (see report.md)")
    if report.is_demo:
        print("TINY PRESET: the CPU stand-in, not SIMPLER; a miniature of the method, not real results.")
    if report.miniature:
        print("specialist on held-out frames and seeds (total: lower is better):")
        for card in report.miniature["scorecard"]:
            print(f"  {card['method']:<20} total {card['total']:.3f} +- {card['total_spread']:.3f}  outside change "
                  f"{card['outside_change']:.1f}/255  inside {card['inside_change']:.1f}/255  colour distance "
                  f"{card['colour_distance']:.1f}")
    for domain in report.domains:
        value = domain.agreement["average"]
        metrics = "the reference" if domain.domain == "real" and report.paired else "too few policies"
        if value:
            metrics = (f"MAE {value.mae:.3f} [{value.mae_interval[0]:.3f}, {value.mae_interval[1]:.3f}]  "
                       if value.mae is not None else "")
            metrics += f"MMRV {value.mmrv:.3f}" + (f" [{value.mmrv_interval[0]:.3f}, {value.mmrv_interval[1]:.3f}]"
                                                   if value.mmrv_interval else "") + "  "
            metrics += ("Pearson r undefined (constant rates)" if value.pearson_r is None else
                        f"Pearson r {value.pearson_r:.3f}" + (f" [{value.pearson_r_interval[0]:.3f}, "
                                                              f"{value.pearson_r_interval[1]:.3f}]"
                                                              if value.pearson_r_interval else ""))
            if value.pearson_r_undefined_share is not None:
                metrics += f" (undefined in {value.pearson_r_undefined_share:.0%} of draws)"
        spread = domain.agreement_over_seeds.get("average")
        if spread:
            r_spread = (f"r {spread.pearson_r_mean:.3f} +- {spread.pearson_r_sd:.3f}" if spread.defined_pearson_r
                        else "r undefined")
            undefined = len(spread.pearson_r) - len(spread.defined_pearson_r)
            metrics += (f"  over seeds: MMRV {spread.mmrv_mean:.3f} +- {spread.mmrv_sd:.3f}, {r_spread}"
                        + (f" (undefined at {undefined} seed(s))" if undefined and spread.defined_pearson_r else ""))
        print(f"  {domain.name:<36} {metrics}")
    if report.real_success:
        print("real success from sim plus paired real trials (prediction-powered; real only: Wilson):")
        for entry in report.real_success:
            e = entry.estimate
            saved = "none" if e.trials_saved is None else str(e.trials_saved)
            print(f"  {entry.domain:<24} {e.policy:<32} {e.estimate:.3f} [{e.interval[0]:.3f}, {e.interval[1]:.3f}]  "
                  f"real only {e.real_rate:.3f} [{e.real_only_interval[0]:.3f}, {e.real_only_interval[1]:.3f}] "
                  f"(n={e.real_trials})  real trials saved: {saved}")
    if report.videos:
        summary = report.videos_summary()
        print(f"videos: {summary['videos']} in {run_dir / 'videos'} ({summary['total_bytes'] / 1e6:.1f} MB, "
              f"{summary['mean_bytes'] / 1e3:.1f} kB and {summary['mean_encode_s']:.2f} s of encoding per episode)")
    print(f"report: {run_dir / 'report.html'}, {run_dir / 'report.md'}, {run_dir / 'report.json'}, plots in "
          f"{run_dir / 'plots'}")


if __name__ == "__main__":
    cli.run_main(main)
