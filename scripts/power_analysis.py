"""How large must the experiment be? The power to detect a domain closing part of the sim-to-real gap, per size.

Reads a paired run (one with the ``unedited``, ``ceiling`` and ``real`` domains, e.g. a pilot with
``--domains unedited ceiling floor real``: no specialist needed) and simulates experiments of each size from its
own episodes (`sim2real_edit.metrics.power_of_gap`): trials drawn per action, a candidate domain that closes
``--share`` of the unedited-to-ceiling gap, detected when the joint-bootstrap interval of its MAE difference
to the unedited sim lies below 0. Choose the size before the edited domains run; the edited episodes are
never read here.

    python scripts/power_analysis.py runs/eval-tiny --trials-per-action 3 6 9 14 27
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim2real_edit import cli

NEEDED = ("unedited", "ceiling", "real")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("run_dir", type=Path, help="a paired run folder (with unedited, ceiling and real episodes)")
    parser.add_argument("--trials-per-action", type=int, nargs="+", default=[3, 6, 9, 14, 27],
                        help="sizes to simulate: trials drawn per action (open, close); default: 3 6 9 14 27")
    parser.add_argument("--share", type=float, default=0.5, help="share of the gap the candidate closes (0.5)")
    parser.add_argument("--simulations", type=int, default=200, help="simulated experiments per size (200)")
    parser.add_argument("--draws", type=int, default=1000, help="bootstrap draws per experiment (1000)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from evaluation.report import paired_outcomes
    from evaluation.results import ResultStore
    from sim2real_edit.metrics import power_of_gap

    store = ResultStore.open(args.run_dir)
    config = store.config
    missing = [domain for domain in NEEDED if domain not in config.domains]
    if missing:
        raise ValueError(f"{args.run_dir} ran no {', '.join(missing)} episodes; the power analysis needs "
                         f"{', '.join(NEEDED)}. Run them first: python scripts/eval_policies.py --preset tiny "
                         f"--domains unedited ceiling floor real --run-dir {args.run_dir}-pilot")
    paired = paired_outcomes(config, store.episodes(), [(domain, domain, "") for domain in NEEDED])
    if paired is None:
        raise ValueError(f"{args.run_dir} misses episodes of {', '.join(NEEDED)}; run the evaluation to the end "
                         "(the same command continues it) and try again")
    per_action = {action: paired.trial_actions.count(action) for action in ("open", "close")}
    largest = min(per_action.values())
    sizes = sorted(set(args.trials_per_action))
    too_large = [size for size in sizes if size > largest]
    if too_large:
        raise ValueError(f"--trials-per-action {too_large} exceed the run's {largest} trials per action; choose "
                         f"sizes up to {largest}")
    policies = len(paired.policies)
    print(f"{args.run_dir}: {policies} policies, {per_action['open']} open and {per_action['close']} close trials x "
          f"{paired.repeats} seed(s); a candidate closing {args.share:.0%} of the gap")
    print(f"{'trials/action':>13} {'episodes/domain':>15} {'power':>6} {'seconds':>8}")
    for size in sizes:
        started = time.perf_counter()
        result = power_of_gap(paired, share_closed=args.share, trials_per_action=size,
                              n_simulations=args.simulations, n_boot=args.draws, seed=args.seed)
        print(f"{size:>13} {policies * 2 * size * paired.repeats:>15} {result.power:>6.2f} "
              f"{time.perf_counter() - started:>8.1f}")
    print(f"MAE unedited {result.baseline_mae:.3f}, ceiling {result.ceiling_mae:.3f} (on all of the run's trials)")


if __name__ == "__main__":
    cli.run_main(main)
