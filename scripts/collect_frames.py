"""Write the frames a specialist trains on: the protocol's start frames plus frames along a scripted sweep.

    python scripts/collect_frames.py --out frames/            # SIMPLER if installed, else the stand-in
    python scripts/collect_frames.py --backend standin --out frames/
"""

from __future__ import annotations

import argparse
import importlib.util


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write frames/*.png and masks/*.png into")
    parser.add_argument("--backend", choices=["auto", "simpler", "standin"], default="auto")
    parser.add_argument("--motion-steps", type=int, default=6, help="scripted steps after each start frame")
    parser.add_argument("--every", type=int, default=3, help="keep every n-th frame of the sweep")
    parser.add_argument("--shader", default="ibl", help="SIMPLER shader: 'ibl' (rasterised) or 'rt' (ray traced)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from envs.collect import collect_frames

    backend = args.backend
    if backend == "auto":
        backend = "simpler" if importlib.util.find_spec("mani_skill2_real2sim") else "standin"
        print(f"collecting from {'SIMPLER' if backend == 'simpler' else 'the stand-in drawer env (not SIMPLER)'}")
    kwargs = {"shader_dir": args.shader} if backend == "simpler" else {}
    frames = collect_frames(args.out, backend, motion_steps=args.motion_steps, every=args.every, seed=args.seed,
                            **kwargs)
    print(f"wrote {len(frames)} frames with exact cabinet masks to {args.out}")


if __name__ == "__main__":
    main()
