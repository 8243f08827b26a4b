"""Train an editing specialist for one material with D3PO from AI feedback.

    python scripts/train_specialist.py --style wood --frames frames/             # paper settings, one GPU
    accelerate launch scripts/train_specialist.py --style wood --frames frames/  # several GPUs or nodes
    python scripts/train_specialist.py --style wood --preset tiny                # CPU demo, nothing downloaded
    python scripts/train_specialist.py --style wood --frames frames/ --resume    # continue a killed run

The result is a specialist folder (save_pretrained) with a model card, log.jsonl and checkpoints/.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import fields


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--style", required=True, help="a style of the registry (configs/styles.yaml), e.g. wood")
    parser.add_argument("--preset", choices=["full", "tiny"], default="full",
                        help="tiny: tiny random model and judges on CPU (demonstrates the machinery only)")
    parser.add_argument("--frames", help="folder of training frames (see scripts/collect_frames.py)")
    parser.add_argument("--output", help="specialist folder to write (default: the style registry's)")
    parser.add_argument("--base", help="InstructPix2Pix hub id or local diffusers folder")
    parser.add_argument("--steps", type=int, dest="optimizer_steps", help="optimizer steps")
    parser.add_argument("--samples-per-step", type=int, help="edits per optimizer step (two per frame)")
    parser.add_argument("--denoising-steps", type=int, dest="num_denoising_steps")
    parser.add_argument("--sample-batch", type=int, dest="sample_batch_size", help="frames per sampling call")
    parser.add_argument("--train-batch", type=int, dest="train_batch_size", help="pairs per backward pass")
    parser.add_argument("--lr", type=float, dest="learning_rate")
    parser.add_argument("--scheduler", choices=["euler_ancestral", "ddim"])
    parser.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"])
    parser.add_argument("--short-side", type=int, help="frames are edited at this short side")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--resume", action="store_true", help="continue the run whose checkpoints are in --output")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    from sim2real_edit.d3po import TrainConfig, tiny_config, train
    from sim2real_edit.styles import StyleRegistry

    style = StyleRegistry.load().get(args.style)  # an unknown style lists the known ones
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
                 if getattr(args, f.name, None) is not None and f.name not in ("style",)}
    overrides["style"] = style.name
    if args.output:
        overrides["output_dir"] = args.output
    if args.base:
        overrides["base"] = args.base
    config = tiny_config(**overrides) if args.preset == "tiny" else TrainConfig(**overrides)
    if config.preset == "tiny":
        import torch

        torch.set_num_threads(1)  # tiny models gain nothing from threads, and contended threads thrash

    frames = None
    if config.frames is None:
        if config.preset != "tiny":
            raise SystemExit(
                "no training frames: pass --frames FOLDER. Write them with "
                "`python scripts/collect_frames.py --out frames/` (SIMPLER if installed, else the stand-in)"
            )
        from envs.collect import collect_frames

        # Rendered in memory by every process alike (deterministic), so launchers need no shared folder.
        print("--preset tiny without --frames: using the stand-in's 54 protocol start frames")
        frames = collect_frames(None, "standin", motion_steps=0, progress=False)

    result = train(config, frames=frames, resume=args.resume)
    if int(os.environ.get("RANK", "0")) != 0:  # under a launcher, one process reports
        return
    final = result.log[-1] if result.log else {}
    print(f"specialist written to {result.output_dir} "
          f"(final structure {final.get('structure', float('nan')):.4f}, semantic {final.get('semantic', float('nan')):.4f})")


if __name__ == "__main__":
    main()
