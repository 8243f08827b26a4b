"""Editor throughput: the stock InstructPix2Pix pipeline, one frame per call, against the batched editing
specialist with its inference paths switched on one at a time.

    python scripts/bench_editor.py --json bench_editor.json   # SD-1.5 shapes, one GPU: 5-6 min on an H200
    python scripts/bench_editor.py --preset tiny              # tiny model on the CPU: a smoke test (seconds)

Everything is built in code with random weights at SD-1.5's shapes (speed does not depend on the values;
the InstructPix2Pix UNet takes 8 channels before the specialist widens it to 12). In one process it

1. counts FLOPs (torch.utils.flop_counter) of one guided UNet step, one VAE encode and one decode per
   frame, and of one stock-pipeline call, and measures the device's fp16 matmul rate (or takes
   --peak-tflops): FLOPs per frame over that rate is the ceiling in frames/s;
2. times the stock pipeline (three-way guidance) one frame per call: the baseline;
3. times the editor (four-way guidance, 20 steps, 256x256) at one batch size while switching paths on one
   after another (plain eager, sync-free loop, cached conditioning, channels_last, merged LoRA,
   torch.compile), each row with the UNet step alone timed too;
4. times the fully optimised editor at batch sizes 1, 8, 32, 64, 128, and the VAE alone;
5. checks that the optimised outputs match the plain eager path on the same seeds within half-precision
   tolerance (no further from the float32 path than plain half precision is, up to 2x), that the
   pre-drawn noise is the per-image generators' stream exactly, and (on CUDA) that the denoising loop makes
   no host-device synchronisation.

Each timing is the median of several CUDA-synchronised runs after warm-up. Work that would run past
--time-budget is skipped and reported as such; results are written to --json after every measurement.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim2real_edit import cli

if TYPE_CHECKING:  # torch, diffusers and the specialist load in `run`, so that --help answers at once
    import numpy as np
    import torch

    from sim2real_edit.acceleration import InferenceOptions
    from sim2real_edit.components import BaseComponents
    from sim2real_edit.specialist import EditSpecialist

INSTRUCTION = "make the cupboard out of wood"
STOCK_GUIDANCE = {"guidance_scale": 7.5, "image_guidance_scale": 1.5}

#: Dense fp16 tensor-core rates from the datasheets (TFLOP/s), printed beside the measured matmul rate.
SPEC_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "A10G": 125.0}

#: The ablation: each stage switches its paths on top of all the stages before it.
STAGES: tuple[tuple[str, dict], ...] = (
    ("plain eager", {}),
    (
        "+ sync-free loop, pinned transfers",
        {"predraw_noise": True, "device_timesteps": True, "pinned_transfers": True},
    ),
    ("+ conditioning once per call", {"cache_conditioning": True}),
    ("+ channels_last, cuDNN autotuning", {"channels_last": True, "cudnn_benchmark": True}),
    ("+ LoRA merged into the weights", {"merge_lora": True}),
    ("+ torch.compile UNet", {"compile_unet": True}),
    ("+ torch.compile VAE", {"compile_vae": True}),
)
COMPILE_STAGES = {"+ torch.compile UNet", "+ torch.compile VAE"}
OPTIMISED_NAME = "optimised editor"


@dataclass
class BenchConfig:
    preset: str = "sd15"
    device: str = "cuda"
    dtype: str | None = "float16"  # None: float32
    image_size: int = 256
    num_steps: int = 20
    guidance: tuple[float, float, float] = (7.5, 1.5, 3.0)
    batch_sizes: tuple[int, ...] = (1, 8, 32, 64, 128)
    ablation_batch: int = 64
    float32_batch: int = 8  # the float32 plain row (the unoptimised default) is slow: a small batch
    check_batch: int = 4
    warmup: int = 1
    runs: int = 3
    ablation_runs: int = 2
    baseline_runs: int = 5
    step_runs: int = 3
    compile: bool = True
    compile_mode: str = "reduce-overhead"
    inductor_options: dict | None = None
    peak_tflops: float | None = None
    time_budget_s: float = 420.0
    threads: int | None = None


PRESETS = {
    "sd15": BenchConfig(),
    "tiny": BenchConfig(
        preset="tiny",
        device="cpu",
        dtype=None,
        image_size=32,
        num_steps=2,
        batch_sizes=(1, 2, 4),
        ablation_batch=2,
        float32_batch=2,
        check_batch=2,
        runs=1,
        ablation_runs=1,
        baseline_runs=1,
        step_runs=1,
        compile=False,
        time_budget_s=300.0,
        threads=1,
    ),
}


# ------------------------------------------------------------------------------------------- main flow


def run(config: BenchConfig, json_path: Path | None) -> dict:
    """Every measurement in order; the results so far are written to `json_path` after each one."""
    bench = start_bench(config, json_path)
    editor = build_editor(config, bench.device)
    stock_call = build_stock_call(config, bench.device, editor.frames[0])
    count_flops_and_ceiling(bench, editor, stock_call)
    time_stock_pipeline(bench, stock_call)
    del stock_call  # frees the stock pipeline's memory
    float32_outputs = measure_float32_reference(bench, editor)
    plain_outputs = time_ablation(bench, editor)
    time_optimised_batch_sizes(bench, editor)
    time_vae(bench, editor)
    check_optimised_outputs(bench, editor, float32_outputs, plain_outputs)
    return bench.results


# ------------------------------------------------------------------------------- what the phases share


@dataclass
class Bench:
    """The results so far, written to JSON after every measurement."""

    config: BenchConfig
    device: torch.device
    json_path: Path | None
    started: float = field(default_factory=time.perf_counter)
    results: dict = field(default_factory=dict)

    def over_budget(self) -> bool:
        return time.perf_counter() - self.started > self.config.time_budget_s

    def save(self) -> None:
        self.results["wall_s"] = round(time.perf_counter() - self.started, 1)
        if self.json_path is not None:
            self.json_path.parent.mkdir(parents=True, exist_ok=True)
            self.json_path.write_text(json.dumps(self.results, indent=2, default=str) + "\n")

    def timing_row(
        self, name: str, batch: int, times: list[float], options: str, step_times: list[float] | None
    ) -> dict:
        """One row of the table: frames/s against the baseline and the FLOP ceiling (and the UNet alone)."""
        flops = self.results["flops"]
        median = median_seconds(times)
        fps = batch / median
        baseline = self.results.get("baseline", {}).get("frames_per_s")
        row = {
            "name": name,
            "batch": batch,
            "frames_per_s": fps,
            "x_baseline": fps / baseline if baseline else None,
            "flop_ceiling_fraction": fps * flops["editor_per_frame"] / (self.results["peak_tflops"] * 1e12),
            "median_s": median,
            "runs_s": times,
            "options": options,
            "status": "ok",
        }
        if step_times:
            step = median_seconds(step_times)
            row["unet_image_steps_per_s"] = batch / step
            row["unet_tflops"] = batch * flops["unet_step_per_frame"] / step / 1e12
        return row


def skipped_row(name: str, batch: int, status: str) -> dict:
    return {"name": name, "batch": batch, "frames_per_s": None, "status": status}


@dataclass
class EditorWorkload:
    """The editing specialist under test and the random frames it edits (speed does not depend on them)."""

    model: EditSpecialist
    frames: np.ndarray  # as many as the largest batch
    style: np.ndarray
    config: BenchConfig

    def edit_call(self, batch: int) -> Callable[[], object]:
        frames, seeds = self.frames[:batch], list(range(batch))
        return lambda: self.model.edit(
            frames, self.style, INSTRUCTION, num_steps=self.config.num_steps, guidance=self.config.guidance,
            seed=seeds,
        )

    def unet_step_call(self, batch: int) -> Callable[[], torch.Tensor]:
        """One guided denoising step as the sampling loop makes it under the model's current options."""
        import torch

        from sim2real_edit.guidance import GuidanceScales

        model = self.model
        cond = model.condition(self.frames[:batch], self.style, INSTRUCTION)
        sampler = model.make_sampler(num_steps=self.config.num_steps)
        inputs = model.guidance_inputs(cond) if model.inference.cache_conditioning else None
        generator = torch.Generator().manual_seed(0)
        latents = (torch.randn(cond.image_latents.shape, generator=generator) * sampler.init_noise_sigma).to(
            model.device
        )
        guidance = GuidanceScales.parse(self.config.guidance)

        @torch.no_grad()  # as in sampling: a compiled UNet would recompile for another grad mode
        def step() -> torch.Tensor:
            return model.guided_noise(
                latents, sampler, 0, cond, guidance, inputs=inputs, unet=model.compiled.unet
            )

        return step

    def vae_round_trip_call(self, batch: int) -> Callable[[], object]:
        model, frames = self.model, self.frames[:batch]
        return lambda: model.decode_latents(model.encode_images(frames) * model.vae.config.scaling_factor)

    def checked_outputs(self) -> dict:
        """The edit's final latents, one guided step's noise and the decoded frames, on fixed seeds."""
        import torch

        batch = self.config.check_batch
        seeds = [1000 + i for i in range(batch)]
        with torch.no_grad():
            cond = self.model.condition(self.frames[:batch], self.style, INSTRUCTION)
            latents, _ = self.model.sample(
                cond, seed=seeds, num_steps=self.config.num_steps, guidance=self.config.guidance
            )
            eps = self.unet_step_call(batch)()
        return {
            "latents": latents.float().cpu(),
            "eps": eps.float().cpu(),
            "frames": self.model.decode_latents(latents),
        }


