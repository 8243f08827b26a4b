"""Time the AI feedback on a batch of (input, edit, style) triples, with random-weight judges.

    python scripts/bench_feedback.py                 # full-size default judges, CUDA + fp16 when available
    python scripts/bench_feedback.py --preset tiny   # tiny judges on CPU: a smoke test of the same path
    python scripts/bench_feedback.py --embedder clip --batch 64 --size 256 --json bench.json

The judges are built offline from their architectures (Depth Anything V2 Large, GroundingDINO-T + SAM2.1
Hiera-L, DreamSim's ViT-B/14 / DINOv2-B / CLIP-B/16); speed does not depend on the weights. Detection
thresholds are set to 0 so that every image yields boxes and SAM2 always runs (random weights would
otherwise find nothing). "cold" scores with an empty mask cache (every input and style image segmented);
"warm" scores the same batch again with the masks cached, the steady state of RL training where each
input is edited many times. The stage lines time one judge alone: depth of the N inputs and N edits,
segmentation of the N inputs (cache cleared), embedding of N edits and N style images.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sim2real_edit import cli

if TYPE_CHECKING:  # torch and the judges load after the arguments are parsed, so that --help answers at once
    import torch

    from sim2real_edit.feedback import Feedback

INSTRUCTION = "make the cupboard out of wood"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", choices=["full", "tiny"], default="full", help="judge architectures")
    parser.add_argument("--embedder", choices=["dreamsim", "dinov2", "clip"], default="dreamsim")
    parser.add_argument("--batch", type=int, default=64, help="triples per scoring call")
    parser.add_argument("--size", type=int, default=256, help="side of the square images in pixels")
    parser.add_argument("--max-batch", type=int, default=32, help="largest chunk one model call sees")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (after one warm-up)")
    parser.add_argument("--device", default=None, help="default: cuda if available (tiny preset: cpu)")
    parser.add_argument(
        "--dtype",
        choices=["float16", "bfloat16", "float32"],
        default=None,
        help="default: float16 on CUDA, float32 on CPU",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from sim2real_edit.outputs import check_writable_file

    if args.json is not None:  # before the work, not after it
        check_writable_file(args.json, what=f"--json {args.json}", fix="pass a file path in a writable folder")
    device, dtype = choose_device_and_dtype(args)
    feedback = build_random_judges(args, device, dtype)
    results = time_judges(args, feedback, device, dtype)
    print_results(args, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


def choose_device_and_dtype(args: argparse.Namespace) -> tuple[torch.device, torch.dtype]:
    """The flags, else CUDA in float16 when there is one (for the full judges), else the CPU in float32."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    default_device = "cuda" if torch.cuda.is_available() and args.preset == "full" else "cpu"
    device = torch.device(args.device or default_device)
    if args.dtype:
        return device, getattr(torch, args.dtype)
    return device, torch.float16 if device.type == "cuda" else torch.float32


def build_random_judges(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> Feedback:
    """The judges from their architectures with random weights, thresholds at 0 so that SAM2 always runs."""
    from sim2real_edit.feedback import Feedback, FeedbackConfig

    config = FeedbackConfig(
        embedder=args.embedder, box_threshold=0.0, text_threshold=0.0, max_batch=args.max_batch
    )
    return Feedback.from_architecture(args.preset, config, seed=0, device=device, dtype=dtype)


def time_judges(args: argparse.Namespace, feedback: Feedback, device: torch.device, dtype: torch.dtype) -> dict:
    """Whole scoring calls (cold and warm mask cache), then each judge alone, on random triples."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(0)

    def random_images() -> torch.Tensor:
        return torch.randint(
            0, 256, (args.batch, args.size, args.size, 3), dtype=torch.uint8, generator=generator
        )

    inputs, edits, styles = (random_images().to(device) for _ in range(3))
    segmenter = feedback.segmenter

    def cold() -> None:
        segmenter.clear_cache()
        feedback.score(inputs, edits, styles, INSTRUCTION)

    pixels = torch.cat([inputs, edits]).permute(0, 3, 1, 2).float() / 255
    masks = torch.ones(2 * args.batch, args.size, args.size, dtype=torch.bool, device=device)
    results = {
        "preset": args.preset,
        "embedder": args.embedder,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "cpu_threads": torch.get_num_threads(),
        "batch": args.batch,
        "size": args.size,
        "seconds_cold": timed(cold, device, args.repeats),
        "seconds_warm": timed(
            lambda: feedback.score(inputs, edits, styles, INSTRUCTION), device, args.repeats
        ),
        "seconds_depth": timed(lambda: feedback.depth(pixels), device, args.repeats),
        "seconds_segmentation": timed(
            lambda: (segmenter.clear_cache(), segmenter(inputs, "cupboard")), device, args.repeats
        ),
        "seconds_embedding": timed(lambda: feedback.embedder.embed(pixels, masks), device, args.repeats),
    }
    if device.type == "cuda":
        results["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return results


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of `fn` in seconds, after one untimed warm-up call."""
    import numpy as np
    import torch
    from tqdm import tqdm

    fn()
    times = []
    for _ in tqdm(range(repeats), leave=False):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def print_results(args: argparse.Namespace, results: dict) -> None:
    print(
        f"{args.batch} triples at {args.size}x{args.size}, {args.preset} judges ({args.embedder}), "
        f"{results['device']}, {results['dtype']}:"
    )
    for name, value in results.items():
        if name.startswith("seconds_"):
            label = name.removeprefix("seconds_")
            print(f"  {label:<13} {value:8.3f} s   {args.batch / value:8.1f} triples/s")
    if "peak_gpu_memory_gib" in results:
        print(f"  peak GPU memory {results['peak_gpu_memory_gib']:.1f} GiB")


if __name__ == "__main__":
    cli.run_main(main)
