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
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sim2real_edit import cli
from sim2real_edit.acceleration import InferenceOptions, attention_processors, draw_step_noise
from sim2real_edit.components import BaseComponents, random_sd15_components, tiny_base_components
from sim2real_edit.guidance import GuidanceScales
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


@dataclass
class Bench:
    """The results so far, written to JSON after every measurement."""

    config: BenchConfig
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


# ---------------------------------------------------------------------------------------------- models


def build_components(config: BenchConfig, device: torch.device, seed: int) -> BaseComponents:
    if config.preset == "tiny":
        components = tiny_base_components(seed)
        for module in (components.unet, components.vae, components.text_encoder):
            module.to(device)
        return components
    return random_sd15_components(seed, device)


def stock_pipeline(components: BaseComponents, dtype: torch.dtype):
    pipe = components.instruct_pix2pix_pipeline()
    if dtype != torch.float32:
        pipe.to(dtype=dtype)
    return pipe


# ---------------------------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
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
    size = 8192 if device.type == "cuda" else 512
    generator = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(size, size, device=device, dtype=dtype, generator=generator) for _ in range(2))
    seconds = float(np.median(timed(lambda: a @ b, device, warmup=3, runs=10)))
    return 2 * size**3 / seconds / 1e12


def attention_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    """QK^T and PV of scaled_dot_product_attention (what the counter counts for the CUDA kernels)."""
    batch, heads, queries, head_dim = query_shape
    keys, value_dim = key_shape[-2], value_shape[-1]
    return 2 * batch * heads * queries * keys * head_dim + 2 * batch * heads * queries * keys * value_dim


def count_flops(fn: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    # the CPU attention kernel has no formula in torch's counter; the CUDA ones do
    custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: attention_flops}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=custom) as counter:
        fn()
    return int(counter.get_total_flops())


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    value, reference = value.double(), reference.double()
    if not torch.isfinite(value).all():
        return float("inf")
    return float((value - reference).norm() / reference.norm().clamp_min(1e-30))


# ---------------------------------------------------------------------------------------------- stages


def stock_pipeline_call(pipe, frame: np.ndarray, config: BenchConfig) -> Callable[[], object]:
    """One frame per call, as a naive wrapper around diffusers' pipeline would edit."""
    image = Image.fromarray(frame)
    return lambda: pipe(
        INSTRUCTION,
        image=image,
        num_inference_steps=config.num_steps,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
        **STOCK_GUIDANCE,
    )


def editor_call(model: EditSpecialist, frames: np.ndarray, style: np.ndarray, config: BenchConfig):
    seeds = list(range(len(frames)))
    return lambda: model.edit(
        frames, style, INSTRUCTION, num_steps=config.num_steps, guidance=config.guidance, seed=seeds
    )


def unet_step_call(model: EditSpecialist, frames: np.ndarray, style: np.ndarray, config: BenchConfig):
    """One guided denoising step as the sampling loop makes it under the model's current options."""
    cond = model.condition(frames, style, INSTRUCTION)
    sampler = model.make_sampler(num_steps=config.num_steps)
    inputs = model.guidance_inputs(cond) if model.inference.cache_conditioning else None
    generator = torch.Generator().manual_seed(0)
    latents = (torch.randn(cond.image_latents.shape, generator=generator) * sampler.init_noise_sigma).to(
        model.device
    )
    guidance = GuidanceScales.parse(config.guidance)

    @torch.no_grad()  # as in sampling: a compiled UNet would recompile for another grad mode
    def step() -> torch.Tensor:
        return model.guided_noise(
            latents, sampler, 0, cond, guidance, inputs=inputs, unet=model.compiled.unet
        )

    return step


def check_outputs(model: EditSpecialist, frames: np.ndarray, style: np.ndarray, config: BenchConfig) -> dict:
    """The edit's final latents, one guided step's noise and the decoded frames, on fixed seeds."""
    seeds = [1000 + i for i in range(len(frames))]
    with torch.no_grad():
        cond = model.condition(frames, style, INSTRUCTION)
        latents, _ = model.sample(cond, seed=seeds, num_steps=config.num_steps, guidance=config.guidance)
        eps = unet_step_call(model, frames, style, config)()
    return {
        "latents": latents.float().cpu(),
        "eps": eps.float().cpu(),
        "frames": model.decode_latents(latents),
    }


def compare(optimised: dict, plain: dict, float32: dict) -> dict:
    """Errors of the optimised and the plain half-precision outputs against the float32 plain path.

    Passes when the optimised path is no further from float32 than plain half precision is, up to 2x
    (plus 1e-3 relative, the floor where both paths run in float32)."""
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
    seeds = [3, 5]
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    step_by_step = torch.stack(
        [torch.cat([torch.randn((1, *shape), generator=g) for g in generators]) for _ in range(steps)]
    )
    predrawn = draw_step_noise(
        [torch.Generator().manual_seed(s) for s in seeds], steps, shape, torch.device("cpu")
    )
    return bool(torch.equal(predrawn, step_by_step))