# ---------------------------------------------------------------------------------------------- phases


def start_bench(config: BenchConfig, json_path: Path | None) -> Bench:
    """Checks the device and starts the clock, once the libraries have loaded (their import is not timed)."""
    import diffusers
    import torch

    import sim2real_edit.specialist  # noqa: F401 - with transformers, before the clock starts

    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "no CUDA device here: run `python scripts/bench_editor.py --preset tiny` for the CPU "
            "smoke test, or pass --device cpu to time SD-1.5 shapes on the CPU (very slow)"
        )
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    bench = Bench(config, device, json_path)
    bench.results.update(
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        torch=torch.__version__,
        diffusers=diffusers.__version__,
        config=asdict(config),
        rows=[],
    )
    return bench


def build_editor(config: BenchConfig, device: torch.device) -> EditorWorkload:
    import numpy as np

    from sim2real_edit.specialist import EditSpecialist

    rng = np.random.default_rng(0)
    largest = max((*config.batch_sizes, config.ablation_batch, config.check_batch))
    frames = rng.integers(0, 256, size=(largest, config.image_size, config.image_size, 3), dtype=np.uint8)
    style = rng.integers(0, 256, size=(config.image_size, config.image_size, 3), dtype=np.uint8)
    return EditorWorkload(EditSpecialist(build_components(config, device, seed=1)), frames, style, config)


