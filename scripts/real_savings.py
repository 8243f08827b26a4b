"""How many real trials each simulated view saves, over many random draws of the paired real sample.

    python scripts/real_savings.py runs/eval-tiny --draws 300

Reads a finished tiny-preset run (it needs the miniature's real world) and prints a Markdown table; see
`miniature/real_savings.py`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim2real_edit import cli


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run of scripts/eval_policies.py --preset tiny")
    parser.add_argument("--draws", type=cli.positive_int, default=300, help="random paired samples (default 300)")
    args = parser.parse_args(argv)
    from miniature.real_savings import savings_markdown, savings_over_draws

    print(savings_markdown(savings_over_draws(args.run_dir, draws=args.draws)), end="")


if __name__ == "__main__":
    cli.run_main(main)
