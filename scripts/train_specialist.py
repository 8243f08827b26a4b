"""Train an editing specialist for one material with D3PO from AI feedback.

    python scripts/train_specialist.py --style wood --frames frames/             # paper settings, one GPU
    accelerate launch scripts/train_specialist.py --style wood --frames frames/  # several GPUs or nodes
    python scripts/train_specialist.py --style wood --preset tiny                # CPU demo, nothing downloaded
    python scripts/train_specialist.py --style wood --frames frames/ --resume    # continue a killed run
    python scripts/train_specialist.py --style wood --frames frames/ --models-dir models/   # offline machine

The result is a specialist folder (save_pretrained) with a model card, log.jsonl and checkpoints/. An existing
specialist is never replaced without --overwrite. The tiny preset writes into its own folder
(<data root>/tiny/specialists/<style>), which no full-size run reads.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import fields, replace
from pathlib import Path

from sim2real_edit import cli

JUDGE_FLAGS = ("depth_model", "detector_model", "segmenter_model", "embedder_model")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("--style", required=True, help="a style of the registry (configs/styles.yaml), e.g. wood")
    parser.add_argument("--preset", choices=["full", "tiny"], default="full",
                        help="tiny: the CPU miniature's recipe - the trained tiny base (built first if missing, "
                             "minutes) and analytic judges on the stand-in's exact masks")
    parser.add_argument("--frames", help="folder of training frames (see scripts/collect_frames.py)")
    parser.add_argument("--output", help="specialist folder to write (default: the style registry's; tiny preset: "
                                         "<data root>/tiny/specialists/<style>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the specialist or run already in the output folder (default: refuse)")
    parser.add_argument("--resume", action="store_true", help="continue the run whose checkpoints are in --output")
    models = parser.add_argument_group("pretrained models (hub ids or local folders; see README 'Offline')")
    models.add_argument("--models-dir", help="folder holding every model below as <folder>/<name>, e.g. "
                                             "models/instruct-pix2pix (as the missing-model error lists them)")
    models.add_argument("--base", help="InstructPix2Pix hub id or local diffusers folder")
    models.add_argument("--depth-model", help="Depth Anything V2 judge (default: the Large model)")
    models.add_argument("--detector-model", help="GroundingDINO detector (default: grounding-dino-tiny)")
    models.add_argument("--segmenter-model", help="SAM2 segmenter (default: sam2.1-hiera-large)")
    models.add_argument("--embedder-model", help="DreamSim cache folder (or DINOv2/CLIP model)")
    parser.add_argument("--steps", type=cli.positive_int, dest="optimizer_steps", help="optimizer steps")
    parser.add_argument("--samples-per-step", type=cli.positive_int,
                        help="edits per optimizer step (even: two per frame)")
    parser.add_argument("--denoising-steps", type=cli.positive_int, dest="num_denoising_steps")
    parser.add_argument("--sample-batch", type=cli.positive_int, dest="sample_batch_size",
                        help="frames per sampling call")
    parser.add_argument("--train-batch", type=cli.positive_int, dest="train_batch_size",
                        help="pairs per backward pass")
    parser.add_argument("--lr", type=cli.non_negative_float, dest="learning_rate")
    parser.add_argument("--scheduler", choices=["euler_ancestral", "ddim"])
    parser.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"])
    parser.add_argument("--short-side", type=cli.positive_int, help="frames are edited at this short side")
    parser.add_argument("--seed", type=cli.seed)
    args = parser.parse_args(argv)
    if args.resume and args.overwrite:
        parser.error("--resume continues the run in the output folder and --overwrite replaces it: pass one")
    if args.samples_per_step is not None and args.samples_per_step % 2:
        parser.error(f"--samples-per-step must be even (two edits per frame), got {args.samples_per_step}")
    if args.frames is not None and not Path(args.frames).is_dir():
        parser.error(f"--frames {args.frames} is not a folder; write training frames there with "
                     f"`python scripts/collect_frames.py --out {args.frames}`")
    if args.preset == "full" and args.frames is None:
        parser.error("no training frames: pass --frames FOLDER, written by `python scripts/collect_frames.py "
                     "--out frames/` (SIMPLER if installed, else the stand-in); for a CPU demo that needs no "
                     "frames or models, use --preset tiny")
    given_models = [flag for flag in ("models_dir", "base", *JUDGE_FLAGS) if getattr(args, flag)]
    if args.preset == "tiny" and given_models:
        flag = "--" + given_models[0].replace("_", "-")
        parser.error(f"--preset tiny uses its own trained tiny base and analytic judges; drop {flag}")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)

    # Before the heavy imports: an unknown style, an occupied or unwritable output folder, a data root that
    # cannot take what the run writes there, or nothing to resume fails in a second.
    from sim2real_edit.outputs import (
        SPECIALIST_OUTPUTS,
        check_outputs,
        check_writable_folder,
        require_steps_to_resume,
    )
    from sim2real_edit.styles import StyleRegistry, check_data_root, preset_specialist_dir

    style = StyleRegistry.load().get(args.style)  # an unknown style lists the known ones
    output = Path(args.output) if args.output else preset_specialist_dir(style.name, args.preset)
    check_writable_folder(output, what=f"the output folder {output}", fix="pass a writable folder as --output")
    if args.preset == "tiny":
        check_data_root()  # the tiny base is built there
    if not style.has_exemplars():  # the procedural default set is written there first
        check_writable_folder(style.exemplar_dir, what=f"the exemplar folder of {style.name}",
                              fix=f"put photos of {style.material} there, or set "
                                  "SIM2REAL_EDIT_HOME to a writable folder")
    if args.resume:
        require_steps_to_resume(output)
    else:
        check_outputs(output, SPECIALIST_OUTPUTS, overwrite=args.overwrite, what="a specialist or a training run",
                      advice="--resume to continue its run, or choose another --output")
    cli.on_interrupt(lambda: saved_steps_note(output, argv))

    from sim2real_edit.components import TINY_TRAINED_BASE
    from sim2real_edit.d3po import TrainConfig, tiny_config, train, with_models_dir

    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
                 if getattr(args, f.name, None) is not None and f.name not in ("style", "base")}
    overrides.update(style=style.name, output_dir=str(output))
    config = tiny_config(**overrides) if args.preset == "tiny" else TrainConfig(**overrides)
    if args.models_dir:
        config = with_models_dir(config, args.models_dir)
    judges = {name: getattr(args, name) for name in JUDGE_FLAGS if getattr(args, name)}
    config = replace(config, base=args.base or config.base, feedback=replace(config.feedback, **judges))
    if config.preset == "tiny":
        import torch

        torch.set_num_threads(1)  # tiny models gain nothing from threads, and contended threads thrash
        if config.base == TINY_TRAINED_BASE:
            from envs.tiny_base import ensure_tiny_base

            ensure_tiny_base()  # found at once after the first build

    frames = None
    if config.frames is None:  # the tiny preset (parse_args asks the full one for frames)
        from envs.collect import collect_frames

        # Rendered in memory by every process alike (deterministic), so launchers need no shared folder.
        print("--preset tiny without --frames: using the stand-in's 54 protocol start frames")
        frames = collect_frames(None, "standin", motion_steps=0, progress=False)

    result = train(config, frames=frames, resume=args.resume, overwrite=args.overwrite)
    if int(os.environ.get("RANK", "0")) != 0:  # under a launcher, one process reports
        return
    final = result.log[-1] if result.log else {}
    print(f"specialist written to {result.output_dir} "
          f"(final structure {final.get('structure', float('nan')):.4f}, "
          f"semantic {final.get('semantic', float('nan')):.4f})")


def saved_steps_note(output: Path, argv: list[str]) -> str:
    """What an interrupted run leaves, and the command that continues it."""
    from sim2real_edit.outputs import SPECIALIST_OUTPUTS, existing_outputs

    done = sorted(int(path.parent.name.split("-")[1]) for path in (output / "checkpoints").glob("step-*/state.json"))
    kept = [a for a in argv if a not in ("--overwrite", "--resume", cli.DEBUG_FLAG)]
    if not done:  # nothing to resume: start again, over what the killed run began writing
        again = kept + (["--overwrite"] if existing_outputs(output, SPECIALIST_OUTPUTS) else [])
        command = shlex.join(["python", "scripts/train_specialist.py", *again])
        return f"no optimizer step had finished, nothing to keep in {output}; start again with: {command}"
    command = shlex.join(["python", "scripts/train_specialist.py", *kept, "--resume"])
    return (f"optimizer steps 0-{done[-1]} are saved in {output / 'checkpoints'}; continue from step "
            f"{done[-1] + 1} with: {command}")


if __name__ == "__main__":
    cli.run_main(main)