def build_stock_call(config: BenchConfig, device: torch.device, frame: np.ndarray) -> Callable[[], object]:
    """The stock InstructPix2Pix pipeline editing one frame per call, as a naive wrapper around diffusers'
    pipeline would."""
    import torch
    from PIL import Image

    from sim2real_edit.acceleration import HALF_DTYPES

    pipe = build_components(config, device, seed=0).instruct_pix2pix_pipeline()
    if config.dtype is not None:
        pipe.to(dtype=HALF_DTYPES[config.dtype])
    image = Image.fromarray(frame)
    return lambda: pipe(
        INSTRUCTION,
        image=image,
        num_inference_steps=config.num_steps,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
        **STOCK_GUIDANCE,
    )


def count_flops_and_ceiling(bench: Bench, editor: EditorWorkload, stock_call: Callable[[], object]) -> None:
    """FLOPs per edited frame over the device's rate (a measured matmul, or --peak-tflops): the ceiling."""
    import torch

    from sim2real_edit.acceleration import HALF_DTYPES

    config, model = bench.config, editor.model
    step_flops = count_flops(editor.unet_step_call(1))
    encode_flops = count_flops(lambda: model.encode_images(editor.frames[:1]))
    latent = model.encode_images(editor.frames[:1]) * model.vae.config.scaling_factor
    decode_flops = count_flops(lambda: model.decode_latents(latent))
    editor_flops = config.num_steps * step_flops + encode_flops + decode_flops
    bench.results["flops"] = {
        "unet_step_per_frame": step_flops,  # four guidance branches
        "vae_encode_per_frame": encode_flops,
        "vae_decode_per_frame": decode_flops,
        "editor_per_frame": editor_flops,  # text and style latents are cached per style: not counted
        "stock_pipeline_per_frame": count_flops(stock_call),
    }
    device_name = bench.results["device"]
    measured = measure_matmul_tflops(bench.device, HALF_DTYPES.get(config.dtype, torch.float32))
    bench.results.update(
        matmul_tflops_measured=measured,
        spec_tflops=next((tflops for gpu, tflops in SPEC_TFLOPS.items() if gpu in device_name), None),
        peak_tflops=config.peak_tflops or measured,
        peak_source="--peak-tflops" if config.peak_tflops else f"measured {config.dtype or 'float32'} matmul",
    )
    bench.results["ceiling_frames_per_s"] = bench.results["peak_tflops"] * 1e12 / editor_flops
    log(
        f"{device_name}: {flop_text(editor_flops)} per edited frame, "
        f"peak {flop_text(bench.results['peak_tflops'] * 1e12)}"
        f"/s ({bench.results['peak_source']}): ceiling {bench.results['ceiling_frames_per_s']:.1f} frames/s"
    )
    bench.save()


