"""Build the CPU miniature of the paper's experiment: everything `eval_policies.py --preset tiny` evaluates.

    python scripts/build_miniature.py              # into <data root>/tiny (a first build: about 10 minutes)
    python scripts/build_miniature.py --small      # the tests' minutes-sized version, to try the pipeline
    python scripts/build_miniature.py --material wood   # the same experiment with a wood real world

Builds, or finds already built with the same settings: the tiny InstructPix2Pix base trained on stand-in
frames to reproduce its input; CNN policies trained by behaviour cloning in the miniature real world (the
stand-in with a white-marble cabinet, envs/appearance.py) at graded checkpoints, and that world's success
table; the white-marble specialist trained by D3PO from analytic judges on simulator frames, a control trained
on random preferences, and their scores on held-out frames and noise seeds beside the identity and the
untrained specialist. A killed build continues where it stopped. With --material, the real cabinet is another
style's material and the policies and specialists are built for it, beside the white-marble build. NOT SIMPLER
and not real robots.
"""

from __future__ import annotations

import json
from dataclasses import replace

from sim2real_edit import cli


def parse_args(argv: list[str] | None = None):
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="the tests' small build (runs the pipeline, not to "
                                                             "its quality)")
    parser.add_argument("--material", default="white_marble",
                        help="the real world's cabinet: a style of configs/styles.yaml (default: white_marble)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from sim2real_edit.styles import check_data_root

    check_data_root()  # the miniature is built under <data root>/tiny: a folder that cannot take it fails now
    from miniature.experiment import MiniatureSettings, build_miniature

    settings = replace(MiniatureSettings.small() if args.small else MiniatureSettings(), material=args.material)
    miniature = build_miniature(settings, progress=not args.no_progress)
    report = miniature.base_report
    print(f"tiny base {miniature.base}: VAE {report.vae_psnr:.1f} dB, untrained edit {report.edit_psnr:.1f} dB "
          f"(cabinet {report.edit_cabinet_psnr:.1f} dB)")
    print(f"policies in {miniature.policies.folder} (real world: open / close / average):")
    for name, rates in miniature.policies.real_world().items():
        print(f"  {name}: {rates.open:.3f} / {rates.close:.3f} / {rates.average:.3f}")
    print(f"specialist {miniature.specialist} on held-out frames and seeds (total: lower is better):")
    for card in miniature.scorecards:
        print(f"  {card.method:<20} total {card.total:.3f} +- {card.total_spread:.3f}  outside change "
              f"{card.outside_change:.1f}/255  inside {card.inside_change:.1f}/255  colour distance "
              f"{card.colour_distance:.1f}")
    print("seconds:", json.dumps({stage: round(value) for stage, value in miniature.seconds.items()}))


if __name__ == "__main__":
    cli.run_main(main)
