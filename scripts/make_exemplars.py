"""Write the procedural default exemplars of one style or all of them.

    python scripts/make_exemplars.py --style wood
    python scripts/make_exemplars.py --style all --out exemplars/ --count 5 --size 256

Without --out each style's images go to its exemplar folder (see configs/styles.yaml; the data root is
$SIM2REAL_EDIT_HOME or ~/.cache/sim2real_edit). With --out, one style writes into that folder and
`--style all` writes into <out>/<style>. Procedural textures stand in for photos: real photos of the
material, dropped into the same folder, replace them and give real results.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sim2real_edit import cli
from sim2real_edit.outputs import check_writable_folder
from sim2real_edit.styles import DEFAULT_EXEMPLAR_COUNT, StyleRegistry


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("--style", required=True, help="style name (or alias), or 'all'")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the style's folder)")
    parser.add_argument("--count", type=cli.positive_int, default=DEFAULT_EXEMPLAR_COUNT, help="images per style")
    parser.add_argument("--size", type=cli.positive_int, default=256, help="side of the square images in pixels")
    parser.add_argument("--seed", type=cli.seed, default=0, help="base seed; the same seed gives the same images")
    parser.add_argument(
        "--config", type=Path, default=None, help="styles YAML (default: configs/styles.yaml)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    registry = StyleRegistry.load(args.config)
    styles = list(registry) if args.style == "all" else [registry.get(args.style)]
    if args.out is None:
        out_dirs = [style.exemplar_dir for style in styles]
    else:
        out_dirs = [args.out / style.name if args.style == "all" else args.out for style in styles]
    for out_dir in out_dirs:  # every folder before the first image
        check_writable_folder(out_dir, what=f"the exemplar folder {out_dir}",
                              fix="pass a writable folder as --out, or set SIM2REAL_EDIT_HOME to one")
    for style, out_dir in zip(styles, out_dirs):
        paths = style.write_default_exemplars(out_dir, args.count, args.size, args.seed, progress=True)
        print(f"{style.name}: wrote {len(paths)} images to {out_dir}")
    print("Procedural textures only stand in for photos: photos dropped into the same folder replace them.")


if __name__ == "__main__":
    cli.run_main(main)