def time_stock_pipeline(bench: Bench, stock_call: Callable[[], object]) -> None:
    """The baseline: the stock pipeline, one frame per call."""
    times = timed(stock_call, bench.device, bench.config.warmup, bench.config.baseline_runs)
    fps = 1 / median_seconds(times)
    bench.results["baseline"] = {
        "name": "stock InstructPix2Pix pipeline, 1 frame/call",
        "frames_per_s": fps,
        "runs_s": times,
        "flop_ceiling_fraction": fps
        * bench.results["flops"]["stock_pipeline_per_frame"]
        / (bench.results["peak_tflops"] * 1e12),
    }
    log(f"baseline: {fps:.2f} frames/s")
    bench.save()


def measure_float32_reference(bench: Bench, editor: EditorWorkload) -> dict:
    """The untouched float32 model, before any path is switched on: its outputs (the reference of the
    correctness check), its speed when the ablation runs in half precision, and its attention processors."""
    from sim2real_edit.acceleration import attention_processors

    config = bench.config
    float32_outputs = editor.checked_outputs()
    if config.dtype is not None:
        batch = config.float32_batch
        times = timed(editor.edit_call(batch), bench.device, config.warmup, config.ablation_runs)
        bench.results["rows"].append(bench.timing_row("plain eager float32", batch, times, "float32", None))
    checks = bench.results.setdefault("checks", {})
    checks["noise_stream_exact"] = check_noise_stream()
    checks["attention_processors"] = attention_processors(editor.model)
    return float32_outputs


def time_ablation(bench: Bench, editor: EditorWorkload) -> dict | None:
    """Switches the stages' paths on one after another and times each at the ablation batch; a stage that
    fails is a result and is switched off again. Returns the plain eager outputs (None if no stage ran)."""
    from sim2real_edit.acceleration import InferenceOptions

    config, batch = bench.config, bench.config.ablation_batch
    options = InferenceOptions(
        dtype=config.dtype,
        attention="sdpa",
        compile_mode=config.compile_mode,
        inductor_options=config.inductor_options,
    )
    plain_outputs = None
    for stage, switches in STAGES:
        if stage in COMPILE_STAGES and not config.compile:
            continue
        if bench.over_budget():
            bench.results["rows"].append(skipped_row(stage, batch, "skipped: time budget"))
            continue
        options = replace(options, **switches)
        log(f"{stage}: timing at batch {batch}" + (" (compiling first)" if stage in COMPILE_STAGES else ""))
        try:
            editor.model.optimize(options)
            if plain_outputs is None:
                plain_outputs = editor.checked_outputs()
            bench.results["rows"].append(time_editor(bench, editor, stage, batch, config.ablation_runs))
            log(f"{stage}: {bench.results['rows'][-1]['frames_per_s']:.2f} frames/s at batch {batch}")
        except Exception as error:  # noqa: BLE001 - a failing path is a result; later stages still run
            bench.results["rows"].append(
                skipped_row(stage, batch, f"failed: {type(error).__name__}: {error}"[:400])
            )
            log(f"{stage}: FAILED {type(error).__name__}: {error}")
            options = switched_off(options, switches)
            editor.model.optimize(options)
        bench.save()
    return plain_outputs


