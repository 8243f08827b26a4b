"""Faster inference paths for `EditSpecialist`, each a switch so that it can be measured on its own.

Half precision, SDPA attention, channels_last, merged LoRA, torch.compile (with CUDA graphs), a denoising
loop without host-device synchronisation (all step noise drawn up front, timesteps on the device, the
step-independent conditioning built once), pinned-memory frame transfers and chunked VAE work. With every
switch off (`InferenceOptions()`) the specialist runs its plain eager path, which stays the reference the
tests compare each switch against. Switches that need a GPU are dropped on other devices
(`InferenceOptions.for_device`), so the same options serve a CPU test run and an H200 evaluation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Protocol, TypeVar

import numpy as np
import torch

logger = logging.getLogger(__name__)

HALF_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
ATTENTION_KINDS = ("sdpa", "classic")
#: Inductor modes that capture CUDA graphs, and their counterpart without graphs.
WITHOUT_CUDAGRAPHS = {"reduce-overhead": "default", "max-autotune": "max-autotune-no-cudagraphs"}
#: torch's CPU normal sampler fills 16 values at a time and redraws a partial last block; draws whose size
#: is a multiple of this concatenate into the same stream as one large draw.
NORMAL_SAMPLER_BLOCK = 16


@dataclass(frozen=True)
class InferenceOptions:
    """Which faster inference paths a specialist uses. All off is the plain eager reference path."""

    dtype: str | None = None  # "float16" | "bfloat16": the frozen UNet, VAE and text encoder; None keeps it
    attention: str | None = None  # "sdpa" (AttnProcessor2_0) | "classic" (AttnProcessor); None: diffusers'
    channels_last: bool = False  # NHWC weights for the UNet's and the VAE's convolutions
    cudnn_benchmark: bool = False  # let cuDNN time its convolution algorithms per shape (process-wide)
    merge_lora: bool = False  # fold LoRA into the frozen weights: inference only, not for a model in training
    compile_unet: bool = False  # torch.compile the UNet for the sampling loop (gradients stay eager)
    compile_vae: bool = False  # torch.compile the VAE encoder and decoder (always without CUDA graphs)
    compile_mode: str | None = "reduce-overhead"  # inductor mode; "reduce-overhead" adds CUDA graphs
    compile_backend: str | Callable = "inductor"
    inductor_options: dict | None = (
        None  # extra inductor settings, e.g. {"conv_1x1_as_mm": True, "freezing": True}
    )
    compile_dynamic_batch: bool = True  # one graph for every batch size instead of one per size
    predraw_noise: bool = False  # draw every step's noise before the loop and copy it to the device once
    device_timesteps: bool = False  # move the timesteps to the device once, not one per step
    cache_conditioning: bool = False  # style attention and branch inputs once per sampling call, not per step
    pinned_transfers: bool = False  # frames in and out through pinned host memory, uint8 on the wire
    vae_batch_size: int | None = None  # encode/decode at most this many frames per VAE call (memory)

    def __post_init__(self) -> None:
        if self.dtype is not None and self.dtype not in HALF_DTYPES:
            raise ValueError(
                f"dtype must be one of {', '.join(HALF_DTYPES)} or None (keep the model's), "
                f"got {self.dtype!r}"
            )
        if self.attention is not None and self.attention not in ATTENTION_KINDS:
            raise ValueError(
                f"attention must be one of {', '.join(ATTENTION_KINDS)} or None, got {self.attention!r}"
            )
        if self.vae_batch_size is not None and self.vae_batch_size < 1:
            raise ValueError(
                f"vae_batch_size must be a positive number of frames or None, got {self.vae_batch_size}"
            )

    @classmethod
    def fastest(
        cls,
        device: str | torch.device = "cuda",
        dtype: str = "float16",
        compile_mode: str | None = "reduce-overhead",
        training: bool = False,
    ) -> InferenceOptions:
        """Every path on, then whatever `device` cannot run dropped. `training=True` (the RL trainer's
        sampling) keeps LoRA apart from the frozen weights, since the trainer updates it."""
        return cls(
            dtype=dtype,
            attention="sdpa",
            channels_last=True,
            cudnn_benchmark=True,
            merge_lora=not training,
            compile_unet=True,
            compile_vae=True,
            compile_mode=compile_mode,
            predraw_noise=True,
            device_timesteps=True,
            cache_conditioning=True,
            pinned_transfers=True,
        ).for_device(device)

    @classmethod
    def recommended(
        cls, device: str | torch.device, dtype: str | None = "float16", training: bool = False
    ) -> InferenceOptions:
        """What the env and the trainer use: everything on a GPU; on a CPU only the paths that give
        bit-identical results and cost nothing to set up (compiling on a CPU takes minutes)."""
        if torch.device(device).type == "cuda":
            return cls.fastest(device, dtype=dtype, training=training)
        return cls(predraw_noise=True, device_timesteps=True, cache_conditioning=True)

    def for_device(self, device: str | torch.device) -> InferenceOptions:
        """These options with the GPU-only paths dropped when `device` is not a CUDA device: half precision
        (slower than float32 on CPUs), pinned memory, cuDNN autotuning and CUDA graphs."""
        if torch.device(device).type == "cuda":
            return self
        fallback = replace(
            self,
            dtype=None,
            pinned_transfers=False,
            cudnn_benchmark=False,
            compile_mode=WITHOUT_CUDAGRAPHS.get(self.compile_mode, self.compile_mode),
        )
        dropped = [f.name for f in fields(self) if getattr(fallback, f.name) != getattr(self, f.name)]
        if dropped:
            logger.info("inference on %s: %s fall back to the CPU path", device, ", ".join(dropped))
        return fallback

    def label(self) -> str:
        """A short name of the switches that are on, e.g. 'float16+channels_last+compile_unet'."""
        on = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("compile_mode", "compile_backend", "compile_dynamic_batch", "inductor_options"):
                continue
            if value is True:
                on.append(f.name)
            elif value not in (None, False):
                on.append(f"{f.name}={value}" if f.name != "dtype" else str(value))
        if self.compile_unet or self.compile_vae:
            backend = self.compile_backend if isinstance(self.compile_backend, str) else "custom backend"
            settings = ", ".join(
                [str(self.compile_mode), *(f"{k}={v}" for k, v in (self.inductor_options or {}).items())]
            )
            on.append(f"({settings})" if backend == "inductor" else f"({backend})")
        return "+".join(on) or "plain"


@dataclass
class CompiledModules:
    """Compiled stand-ins that the inference paths call instead of the specialist's modules (None: eager)."""

    unet: torch.nn.Module | None = None  # serves the no-grad sampling loop only; training stays eager