def check_loop_syncs(
    model: EditSpecialist, frames: np.ndarray, style: np.ndarray, config: BenchConfig
) -> str:
    """Runs one sampling call with CUDA's sync debug mode set to error: 'none', or the offending call."""
    cond = model.condition(frames, style, INSTRUCTION)
    seeds = list(range(len(frames)))
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


def row(
    name: str, batch: int, times: list[float], bench: Bench, options: str, step_times: list[float] | None
) -> dict:
    flops = bench.results["flops"]
    median = float(np.median(times))
    fps = batch / median
    baseline = bench.results.get("baseline", {}).get("frames_per_s")
    result = {
        "name": name,
        "batch": batch,
        "frames_per_s": fps,
        "x_baseline": fps / baseline if baseline else None,
        "flop_ceiling_fraction": fps * flops["editor_per_frame"] / (bench.results["peak_tflops"] * 1e12),
        "median_s": median,
        "runs_s": times,
        "options": options,
        "status": "ok",
    }
    if step_times:
        step = float(np.median(step_times))
        result["unet_image_steps_per_s"] = batch / step
        result["unet_tflops"] = batch * flops["unet_step_per_frame"] / step / 1e12
    return result


def skipped(name: str, batch: int, status: str) -> dict:
    return {"name": name, "batch": batch, "frames_per_s": None, "status": status}