def time_optimised_batch_sizes(bench: Bench, editor: EditorWorkload) -> None:
    """The fully optimised editor at each batch size, the ablation's batch first and then the largest first
    (batch 1 may compile its own VAE graph); a batch the ablation timed with the same options is reused."""
    config = bench.config
    options = editor.model.inference.label()
    table = {}
    for batch in sorted(config.batch_sizes, key=lambda b: (b != config.ablation_batch, -b)):
        timed_already = next(
            (
                row
                for row in bench.results["rows"]
                if row.get("options") == options and row["batch"] == batch and row["status"] == "ok"
            ),
            None,
        )
        if timed_already is not None:
            table[batch] = {**timed_already, "name": OPTIMISED_NAME}
        elif bench.over_budget():
            table[batch] = skipped_row(OPTIMISED_NAME, batch, "skipped: time budget")
        else:
            table[batch] = time_editor(bench, editor, OPTIMISED_NAME, batch, config.runs)
            log(f"{OPTIMISED_NAME}: {table[batch]['frames_per_s']:.2f} frames/s at batch {batch}")
        bench.results["optimised"] = [table[b] for b in sorted(table)]
        bench.save()
    bench.results["rows"] += bench.results.pop("optimised")


def time_vae(bench: Bench, editor: EditorWorkload) -> None:
    """The optimised VAE alone: encode and decode at the ablation batch."""
    config, batch = bench.config, bench.config.ablation_batch
    times = timed(editor.vae_round_trip_call(batch), bench.device, config.warmup, config.runs)
    flops = bench.results["flops"]
    seconds = median_seconds(times)
    bench.results["vae"] = {
        "batch": batch,
        "frames_per_s": batch / seconds,
        "tflops": batch * (flops["vae_encode_per_frame"] + flops["vae_decode_per_frame"]) / seconds / 1e12,
        "runs_s": times,
    }


def check_optimised_outputs(
    bench: Bench, editor: EditorWorkload, float32_outputs: dict, plain_outputs: dict | None
) -> None:
    """The optimised outputs against the plain eager and the float32 ones; on CUDA, no sync in the loop."""
    checks = bench.results["checks"]
    checks["outputs"] = compare(editor.checked_outputs(), plain_outputs or float32_outputs, float32_outputs)
    if bench.device.type == "cuda":
        checks["loop_syncs"] = check_loop_syncs(editor, min(8, len(editor.frames)))
    bench.save()


# --------------------------------------------------------------------------------------------- helpers


def log(message: str) -> None:
    print(message, flush=True)


def build_components(config: BenchConfig, device: torch.device, seed: int) -> BaseComponents:
    from sim2real_edit.components import random_sd15_components, tiny_base_components

    if config.preset == "tiny":
        components = tiny_base_components(seed)
        for module in (components.unet, components.vae, components.text_encoder):
            module.to(device)
        return components
    return random_sd15_components(seed, device)


def switched_off(options: InferenceOptions, switches: dict) -> InferenceOptions:
    """`options` with the given switches back at their defaults."""
    defaults = type(options)()
    return replace(options, **{key: getattr(defaults, key) for key in switches})


def time_editor(bench: Bench, editor: EditorWorkload, name: str, batch: int, runs: int) -> dict:
    """A row for the editor under its current options: whole edits, and one UNet step alone."""
    times = timed(editor.edit_call(batch), bench.device, bench.config.warmup, runs)
    step_times = timed(editor.unet_step_call(batch), bench.device, 1, bench.config.step_runs)
    return bench.timing_row(name, batch, times, editor.model.inference.label(), step_times)


def median_seconds(times: list[float]) -> float:
    import numpy as np

    return float(np.median(times))  # numpy's: no runs give nan, not an error


