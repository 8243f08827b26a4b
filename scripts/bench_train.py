"""Time one D3PO optimizer step at full size (SD-1.5 shapes, random weights) and extrapolate to the paper.

    python scripts/bench_train.py                              # GPU: 32 samples x 20 denoising steps
    python scripts/bench_train.py --samples 64 --denoising-steps 100
    python scripts/bench_train.py --preset tiny                # CPU smoke test

Speed does not depend on the weights' values, so random weights time the real thing. The step's three
phases (sampling, judging, DPO backward) scale linearly in samples x denoising steps, which gives the time
of the paper's specialist (6 steps x 256 samples x 100 denoising steps); the goal is under 30 minutes on
one H200.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sim2real_edit import cli

if TYPE_CHECKING:  # torch and the trainer load after the arguments are parsed, so that --help answers at once
    import torch

    from sim2real_edit.d3po import TrainConfig

PAPER = {"optimizer_steps": 6, "samples_per_step": 256, "num_denoising_steps": 100}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", choices=["full", "tiny"], default="full")
    parser.add_argument("--samples", type=int, help="samples per optimizer step (default 32; tiny 8)")
    parser.add_argument("--denoising-steps", type=int, help="denoising steps (default 20; tiny 3)")
    parser.add_argument("--sample-batch", type=int, default=16, help="frames per sampling call")
    parser.add_argument("--train-batch", type=int, default=4, help="pairs per backward pass")
    parser.add_argument("--judges", choices=["full", "tiny", "analytic"],
                        help="default: full on GPU, tiny on CPU")
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from sim2real_edit.outputs import check_writable_file
    from sim2real_edit.styles import check_data_root

    if args.json is not None:  # before the work, not after it
        check_writable_file(args.json, what=f"--json {args.json}", fix="pass a file path in a writable folder")
    if args.preset == "tiny":
        check_data_root()  # the tiny base is built there on first use
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tiny = args.preset == "tiny"
    samples = args.samples or (8 if tiny else 32)
    steps = args.denoising_steps or (3 if tiny else 20)
    judges = args.judges or ("full" if device.type == "cuda" and not tiny else "tiny")
    with tempfile.TemporaryDirectory() as folder:
        config = train_config(args, device, samples, steps, folder)
        last_step, wall = time_training(config, device, judges)
    results = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "preset": args.preset, "judges": judges, "samples": samples, "denoising_steps": steps,
        "sample_seconds": last_step["sample_seconds"], "score_seconds": last_step["score_seconds"],
        "train_seconds": last_step["train_seconds"], "step_seconds": last_step["seconds"], "wall_seconds": wall,
        **extrapolate_to_paper(last_step, samples, steps),
    }
    print_results(results, tiny)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


def train_config(args: argparse.Namespace, device: torch.device, samples: int, steps: int,
                 output_dir: str) -> TrainConfig:
    """The trainer's settings at this size; the tiny preset's recipe, or the paper's in fp16 on a GPU."""
    from sim2real_edit.d3po import TrainConfig, tiny_config
    from sim2real_edit.feedback import FeedbackConfig

    on_gpu = device.type == "cuda" and args.preset != "tiny"
    overrides = {
        "samples_per_step": samples, "num_denoising_steps": steps,
        # On a GPU the trainer compiles the UNet during its first step: time the second one.
        "optimizer_steps": 2 if on_gpu else 1,
        "sample_batch_size": args.sample_batch, "train_batch_size": args.train_batch,
        "feedback": FeedbackConfig(style_mask="full"), "output_dir": output_dir,
    }
    if args.preset == "tiny":
        return tiny_config(**overrides)
    return TrainConfig(mixed_precision="fp16" if device.type == "cuda" else "no", **overrides)


def time_training(config: TrainConfig, device: torch.device, judges: str) -> tuple[dict, float]:
    """Trains on random frames and exemplars: the log of the last optimizer step, and the wall seconds."""
    import numpy as np

    from sim2real_edit.components import random_sd15_components
    from sim2real_edit.d3po import build_model, train
    from sim2real_edit.feedback import Feedback
    from sim2real_edit.frames import TrainingFrames

    if config.preset == "tiny":
        from envs.tiny_base import ensure_tiny_base

        ensure_tiny_base()  # the miniature's trained base (built once, minutes, on first use)
        model = build_model(config, device)
    else:
        model = build_model(config, device, random_sd15_components(0, device))
    feedback = (Feedback.analytic(config.feedback, device) if judges == "analytic"
                else Feedback.from_architecture(judges, config.feedback, 0, device=device)
                if judges == "full" else Feedback.tiny(0, config.feedback))
    side = config.short_side
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (16, side, side * 5 // 4 // 8 * 8, 3), dtype=np.uint8)
    masks = np.zeros(frames.shape[:3], bool)
    masks[:, side // 4 : 3 * side // 4, side // 4 : side] = True
    exemplars = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(5)]
    started = time.perf_counter()
    result = train(config, frames=TrainingFrames(frames, masks, np.ones(len(frames), bool),
                                                 [str(i) for i in range(len(frames))]),
                   exemplars=exemplars, model=model, feedback=feedback, progress=True)
    return result.log[-1], time.perf_counter() - started


def extrapolate_to_paper(last_step: dict, samples: int, steps: int) -> dict:
    """Sampling and the DPO backward scale with samples x denoising steps, judging with samples alone."""
    more_samples = PAPER["samples_per_step"] / samples
    scale = more_samples * (PAPER["num_denoising_steps"] / steps)
    denoising_seconds = last_step["sample_seconds"] + last_step["train_seconds"]
    per_step = denoising_seconds * scale + last_step["score_seconds"] * more_samples
    return {
        "paper_step_seconds_extrapolated": per_step,
        "paper_specialist_minutes_extrapolated": per_step * PAPER["optimizer_steps"] / 60,
    }


def print_results(results: dict, tiny: bool) -> None:
    print(f"device {results['device']}: one optimizer step, {results['samples']} samples x "
          f"{results['denoising_steps']} denoising steps")
    for key in ("sample_seconds", "score_seconds", "train_seconds", "step_seconds"):
        print(f"  {key:<16} {results[key]:8.2f}")
    print(f"extrapolated to the paper (6 x 256 samples x 100 steps): "
          f"{results['paper_specialist_minutes_extrapolated']:.1f} minutes"
          + ("  (tiny preset: not meaningful)" if tiny else ""))


if __name__ == "__main__":
    cli.run_main(main)