def run(config: BenchConfig, json_path: Path | None) -> dict:
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "no CUDA device here: run `python scripts/bench_editor.py --preset tiny` for the CPU "
            "smoke test, or pass --device cpu to time SD-1.5 shapes on the CPU (very slow)"
        )
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    half = {"float16": torch.float16, "bfloat16": torch.bfloat16, None: torch.float32}[config.dtype]
    bench = Bench(config, json_path)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    import diffusers

    bench.results.update(
        device=name,
        torch=torch.__version__,
        diffusers=diffusers.__version__,
        config=asdict(config),
        rows=[],
    )
    log = partial(print, flush=True)

    rng = np.random.default_rng(0)
    largest = max((*config.batch_sizes, config.ablation_batch, config.check_batch))
    frames = rng.integers(0, 256, size=(largest, config.image_size, config.image_size, 3), dtype=np.uint8)
    style = rng.integers(0, 256, size=(config.image_size, config.image_size, 3), dtype=np.uint8)

    # 1. models, FLOPs, the rate ceiling
    model = EditSpecialist(build_components(config, device, seed=1))
    pipe = stock_pipeline(build_components(config, device, seed=0), half)
    step_flops = count_flops(unet_step_call(model, frames[:1], style, config))
    encode_flops = count_flops(lambda: model.encode_images(frames[:1]))
    latent = model.encode_images(frames[:1]) * model.vae.config.scaling_factor
    decode_flops = count_flops(lambda: model.decode_latents(latent))
    stock_call = stock_pipeline_call(pipe, frames[0], config)
    editor_flops = config.num_steps * step_flops + encode_flops + decode_flops
    bench.results["flops"] = {
        "unet_step_per_frame": step_flops,  # four guidance branches
        "vae_encode_per_frame": encode_flops,
        "vae_decode_per_frame": decode_flops,
        "editor_per_frame": editor_flops,  # text and style latents are cached per style: not counted
        "stock_pipeline_per_frame": count_flops(stock_call),
    }
    measured = measure_matmul_tflops(device, half)
    spec = next((v for k, v in SPEC_TFLOPS.items() if k in name), None)
    bench.results.update(
        matmul_tflops_measured=measured,
        spec_tflops=spec,
        peak_tflops=config.peak_tflops or measured,
        peak_source="--peak-tflops" if config.peak_tflops else f"measured {config.dtype or 'float32'} matmul",
    )
    bench.results["ceiling_frames_per_s"] = bench.results["peak_tflops"] * 1e12 / editor_flops
    log(
        f"{name}: {flop_text(editor_flops)} per edited frame, "
        f"peak {flop_text(bench.results['peak_tflops'] * 1e12)}"
        f"/s ({bench.results['peak_source']}): ceiling {bench.results['ceiling_frames_per_s']:.1f} frames/s"
    )
    bench.save()

    # 2. the stock pipeline, one frame per call
    times = timed(stock_call, device, config.warmup, config.baseline_runs)
    fps = 1 / float(np.median(times))
    bench.results["baseline"] = {
        "name": "stock InstructPix2Pix pipeline, 1 frame/call",
        "frames_per_s": fps,
        "runs_s": times,
        "flop_ceiling_fraction": fps
        * bench.results["flops"]["stock_pipeline_per_frame"]
        / (bench.results["peak_tflops"] * 1e12),
    }
    log(f"baseline: {fps:.2f} frames/s")
    pipe = stock_call = None  # free its memory
    bench.save()

    # 3. float32 plain outputs and speed (the unoptimised default), then the ablation in half precision
    float32_outputs = check_outputs(model, frames[: config.check_batch], style, config)
    if config.dtype is not None:
        batch = config.float32_batch
        times = timed(
            editor_call(model, frames[:batch], style, config), device, config.warmup, config.ablation_runs
        )
        bench.results["rows"].append(row("plain eager float32", batch, times, bench, "float32", None))
    checks = bench.results.setdefault("checks", {})
    checks["noise_stream_exact"] = check_noise_stream()
    checks["attention_processors"] = attention_processors(model)
    plain_outputs = None
    batch = config.ablation_batch
    options = InferenceOptions(
        dtype=config.dtype,
        attention="sdpa",
        compile_mode=config.compile_mode,
        inductor_options=config.inductor_options,
    )
    for stage, switches in STAGES:
        if stage in COMPILE_STAGES and not config.compile:
            continue
        if bench.over_budget():
            bench.results["rows"].append(skipped(stage, batch, "skipped: time budget"))
            continue
        options = replace(options, **switches)
        log(f"{stage}: timing at batch {batch}" + (" (compiling first)" if stage in COMPILE_STAGES else ""))
        try:
            model.optimize(options)
            if plain_outputs is None:
                plain_outputs = check_outputs(model, frames[: config.check_batch], style, config)
            times = timed(
                editor_call(model, frames[:batch], style, config), device, config.warmup, config.ablation_runs
            )
            step_times = timed(
                unet_step_call(model, frames[:batch], style, config), device, 1, config.step_runs
            )
            bench.results["rows"].append(row(stage, batch, times, bench, model.inference.label(), step_times))
            log(f"{stage}: {bench.results['rows'][-1]['frames_per_s']:.2f} frames/s at batch {batch}")
        except Exception as error:  # noqa: BLE001 - a failing path is a result; later stages still run
            bench.results["rows"].append(
                skipped(stage, batch, f"failed: {type(error).__name__}: {error}"[:400])
            )
            log(f"{stage}: FAILED {type(error).__name__}: {error}")
            options = replace(
                options, **{key: InferenceOptions.__dataclass_fields__[key].default for key in switches}
            )
            model.optimize(options)
        bench.save()
    final = model.inference.label()

    # 4. the optimised editor at each batch size (largest first: batch 1 may compile its own VAE graph),
    # then the VAE alone
    name = "optimised editor"
    table = {}
    for batch in sorted(config.batch_sizes, key=lambda b: (b != config.ablation_batch, -b)):
        previous = next(
            (
                r
                for r in bench.results["rows"]
                if r.get("options") == final and r["batch"] == batch and r["status"] == "ok"
            ),
            None,
        )
        if previous is not None:
            table[batch] = {**previous, "name": name}
        elif bench.over_budget():
            table[batch] = skipped(name, batch, "skipped: time budget")
        else:
            times = timed(
                editor_call(model, frames[:batch], style, config), device, config.warmup, config.runs
            )
            step_times = timed(
                unet_step_call(model, frames[:batch], style, config), device, 1, config.step_runs
            )
            table[batch] = row(name, batch, times, bench, final, step_times)
            log(f"{name}: {table[batch]['frames_per_s']:.2f} frames/s at batch {batch}")
        bench.results["optimised"] = [table[b] for b in sorted(table)]
        bench.save()
    bench.results["rows"] += bench.results.pop("optimised")
    batch = config.ablation_batch

    def vae_round_trip() -> None:
        model.decode_latents(model.encode_images(frames[:batch]) * model.vae.config.scaling_factor)

    times = timed(vae_round_trip, device, config.warmup, config.runs)
    vae_flops = (
        bench.results["flops"]["vae_encode_per_frame"] + bench.results["flops"]["vae_decode_per_frame"]
    )
    bench.results["vae"] = {
        "batch": batch,
        "frames_per_s": batch / float(np.median(times)),
        "tflops": batch * vae_flops / float(np.median(times)) / 1e12,
        "runs_s": times,
    }

    # 5. correctness of the optimised path
    optimised_outputs = check_outputs(model, frames[: config.check_batch], style, config)
    checks["outputs"] = compare(optimised_outputs, plain_outputs or float32_outputs, float32_outputs)
    if device.type == "cuda":
        checks["loop_syncs"] = check_loop_syncs(model, frames[: min(8, largest)], style, config)
    bench.save()
    return bench.results


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
        raise SystemExit(f"--inductor-option takes KEY=VALUE (e.g. conv_1x1_as_mm=True), got {text!r}")
    try:
        return key.strip(), ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        return key.strip(), value.strip()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    results = run(config_from_args(args), args.json)
    print(format_table(results))
    return results


if __name__ == "__main__":
    cli.run_main(main)
