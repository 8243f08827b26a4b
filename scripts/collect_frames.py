"""Write the frames a specialist trains on: the protocol's start frames plus frames along a scripted sweep.

    python scripts/collect_frames.py --out frames/            # SIMPLER if installed, else the stand-in
    python scripts/collect_frames.py --backend standin --out frames/
    python scripts/collect_frames.py --out frames/ --overwrite   # replace the frames already there

A folder that already holds frames is refused unless --overwrite, which deletes them first: training never
reads a mix of two collections.
"""

from __future__ import annotations

import importlib.util

from sim2real_edit import cli


def main(argv: list[str] | None = None) -> None:
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="folder to write frames/*.png and masks/*.png into")
    parser.add_argument("--overwrite", action="store_true", help="replace the frames already in --out")
    parser.add_argument("--backend", choices=["auto", "simpler", "standin"], default="auto")
    parser.add_argument("--motion-steps", type=cli.non_negative_int, default=6,
                        help="scripted steps after each start frame")
    parser.add_argument("--every", type=cli.positive_int, default=3, help="keep every n-th frame of the sweep")
    parser.add_argument("--shader", default="ibl", help="SIMPLER shader: 'ibl' (rasterised) or 'rt' (ray traced)")
    parser.add_argument("--seed", type=cli.seed, default=0)
    args = parser.parse_args(argv)

    from sim2real_edit.outputs import FRAME_OUTPUTS, check_outputs, check_writable_folder, existing_outputs

    # Before the simulator starts: an occupied or unwritable folder fails at once.
    check_writable_folder(args.out, what=f"--out {args.out}", fix="pass a writable folder as --out")
    check_outputs(args.out, FRAME_OUTPUTS, overwrite=args.overwrite, what="training frames",
                  advice="or choose another --out")
    written_before = existing_outputs(args.out, FRAME_OUTPUTS)

    def saved_frames_note() -> str:
        if existing_outputs(args.out, FRAME_OUTPUTS) == written_before:
            return f"{args.out} is unchanged (frames are written once all are collected); run the command again"
        return f"the frames in {args.out} may be incomplete; collect them again with --overwrite"

    cli.on_interrupt(saved_frames_note)

    from envs.collect import collect_frames

    backend = args.backend
    if backend == "auto":
        backend = "simpler" if importlib.util.find_spec("mani_skill2_real2sim") else "standin"
        print(f"collecting from {'SIMPLER' if backend == 'simpler' else 'the stand-in drawer env (not SIMPLER)'}")
    kwargs = {"shader_dir": args.shader} if backend == "simpler" else {}
    frames = collect_frames(args.out, backend, motion_steps=args.motion_steps, every=args.every, seed=args.seed,
                            overwrite=args.overwrite, **kwargs)
    print(f"wrote {len(frames)} frames with exact cabinet masks to {args.out}")


if __name__ == "__main__":
    cli.run_main(main)