def synchronize(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, warmup: int, runs: int) -> list[float]:
    """Wall seconds of `runs` calls of `fn` after `warmup` untimed ones, each bracketed by device syncs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def measure_matmul_tflops(device: torch.device, dtype: torch.dtype) -> float:
    """The rate of a large matrix product through torch (the practical ceiling for UNet arithmetic)."""
    import torch

    size = 8192 if device.type == "cuda" else 512
    generator = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(size, size, device=device, dtype=dtype, generator=generator) for _ in range(2))
    seconds = median_seconds(timed(lambda: a @ b, device, warmup=3, runs=10))
    return 2 * size**3 / seconds / 1e12


def attention_flops(
    query_shape: tuple[int, ...],
    key_shape: tuple[int, ...],
    value_shape: tuple[int, ...],
    *args: Any,
    **kwargs: Any,
) -> int:
    """QK^T and PV of scaled_dot_product_attention (what the counter counts for the CUDA kernels)."""
    batch, heads, queries, head_dim = query_shape
    keys, value_dim = key_shape[-2], value_shape[-1]
    return 2 * batch * heads * queries * keys * head_dim + 2 * batch * heads * queries * keys * value_dim


def count_flops(fn: Callable[[], object]) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    # the CPU attention kernel has no formula in torch's counter; the CUDA ones do
    custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: attention_flops}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=custom) as counter:
        fn()
    return int(counter.get_total_flops())


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    import torch

    value, reference = value.double(), reference.double()
    if not torch.isfinite(value).all():
        return float("inf")
    return float((value - reference).norm() / reference.norm().clamp_min(1e-30))


def compare(optimised: dict, plain: dict, float32: dict) -> dict:
    """Errors of the optimised and the plain half-precision outputs against the float32 plain path.

    Passes when the optimised path is no further from float32 than plain half precision is, up to 2x
    (plus 1e-3 relative, the floor where both paths run in float32)."""
    import numpy as np

    result = {}
    for key in ("latents", "eps"):
        plain_error = relative_error(plain[key], float32[key])
        optimised_error = relative_error(optimised[key], float32[key])
        result[f"{key}_rel_err_plain_vs_fp32"] = plain_error
        result[f"{key}_rel_err_optimised_vs_fp32"] = optimised_error
        result[f"{key}_rel_err_optimised_vs_plain"] = relative_error(optimised[key], plain[key])
        result[f"{key}_ok"] = bool(optimised_error <= 2 * plain_error + 1e-3)
    difference = np.abs(optimised["frames"].astype(int) - plain["frames"].astype(int))
    result["frames_mean_abs_diff_vs_plain"] = float(difference.mean())
    result["passed"] = result["latents_ok"] and result["eps_ok"]
    return result


def check_noise_stream(shape: tuple[int, ...] = (4, 32, 32), steps: int = 20) -> bool:
    """Pre-drawn noise equals what the step-by-step loop draws from each image's generator."""
    import torch

    from sim2real_edit.acceleration import draw_step_noise

    seeds = [3, 5]
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    step_by_step = torch.stack(
        [torch.cat([torch.randn((1, *shape), generator=g) for g in generators]) for _ in range(steps)]
    )
    predrawn = draw_step_noise(
        [torch.Generator().manual_seed(s) for s in seeds], steps, shape, torch.device("cpu")
    )
    return bool(torch.equal(predrawn, step_by_step))


def check_loop_syncs(editor: EditorWorkload, batch: int) -> str:
    """Runs one sampling call with CUDA's sync debug mode set to error: 'none', or the offending call."""
    import torch

    model, config = editor.model, editor.config
    cond = model.condition(editor.frames[:batch], editor.style, INSTRUCTION)
    seeds = list(range(batch))
    model.sample(cond, seed=seeds, num_steps=config.num_steps, guidance=config.guidance)  # warm
    synchronize(model.device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        model.sample(cond, seed=seeds, num_steps=config.num_steps, guidance=config.guidance)
        return "none"
    except RuntimeError as error:
        return f"sync found: {str(error).splitlines()[0][:200]}"
    finally:
        torch.cuda.set_sync_debug_mode("default")


# ---------------------------------------------------------------------------------------------- report


def flop_text(flops: float) -> str:
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.3g} FLOP"