class AcceleratedModel(Protocol):
    """What the inference paths need of a model (an `EditSpecialist`): its UNet and VAE, where it runs, and
    the options and compiled modules it currently runs with."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    inference: InferenceOptions
    compiled: CompiledModules

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> object: ...

    def trainable_parameters(self) -> list[torch.nn.Parameter]: ...


Model = TypeVar("Model", bound=AcceleratedModel)


def compile_module(module: torch.nn.Module, options: InferenceOptions, cuda_graphs: bool) -> torch.nn.Module:
    """`module` under torch.compile (the same parameters), with the batch dimension of its tensor inputs
    marked dynamic so that every batch size shares one graph.

    Tensors whose values change per call but whose shapes and dtypes do not (the denoising timestep) never
    recompile. With CUDA graphs each call starts a new graph step: a replay may then overwrite the
    previous call's output, which callers have consumed by then.
    """
    arguments, cuda_graphs = compile_arguments(options, cuda_graphs)
    compiled = torch.compile(module, **arguments)
    dynamic_batch = options.compile_dynamic_batch

    def before_call(_module, args, kwargs):
        if dynamic_batch:
            for value in (*args, *kwargs.values()):
                if isinstance(value, torch.Tensor) and value.dim() > 0:
                    torch._dynamo.maybe_mark_dynamic(value, 0)
        if cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()

    compiled.register_forward_pre_hook(before_call, with_kwargs=True)
    return compiled


def compile_arguments(options: InferenceOptions, cuda_graphs: bool) -> tuple[dict, bool]:
    """torch.compile's keyword arguments for `options`, and whether they capture CUDA graphs (only when
    `cuda_graphs` allows it: the graph-capturing modes fall back to their counterparts without)."""
    arguments: dict = {"dynamic": None if options.compile_dynamic_batch else False}
    if options.compile_backend != "inductor":
        return {**arguments, "backend": options.compile_backend}, False
    mode = (
        options.compile_mode
        if cuda_graphs
        else WITHOUT_CUDAGRAPHS.get(options.compile_mode, options.compile_mode)
    )
    if not options.inductor_options:
        return {**arguments, "backend": "inductor", "mode": mode}, mode in WITHOUT_CUDAGRAPHS
    # torch.compile takes a mode or settings, not both: spell the mode out as settings
    from torch._inductor import list_mode_options

    settings = {**list_mode_options(mode), **options.inductor_options}
    if not cuda_graphs:
        settings["triton.cudagraphs"] = False
    return {**arguments, "backend": "inductor", "options": settings}, bool(settings.get("triton.cudagraphs"))


def accelerate_specialist(model: Model, options: InferenceOptions) -> Model:
    """Puts `model` on the inference paths `options` switches on (after `for_device`), in place.

    Runtime switches (noise, timesteps, conditioning, transfers, VAE chunks, compiled modules) follow
    `options`, on and off. Structural changes - dtype, attention processors, channels_last, merged
    LoRA - stay once made: build a fresh model to measure without them.
    """
    options = options.for_device(model.device)
    if options.merge_lora:
        merge_lora(model)  # before a dtype cast, so that the merged weights are rounded once
    if options.dtype is not None and model.dtype != HALF_DTYPES[options.dtype]:
        model.to(dtype=HALF_DTYPES[options.dtype])  # (which empties the text and style caches)
    if options.attention is not None:
        set_attention(model, options.attention)
    if options.channels_last:
        for module in (model.unet, model.vae):
            module.to(memory_format=torch.channels_last)
    if options.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    # what is compiled already stays compiled (and its graphs cached) while the compile settings hold
    settings_hold = _compile_settings(options) == _compile_settings(model.inference)
    if not options.compile_unet:
        model.compiled = CompiledModules()
    elif model.compiled.unet is None or not settings_hold:
        model.compiled = CompiledModules(unet=compile_module(model.unet, options, cuda_graphs=True))
    for name in ("encoder", "decoder"):  # the VAE is frozen: its compiled parts stand in for it everywhere
        part = getattr(model.vae, name)
        compiled = isinstance(part, torch._dynamo.eval_frame.OptimizedModule)
        eager = part._orig_mod if compiled else part
        if not options.compile_vae:
            setattr(model.vae, name, eager)
        elif not (compiled and settings_hold):
            setattr(model.vae, name, compile_module(eager, options, cuda_graphs=False))
    model.inference = options
    return model


def _compile_settings(options: InferenceOptions) -> tuple:
    return (
        options.compile_mode,
        options.compile_backend,
        options.compile_dynamic_batch,
        options.inductor_options,
    )


def merge_lora(model: AcceleratedModel) -> None:
    """Folds LoRA into the frozen UNet weights: exact up to rounding, and LoRA then costs nothing."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    if any(p.requires_grad for p in model.trainable_parameters()):
        raise RuntimeError(
            "merge_lora is for inference, but this specialist is being trained (its trainable parameters "
            "require grad after prepare_for_training()); sample without merge_lora while training, or merge "
            "on a model loaded for evaluation"
        )
    for module in model.unet.modules():
        if isinstance(module, BaseTunerLayer) and not module.merged:
            module.merge()


