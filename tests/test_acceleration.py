"""Faster inference paths: each gives the plain eager path's outputs; compile never recompiles per step;
the benchmark's tiny preset runs end to end."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import (
    UNet2DConditionModel,
)
from PIL import Image

from sim2real_edit import EditSpecialist, GuidanceScales
from sim2real_edit.acceleration import (
    InferenceOptions,
    attention_processors,
    compile_arguments,
    draw_step_noise,
    model_pixels,
    uint8_frames,
)
from sim2real_edit.components import tiny_base_components
from sim2real_edit.images import to_model_pixels, to_uint8_images
from sim2real_edit.specialist import SpecialistConfig
from sim2real_edit.style_attention import StyleAttentionConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTRUCTION = "make the cupboard out of wood"
SEEDS, STEP_SEEDS = [3, 4, 5], [30, 41, 52]
STEPS = 4


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def style() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def trained() -> EditSpecialist:
    """A tiny specialist whose LoRA, conv_in and style attention are non-zero (so every path matters)."""
    model = EditSpecialist.tiny(0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.trainable_parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    return model


def run_paths(model: EditSpecialist, frames: np.ndarray, style: np.ndarray) -> dict:
    """What the RL trainer (trajectories with step seeds) and the env (edits) get from a model."""
    cond = model.condition(frames, style, INSTRUCTION)
    latents, trajectory = model.sample(
        cond, seed=SEEDS, step_seed=STEP_SEEDS, num_steps=STEPS, return_trajectory=True
    )
    edits = model.edit(frames, style, INSTRUCTION, num_steps=STEPS, seed=SEEDS)
    return {
        "latents": latents,
        "states": trajectory.latents,
        "log_probs": trajectory.log_probs,
        "edits": edits,
    }


@pytest.fixture(scope="module")
def plain_outputs(trained, frames, style) -> dict:
    return run_paths(trained, frames, style)


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.double() - reference.double()).norm() / reference.double().norm())


# Reassociated float32 sums (channels-last kernels, merged LoRA, another attention kernel) differ by
# ~1e-7 per op and grow over the denoising steps; CPUs with other BLAS builds reach ~2e-5. A wrong
# path (a dropped branch, a mis-merged LoRA) is off by more than 1e-2, so 1e-4 still separates them.
FLOAT32_PATH_TOLERANCE = 1e-4


@pytest.mark.parametrize(
    "switch", [{"predraw_noise": True}, {"device_timesteps": True}, {"cache_conditioning": True}]
)
def test_loop_switches_give_bit_identical_samples(trained, frames, style, plain_outputs, switch):
    model = copy.deepcopy(trained).optimize(**switch)
    assert getattr(model.inference, next(iter(switch)))
    outputs = run_paths(model, frames, style)
    for key in ("latents", "states", "log_probs"):
        assert torch.equal(outputs[key], plain_outputs[key]), key
    np.testing.assert_array_equal(outputs["edits"], plain_outputs["edits"])


@pytest.mark.parametrize(
    "switch", [{"channels_last": True}, {"merge_lora": True}, {"attention": "classic"}, {"vae_batch_size": 1}]
)
def test_layout_and_weight_switches_match_within_float_tolerance(
    trained, frames, style, plain_outputs, switch
):
    model = copy.deepcopy(trained).optimize(**switch)
    outputs = run_paths(model, frames, style)
    for key in ("latents", "states"):
        assert relative_error(outputs[key], plain_outputs[key]) < FLOAT32_PATH_TOLERANCE, key
    torch.testing.assert_close(outputs["log_probs"], plain_outputs["log_probs"], rtol=1e-4, atol=1e-5)
    assert np.abs(outputs["edits"].astype(int) - plain_outputs["edits"].astype(int)).max() <= 1


def test_switches_take_effect(trained):
    model = copy.deepcopy(trained).optimize(channels_last=True, attention="classic", merge_lora=True)
    assert model.unet.conv_in.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert set(attention_processors(model)) == {"AttnProcessor"}
    lora_layers = [m for m in model.unet.modules() if hasattr(m, "merged") and hasattr(m, "lora_A")]
    assert lora_layers and all(layer.merged for layer in lora_layers)
    model.optimize(attention="sdpa")
    assert set(attention_processors(model)) == {"AttnProcessor2_0"}


def test_predrawn_noise_is_each_images_generator_stream():
    for shape in ((4, 4, 4), (4, 3, 3)):  # 64 values per draw (whole sampler blocks), and 36 (a partial one)
        seeds = [7, 8, 9]
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        step_by_step = torch.stack(
            [torch.cat([torch.randn((1, *shape), generator=g) for g in generators]) for _ in range(5)]
        )
        predrawn = draw_step_noise(
            [torch.Generator().manual_seed(s) for s in seeds], 5, shape, torch.device("cpu")
        )
        assert predrawn.shape == (5, 3, *shape)
        assert torch.equal(predrawn, step_by_step), shape
    # why a partial block is drawn step by step: one large draw would give other numbers
    block = torch.randn((5, 4, 3, 3), generator=torch.Generator().manual_seed(7))
    assert not torch.equal(block, step_by_step[:, 0])


def test_host_transfers_round_exactly_like_the_plain_conversions(frames):
    for dtype in (torch.float32, torch.bfloat16):
        torch.testing.assert_close(
            model_pixels(frames, torch.device("cpu"), dtype, pin_memory=False),
            to_model_pixels(frames, torch.device("cpu"), dtype),
            rtol=0,
            atol=0,
        )
    pixels = torch.rand((4, 3, 8, 8), generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2
    pixels[0, 0, 0, :4] = torch.tensor([-1.0, 1.0, 0.0, 2 * (128.5 / 255) - 1])  # ends and a rounding tie
    np.testing.assert_array_equal(uint8_frames(pixels, pin_memory=False), to_uint8_images(pixels))


def test_optimised_path_keeps_batch_invariance_and_matches_diffusers_pipeline(frames, style):
    base = tiny_base_components(0)
    pipe = base.instruct_pix2pix_pipeline()
    expected = pipe(
        INSTRUCTION,
        image=Image.fromarray(frames[0]),
        num_inference_steps=5,
        guidance_scale=7.5,
        image_guidance_scale=1.5,
        generator=torch.Generator().manual_seed(7),
        output_type="latent",
    ).images

    model = EditSpecialist.tiny(0).optimize(
        InferenceOptions.fastest("cpu"), compile_unet=False, compile_vae=False
    )
    assert model.inference.predraw_noise and model.inference.merge_lora and model.inference.channels_last
    latents, _ = model.sample(model.condition(frames[:1], style, INSTRUCTION), seed=7, num_steps=5)
    torch.testing.assert_close(latents, expected, rtol=1e-4, atol=1e-4)

    together = model.edit(frames, style, INSTRUCTION, num_steps=3, seed=[10, 11, 12])
    for i, seed in enumerate((10, 11, 12)):
        alone = model.edit(frames[i : i + 1], style, INSTRUCTION, num_steps=3, seed=seed)
        assert np.abs(alone.astype(int) - together[i : i + 1].astype(int)).max() <= 1


def test_gpu_only_switches_fall_back_on_cpu(trained, frames, style):
    on_gpu = InferenceOptions.fastest("cuda")
    assert on_gpu.dtype == "float16" and on_gpu.pinned_transfers and on_gpu.compile_mode == "reduce-overhead"
    on_cpu = InferenceOptions.fastest("cpu")
    assert on_cpu.dtype is None and not on_cpu.pinned_transfers and not on_cpu.cudnn_benchmark
    assert on_cpu.compile_mode == "default" and on_cpu.compile_unet and on_cpu.predraw_noise
    assert (
        InferenceOptions(compile_mode="max-autotune").for_device("cpu").compile_mode
        == "max-autotune-no-cudagraphs"
    )

    model = copy.deepcopy(trained).optimize(dtype="float16", pinned_transfers=True, predraw_noise=True)
    assert (
        model.dtype == torch.float32
        and not model.inference.pinned_transfers
        and model.inference.predraw_noise
    )
    assert model.edit(frames[:1], style, num_steps=2).dtype == np.uint8
    with pytest.raises(ValueError, match="dtype must be one of float16, bfloat16"):
        InferenceOptions(dtype="float8")


def test_compile_arguments_spell_out_modes_and_drop_cuda_graphs_where_asked():
    args, graphs = compile_arguments(InferenceOptions(compile_mode="reduce-overhead"), cuda_graphs=True)
    assert args == {"dynamic": None, "backend": "inductor", "mode": "reduce-overhead"} and graphs
    args, graphs = compile_arguments(InferenceOptions(compile_mode="reduce-overhead"), cuda_graphs=False)
    assert args["mode"] == "default" and not graphs
    with_settings = InferenceOptions(compile_mode="max-autotune", inductor_options={"conv_1x1_as_mm": True})
    args, graphs = compile_arguments(with_settings, cuda_graphs=True)
    assert "mode" not in args and graphs
    assert args["options"]["conv_1x1_as_mm"] and args["options"]["max_autotune"]
    args, graphs = compile_arguments(with_settings, cuda_graphs=False)
    assert args["options"]["triton.cudagraphs"] is False and not graphs
    args, graphs = compile_arguments(
        InferenceOptions(compile_backend="eager", compile_dynamic_batch=False), True
    )
    assert args == {"dynamic": False, "backend": "eager"} and not graphs


def test_half_precision_runs_the_unet_in_half_with_float32_conv_in_and_style_attention(
    trained, frames, style
):
    model = copy.deepcopy(trained).to(dtype=torch.bfloat16)  # what optimize(dtype=...) does on a GPU
    assert model.unet.dtype == torch.bfloat16 and model.unet.conv_in.conv.weight.dtype == torch.float32
    assert model.style_attention.to_q.weight.dtype == torch.float32
    cond = model.condition(frames, style, INSTRUCTION)
    latents, _ = model.sample(cond, seed=SEEDS, num_steps=STEPS)
    reference, _ = trained.sample(trained.condition(frames, style, INSTRUCTION), seed=SEEDS, num_steps=STEPS)
    assert relative_error(latents, reference) < 0.1  # bfloat16 keeps 8 bits of mantissa


def test_trainer_sampling_runs_on_the_fast_paths_with_lora_unmerged(trained, frames, style, plain_outputs):
    model = copy.deepcopy(trained)
    model.prepare_for_training()
    model.optimize(InferenceOptions.fastest("cpu", training=True), compile_unet=False, compile_vae=False)
    assert not model.inference.merge_lora and model.inference.predraw_noise
    outputs = run_paths(model, frames, style)
    for key in ("latents", "states"):
        assert relative_error(outputs[key], plain_outputs[key]) < FLOAT32_PATH_TOLERANCE, key
    torch.testing.assert_close(outputs["log_probs"], plain_outputs["log_probs"], rtol=1e-4, atol=1e-5)


def test_merge_lora_refuses_a_model_in_training(trained):
    model = copy.deepcopy(trained)
    model.prepare_for_training()
    with pytest.raises(RuntimeError, match="merge_lora is for inference"):
        model.optimize(merge_lora=True)


def one_block_specialist() -> EditSpecialist:
    """The tiny stack with a one-block UNet (cross-attention, LoRA, float32 conv_in): less to trace."""
    components = tiny_base_components(0)
    torch.manual_seed(0)
    components.unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=8,
        out_channels=4,
        block_out_channels=(32,),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",),
        mid_block_type=None,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    ).eval()
    attention = StyleAttentionConfig(text_dim=32, inner_dim=32, num_heads=4).to_dict()
    model = EditSpecialist(components, SpecialistConfig(base=components.base, style_attention=attention))
    with torch.no_grad():
        for param in model.trainable_parameters():
            param.add_(torch.randn(param.shape) * 0.05)
    return model


@pytest.mark.slow
def test_compiled_unet_serves_sampling_without_recompiles_and_training_stays_eager(frames, style):
    from torch._dynamo.testing import CompileCounter

    plain = one_block_specialist()
    expected = run_paths(plain, frames, style)
    torch._dynamo.reset()
    counter = CompileCounter()  # a backend that runs the captured graph eagerly and counts compilations
    model = copy.deepcopy(plain).optimize(
        compile_unet=True,
        compile_backend=counter,
        predraw_noise=True,
        device_timesteps=True,
        cache_conditioning=True,
    )
    outputs = run_paths(model, frames, style)
    assert counter.frame_count == 1  # one graph for every step's timestep, for sampling and editing
    for key in ("latents", "states", "log_probs"):
        assert torch.equal(outputs[key], expected[key]), key
    np.testing.assert_array_equal(outputs["edits"], expected["edits"])

    with torch._dynamo.config.patch(error_on_recompile=True):  # another batch size and step count
        model.edit(frames[:1], style, INSTRUCTION, num_steps=2, seed=1)
    assert counter.frame_count == 1

    cond = model.condition(frames[:2], style, INSTRUCTION)
    sampler = model.make_sampler(num_steps=STEPS)
    model.prepare_for_training()
    guidance = GuidanceScales.parse(model.config.guidance)
    log_prob = model.step_log_prob(
        cond, expected["states"][1, :2], expected["states"][2, :2], sampler, 1, guidance
    )
    log_prob.sum().backward()
    assert counter.frame_count == 1  # gradients ran the eager UNet
    assert model.style_attention.to_q.weight.grad.abs().sum() > 0

    model.optimize(compile_unet=False)
    assert model.compiled.unet is None


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_editor", REPO_ROOT / "scripts" / "bench_editor.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_bench_tiny_preset_runs_end_to_end(tmp_path, capsys):
    bench = _load_bench()
    results = bench.main(["--preset", "tiny", "--json", str(tmp_path / "bench.json")])
    written = json.loads((tmp_path / "bench.json").read_text())
    assert written["device"] == results["device"] and written["config"]["preset"] == "tiny"

    flops = written["flops"]
    assert (
        flops["editor_per_frame"]
        == 2 * flops["unet_step_per_frame"] + flops["vae_encode_per_frame"] + flops["vae_decode_per_frame"]
    )
    assert flops["unet_step_per_frame"] > 0 and flops["stock_pipeline_per_frame"] > 0
    assert written["peak_tflops"] > 0 and written["ceiling_frames_per_s"] > 0
    assert written["baseline"]["frames_per_s"] > 0

    rows = written["rows"]
    assert all(r["status"] == "ok" for r in rows), [r["status"] for r in rows]
    stages = [r["name"] for r in rows if r["name"] != "optimised editor"]
    assert stages[0] == "plain eager" and "+ LoRA merged into the weights" in stages
    optimised = {r["batch"]: r for r in rows if r["name"] == "optimised editor"}
    assert sorted(optimised) == [1, 2, 4]
    for r in optimised.values():
        assert r["frames_per_s"] > 0
        ceiling = written["peak_tflops"] * 1e12 / flops["editor_per_frame"]
        assert r["flop_ceiling_fraction"] == pytest.approx(r["frames_per_s"] / ceiling)
        assert r["x_baseline"] == pytest.approx(r["frames_per_s"] / written["baseline"]["frames_per_s"])
        assert r["unet_image_steps_per_s"] > 0 and "merge_lora" in r["options"]

    checks = written["checks"]
    assert checks["outputs"]["passed"] and checks["noise_stream_exact"]
    assert checks["outputs"]["latents_rel_err_optimised_vs_fp32"] < 1e-3
    assert written["vae"]["frames_per_s"] > 0

    table = capsys.readouterr().out
    assert "stock InstructPix2Pix pipeline" in table and "optimised editor" in table and "PASS" in table
    assert f"device: {written['device']}" in table