def format_table(results: dict) -> str:
    baseline = results.get("baseline", {})
    lines = [
        f"device: {results['device']}   torch {results['torch']}   diffusers {results['diffusers']}",
        (
            f"peak {flop_text(results['peak_tflops'] * 1e12)}/s ({results['peak_source']}; datasheet "
            f"{str(results['spec_tflops']) + ' TFLOP/s' if results.get('spec_tflops') else 'n/a'}); "
            f"{flop_text(results['flops']['editor_per_frame'])} per "
            f"edited frame -> ceiling {results['ceiling_frames_per_s']:.1f} frames/s"
        ),
        "",
        (
            f"{'what':<44} {'batch':>5} {'frames/s':>9} {'x base':>7} {'% ceil':>7} {'UNet img-steps/s':>17}"
            "  options"
        ),
    ]
    if baseline:
        lines.append(
            f"{baseline['name']:<44} {1:>5} {baseline['frames_per_s']:>9.2f} {1.0:>7.2f} "
            f"{100 * baseline['flop_ceiling_fraction']:>7.1f} {'':>17}  stock, 3-way guidance"
        )
    for r in results.get("rows", []):
        if r["status"] != "ok":
            lines.append(f"{r['name']:<44} {r['batch']:>5} {'-':>9}  {r['status']}")
            continue
        steps = f"{r['unet_image_steps_per_s']:.1f}" if r.get("unet_image_steps_per_s") else "-"
        ratio = f"{r['x_baseline']:.2f}" if r.get("x_baseline") else "-"
        lines.append(
            f"{r['name']:<44} {r['batch']:>5} {r['frames_per_s']:>9.2f} {ratio:>7} "
            f"{100 * r['flop_ceiling_fraction']:>7.1f} {steps:>17}  {r['options']}"
        )
    if "vae" in results:
        vae = results["vae"]
        lines.append(
            f"VAE encode+decode alone: {vae['frames_per_s']:.1f} frames/s at batch {vae['batch']} "
            f"({flop_text(vae['tflops'] * 1e12)}/s)"
        )
    checks = results.get("checks", {})
    if "outputs" in checks:
        out = checks["outputs"]
        lines.append(
            f"optimised vs plain eager: {'PASS' if out['passed'] else 'FAIL'} (relative error vs the float32 "
            "plain "
            f"path: final latents {out['latents_rel_err_optimised_vs_fp32']:.2e} optimised, "
            f"{out['latents_rel_err_plain_vs_fp32']:.2e} plain; one guided step "
            f"{out['eps_rel_err_optimised_vs_fp32']:.2e} vs {out['eps_rel_err_plain_vs_fp32']:.2e}; "
            "frames differ "
            f"from plain by {out['frames_mean_abs_diff_vs_plain']:.2f}/255 on average)"
        )
    if "noise_stream_exact" in checks:
        lines.append(
            f"pre-drawn noise is the per-image generator stream: {checks['noise_stream_exact']}; "
            f"attention processors: {checks.get('attention_processors')}; "
            f"syncs in the denoising loop: {checks.get('loop_syncs', 'not checked (CPU)')}"
        )
    lines.append(f"wall time {results.get('wall_s', 0):.0f} s")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="sd15",
        help="sd15: SD-1.5 shapes on CUDA; tiny: tiny model on the CPU (smoke test)",
    )
    parser.add_argument("--device", default=None, help="default: the preset's (cuda / cpu)")
    parser.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default=None)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument(
        "--ablation-batch", type=int, default=None, help="batch of the one-change-at-a-time rows"
    )
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 20)")
    parser.add_argument("--size", type=int, default=None, help="frame side in pixels (default 256)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per batch size (median)")
    parser.add_argument(
        "--compile-mode",
        default=None,
        help="inductor mode: reduce-overhead (CUDA graphs, default), default, "
        "max-autotune-no-cudagraphs, max-autotune",
    )
    parser.add_argument(
        "--inductor-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra inductor setting for the compile stages, e.g. conv_1x1_as_mm=True (repeatable)",
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile stages")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the rate for the FLOP ceiling (default: a matmul measured in this run)",
    )
    parser.add_argument("--time-budget", type=float, default=None, help="seconds; later work is skipped")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this file")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    config = PRESETS[args.preset]
    overrides = {
        "device": args.device,
        "batch_sizes": tuple(args.batch_sizes) if args.batch_sizes else None,
        "ablation_batch": args.ablation_batch,
        "num_steps": args.steps,
        "image_size": args.size,
        "runs": args.runs,
        "compile_mode": args.compile_mode,
        "peak_tflops": args.peak_tflops,
        "time_budget_s": args.time_budget,
        "threads": args.threads,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if args.dtype is not None:
        config = replace(config, dtype=None if args.dtype == "float32" else args.dtype)
    if args.no_compile:
        config = replace(config, compile=False)
    if args.inductor_option:
        config = replace(config, inductor_options=dict(parse_setting(s) for s in args.inductor_option))
    return config


def parse_setting(text: str) -> tuple[str, object]:
    """'KEY=VALUE' with VALUE as a Python literal (True, 2, 'x'), or the plain string if it is not one."""
    import ast

    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--inductor-option takes KEY=VALUE (e.g. conv_1x1_as_mm=True), got {text!r}")
    try:
        return key.strip(), ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        return key.strip(), value.strip()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from sim2real_edit.outputs import check_writable_file

    if args.json is not None:  # before the work, not after it
        check_writable_file(args.json, what=f"--json {args.json}", fix="pass a file path in a writable folder")
    results = run(config_from_args(args), args.json)
    print(format_table(results))
    return results


if __name__ == "__main__":
    cli.run_main(main)