def set_attention(model: AcceleratedModel, kind: str) -> None:
    """Puts every UNet and VAE attention on PyTorch's scaled_dot_product_attention ('sdpa') or on diffusers'
    explicit softmax(QK^T)V ('classic')."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    for module in (model.unet, model.vae):
        module.set_attn_processor(AttnProcessor2_0() if kind == "sdpa" else AttnProcessor())


def attention_processors(model: AcceleratedModel) -> dict[str, int]:
    """How many UNet and VAE attention layers use each processor class (e.g. {'AttnProcessor2_0': 18})."""
    counts: dict[str, int] = {}
    for module in (model.unet, model.vae):
        for processor in module.attn_processors.values():
            counts[type(processor).__name__] = counts.get(type(processor).__name__, 0) + 1
    return counts


def draw_step_noise(
    generators: Sequence[torch.Generator],
    num_steps: int,
    shape: tuple[int, ...],
    device: torch.device,
    pin_memory: bool = False,
) -> torch.Tensor:
    """Every step's noise (num_steps, B, *shape), drawn on the CPU from each image's generator in the order
    the step-by-step loop draws it, and copied to `device` in one transfer (from pinned memory if asked).

    A draw whose size is a multiple of torch's 16-value sampler block continues the stream exactly where
    the previous one stopped, so one image's steps are then one call; other sizes are drawn step by step.
    """
    per_step = math.prod(shape)
    noise = torch.empty((len(generators), num_steps, *shape), pin_memory=pin_memory)
    for image_noise, generator in zip(noise, generators):
        if per_step % NORMAL_SAMPLER_BLOCK == 0:
            image_noise.normal_(generator=generator)
        else:
            for step_noise in image_noise:
                step_noise.normal_(generator=generator)
    return noise.to(device, non_blocking=pin_memory).transpose(0, 1).contiguous()


def model_pixels(
    images: np.ndarray, device: torch.device, dtype: torch.dtype, pin_memory: bool
) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> (N, 3, H, W) in [-1, 1], like `images.to_model_pixels`, sending uint8 through
    pinned memory (a quarter of float32's bytes, copied without blocking the host)."""
    frames = torch.from_numpy(images)
    if pin_memory:
        frames = frames.pin_memory()
    pixels = frames.to(device=device, non_blocking=pin_memory)
    pixels = pixels.permute(0, 3, 1, 2).to(dtype=torch.float32) / 127.5 - 1.0
    return pixels.to(dtype)


def uint8_frames(pixels: torch.Tensor, pin_memory: bool) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3), rounded on the device exactly as
    `images.to_uint8_images` rounds on the host, so that only uint8 crosses to the host."""
    unit = (pixels.float() / 2 + 0.5).clamp(0, 1)
    frames = (unit.permute(0, 2, 3, 1) * 255).round().to(torch.uint8)
    host = torch.empty(frames.shape, dtype=torch.uint8, pin_memory=pin_memory)
    host.copy_(frames, non_blocking=pin_memory)
    if pin_memory:
        torch.cuda.current_stream(frames.device).synchronize()
    return host.numpy()
