"""Build the CPU experiment's policies and their miniature real world's success table.

    python scripts/build_tiny_policies.py                     # into <data root>/tiny/policies
    python scripts/build_tiny_policies.py --out runs/policies --small

Records the scripted expert in the stand-in's miniature real world (appearance="real", envs/appearance.py)
with DART noise, trains one CNN policy by behaviour cloning and keeps checkpoints along the run, then
measures each checkpoint's success there through the evaluation harness and writes real_world.yaml (the
format of configs/real_world.yaml). Stages whose output exists are skipped; rerun to continue. The folder
(and the table) are what the tiny preset evaluates. NOT real robots: the "real world" is a render.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sim2real_edit.evaluation.miniature_real_world import (
    TIMINGS_NAME,
    TinyPolicySettings,
    build_tiny_policies,
)
from sim2real_edit.styles import tiny_home


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=None, help="folder (default: <data root>/tiny/policies)")
    parser.add_argument(
        "--small", action="store_true", help="the tests' small build (three poses, a short run)"
    )
    parser.add_argument("--workers", type=int, default=2, help="processes for demonstrations and measurements")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    folder = args.out if args.out is not None else tiny_home() / "policies"
    settings = TinyPolicySettings.small() if args.small else TinyPolicySettings()
    built = build_tiny_policies(folder, settings, progress=not args.no_progress, workers=args.workers)
    print(f"checkpoints in {built.folder}:")
    for name, rates in built.real_world().items():
        print(
            f"  {name}: real-world open {rates.open:.3f}, close {rates.close:.3f}, average {rates.average:.3f}"
        )
    print(f"table: {built.table}")
    timings = built.folder / TIMINGS_NAME
    if timings.is_file():
        print("timings:", json.dumps(json.loads(timings.read_text())))


if __name__ == "__main__":
    main()
