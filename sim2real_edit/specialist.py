"""EditSpecialist: InstructPix2Pix with a style-image condition, LoRA adapters and a trajectory sampler."""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .acceleration import (
    CompiledModules,
    InferenceOptions,
    accelerate_specialist,
    draw_step_noise,
    model_pixels,
    uint8_frames,
)
from .chunking import map_in_chunks
from .components import DEFAULT_BASE, BaseComponents, is_tiny_base, load_base_components, tiny_base_components
from .guidance import GuidanceScales, combine_guidance
from .images import (
    ImageBatch,
    ImageFormatError,
    as_uint8_batch,
    resize_batch,
    to_model_pixels,
    to_uint8_images,
)
from .outputs import make_readable
from .samplers import SAMPLERS, Sampler, gaussian_log_prob, make_sampler
from .style_attention import StyleAttention, StyleAttentionConfig
from .unet_surgery import widen_conv_in
from .validation import FieldChecks, is_int, is_number, is_numbers

CONFIG_NAME = "specialist_config.json"
WEIGHTS_NAME = "specialist_weights.safetensors"
EXEMPLARS_DIR = "exemplars"
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed's range of non-negative seeds
FORMAT_VERSION = 1
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")

logger = logging.getLogger(__name__)


class SpecialistFormatError(ValueError):
    """A specialist folder is missing files or holds weights that do not fit the base model."""


def _check_other_base(folder: Path, recorded: str, requested: str, allowed: bool) -> None:
    """Refuses a specialist over a base of the other kind (tiny random vs real) unless `allowed`."""
    if is_tiny_base(recorded) or is_tiny_base(requested):
        if allowed:
            logger.warning("loading %s (trained on %r) over %r, as asked", folder, recorded, requested)
            return
        raise SpecialistFormatError(
            f"{folder} was trained on base {recorded!r}, not {requested!r}: a specialist trained on the tiny "
            "random base is a demo that does not fit a real base (or the other way round). Load it on its own "
            f"base (base=None or base={recorded!r}), or pass allow_other_base=True if you really mean it"
        )
    logger.warning("loading %s (trained on %r) over %r: fine if that is a copy of the same model", folder,
                   recorded, requested)


@dataclass
class SpecialistConfig:
    """Everything needed to rebuild a specialist on top of its base model."""

    style: str | None = None
    instruction: str = "make the cupboard out of wood"
    guidance: tuple[float, float, float] = (7.5, 1.5, 3.0)  # (text, image, style)
    base: str = DEFAULT_BASE
    base_revision: str | None = None
    scheduler: str = "euler_ancestral"
    num_steps: int = 20
    lora_rank: int = 8
    lora_alpha: int = 8
    # UNet modules that get LoRA adapters (module-name suffixes): SD's attention projections by default. A base
    # whose attention sits only at its coarsest level (the CPU-sized tiny base) also adapts its resnet convs.
    lora_targets: tuple[str, ...] = LORA_TARGETS
    style_attention: dict | None = None  # StyleAttentionConfig fields; None: 320 wide, 8 heads
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        """Checks every field here, so that a bad config file fails when it is read, with the field named, not
        deep inside peft or at the first edit."""
        checks = FieldChecks(self)
        checks.require("style", self.style is None or isinstance(self.style, str), "a style name or null")
        checks.require("instruction", isinstance(self.instruction, str) and bool(self.instruction.strip()),
                       "a non-empty text")
        checks.require("guidance", is_numbers(self.guidance, 3), "three finite numbers (text, image, style)")
        checks.require("base", isinstance(self.base, str) and bool(self.base), "a hub id or a folder")
        checks.require("base_revision", self.base_revision is None or isinstance(self.base_revision, str),
                       "a revision name or null")
        checks.require("scheduler", self.scheduler in SAMPLERS, f"one of {SAMPLERS}")
        checks.require("num_steps", is_int(self.num_steps, minimum=1), "an integer >= 1")
        checks.require("lora_rank", is_int(self.lora_rank, minimum=1), "an integer >= 1")
        checks.require("lora_alpha", is_number(self.lora_alpha) and self.lora_alpha > 0, "a number > 0")
        checks.require("lora_targets", isinstance(self.lora_targets, (list, tuple)) and len(self.lora_targets) > 0
                       and all(isinstance(name, str) and name for name in self.lora_targets),
                       "a non-empty list of module names, e.g. ['to_q', 'to_k', 'to_v', 'to_out.0']")
        attention_fields = set(StyleAttentionConfig.__dataclass_fields__)
        checks.require("style_attention", self.style_attention is None or (
            isinstance(self.style_attention, dict) and set(self.style_attention) <= attention_fields
            and all(is_int(value, minimum=1) for value in self.style_attention.values())),
            f"null or a mapping of {sorted(attention_fields)} to integers >= 1")
        checks.require("format_version", is_int(self.format_version, minimum=1), "an integer >= 1")
        checks.raise_if_invalid()
        self.guidance = tuple(float(value) for value in self.guidance)
        self.lora_targets = tuple(self.lora_targets)

    @classmethod
    def from_dict(cls, data: dict) -> SpecialistConfig:
        if not isinstance(data, dict):
            raise TypeError(f"a specialist config is a JSON object of settings, got {type(data).__name__}")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class EditCondition:
    """The conditioning of one batch of edits, shared by every denoising step."""

    image_latents: torch.Tensor  # (B, 4, h, w), VAE mode, unscaled (InstructPix2Pix convention)
    style_latents: torch.Tensor  # (B, 4, h, w), the style image encoded at the input's size
    text_embeds: torch.Tensor  # (B, L, D) instruction
    empty_embeds: torch.Tensor  # (B, L, D) empty prompt

    @property
    def batch_size(self) -> int:
        return self.image_latents.shape[0]

    def index(self, rows: torch.Tensor | slice) -> EditCondition:
        return EditCondition(*(t[rows] for t in (self.image_latents, self.style_latents, self.text_embeds,
                                                 self.empty_embeds)))


@dataclass
class GuidanceInputs:
    """The step-independent part of the four-branch UNet call, in the UNet's dtype."""

    conditioning: torch.Tensor  # (4B, 8, h, w): image and style channels of the four branches
    text: torch.Tensor  # (4B, L, D): the branches' text embeddings


@dataclass
class Trajectory:
    """A sampled denoising trajectory: the states, the step log-probabilities and how they were made."""

    latents: torch.Tensor  # (T + 1, B, 4, h, w): x_T ... x_0, float32
    log_probs: torch.Tensor  # (T, B): log p(x_{t-1} | x_t) under the sampling network (0 where std == 0)
    stochastic: torch.Tensor  # (T,) bool: steps that add noise and so have a log-probability
    scheduler: str
    eta: float
    guidance: GuidanceScales

    @property
    def num_steps(self) -> int:
        return self.log_probs.shape[0]


SMALL_MODEL_PARAMETERS = 50_000_000  # tiny test and demo UNets have ~1M, SD-1.5's has 860M


def _threads_set_by_environment() -> bool:
    return any(os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"))


def _on_cpu_threads(method: Callable) -> Callable:
    """Runs `method` with the specialist's `cpu_threads` when it is on a CPU, then restores torch's setting."""

    @functools.wraps(method)
    def wrapper(self: EditSpecialist, *args, **kwargs):
        if self.cpu_threads is None or self.device.type != "cpu" or torch.get_num_threads() == self.cpu_threads:
            return method(self, *args, **kwargs)
        previous = torch.get_num_threads()
        torch.set_num_threads(self.cpu_threads)
        try:
            return method(self, *args, **kwargs)
        finally:
            torch.set_num_threads(previous)

    return wrapper


def _seeds_for(batch: int, seed: int | Sequence[int]) -> list[int]:
    if is_int(seed, minimum=0):
        seeds = [int(seed)] * batch
    elif (isinstance(seed, Sequence) and not isinstance(seed, str)) or (isinstance(seed, np.ndarray) and seed.ndim == 1):
        seeds = list(seed)
        if len(seeds) != batch:
            raise ValueError(f"got {len(seeds)} seeds for {batch} images; pass one seed, or one per image")
    else:
        seeds = [seed]
    bad = [s for s in seeds if not (is_int(s, minimum=0) and s <= MAX_SEED)]
    if bad:
        raise ValueError(f"seeds must be integers in [0, 2**63 - 1], got {bad[0]!r}; pass one seed, or one per image")
    return [int(s) for s in seeds]


class EditSpecialist:
    """An InstructPix2Pix editor with a second image condition (a style exemplar).

    The UNet's conv_in takes [noisy latent, input-image latent, style channels]; the style channels are
    `StyleAttention(input latent, style latent, text)`; their conv_in weights start at zero, so an
    untrained specialist edits exactly like InstructPix2Pix. LoRA adapters (rank 8) on the UNet's
    attention projections, conv_in and the style attention are what training changes.
    """

    def __init__(self, components: BaseComponents, config: SpecialistConfig | None = None):
        self.config = config or SpecialistConfig(base=components.base, base_revision=components.revision)
        self.unet = widen_conv_in(components.unet, components.vae.config.latent_channels)
        self.vae = components.vae
        self.text_encoder = components.text_encoder
        self.tokenizer = components.tokenizer
        self.scheduler_config = components.scheduler_config
        if self.config.style_attention is None:
            text_dim = self.unet.config.cross_attention_dim
            # SD's 320 wide; a toy base's text embedding is narrower, and so is its style attention
            self.config.style_attention = StyleAttentionConfig(
                latent_channels=self.vae.config.latent_channels, text_dim=text_dim, inner_dim=min(320, text_dim),
                num_heads=8 if text_dim >= 320 else 4,
            ).to_dict()
        attention_config = StyleAttentionConfig(**self.config.style_attention)
        self.style_attention = StyleAttention(attention_config).to(self.unet.device)
        self.unet.add_adapter(
            LoraConfig(
                r=self.config.lora_rank,
                lora_alpha=self.config.lora_alpha,
                target_modules=list(self.config.lora_targets),
                init_lora_weights=True,
            )
        )
        for module in (self.unet, self.vae, self.text_encoder, self.style_attention):
            module.requires_grad_(False)
        self._reference: dict[str, torch.nn.Module] | None = None
        self._text_cache: dict[str, torch.Tensor] = {}
        self._style_cache: dict[tuple[str, int, int], torch.Tensor] = {}
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.inference = InferenceOptions()  # the plain eager path; `optimize` switches faster ones on
        self.compiled = CompiledModules()
        # Intra-op threads for work on a CPU (None: torch's setting). Networks this small gain nothing from
        # threads, and on a busy machine contended threads make them several times slower.
        small = sum(p.numel() for p in self.unet.parameters()) < SMALL_MODEL_PARAMETERS
        self.cpu_threads: int | None = 1 if small and not _threads_set_by_environment() else None

    # ------------------------------------------------------------------ construction and persistence

    @classmethod
    def tiny(cls, seed: int = 0, **config) -> EditSpecialist:
        """The same stack with tiny random-weight components: for tests and CPU demos, nothing downloaded."""
        components = tiny_base_components(seed)
        config.setdefault("style_attention", StyleAttentionConfig(text_dim=32, inner_dim=32, num_heads=4).to_dict())
        return cls(components, SpecialistConfig(base=components.base, **config))

    @classmethod
    def from_pretrained(
        cls,
        base: str | None = None,
        specialist: str | Path | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        revision: str | None = None,
        *,
        allow_other_base: bool = False,
    ) -> EditSpecialist:
        """Builds a specialist on `base` (hub id or local diffusers folder), loading trained weights from
        `specialist` (a folder written by `save_pretrained`) when given. Without `specialist` the result
        is untrained: it edits exactly like the base InstructPix2Pix.

        `base=None` means the base the specialist records (else `DEFAULT_BASE`). A specialist trained on the
        tiny random base is refused over a real base, and vice versa, unless `allow_other_base`; another
        real base (e.g. a local copy of the recorded hub model) is used with a warning."""
        config = None
        if specialist is not None:
            config = cls.read_config(Path(specialist))
            if base is None:
                base = config.base
            elif base != config.base:
                _check_other_base(Path(specialist), config.base, base, allow_other_base)
            revision = revision or config.base_revision
        components = load_base_components(base or DEFAULT_BASE, revision=revision, dtype=torch.float32)
        if config is None:
            config = SpecialistConfig(base=components.base, base_revision=revision)
        model = cls(components, config)
        if specialist is not None:
            model._load_weights(Path(specialist))
        return model.to(device, dtype)

    @staticmethod
    def read_config(folder: Path) -> SpecialistConfig:
        """The config saved in a specialist folder, checked."""
        if not folder.is_dir():
            raise FileNotFoundError(
                f"no specialist folder at {folder}. A specialist folder is written by "
                "`EditSpecialist.save_pretrained` (for example at the end of "
                "`python scripts/train_specialist.py --style wood`)"
            )
        missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / name).is_file()]
        if missing:
            raise SpecialistFormatError(
                f"specialist folder {folder} lacks {', '.join(missing)}; it must hold {CONFIG_NAME} and "
                f"{WEIGHTS_NAME} as written by `save_pretrained`. Re-save or re-train the specialist"
            )
        try:
            data = json.loads((folder / CONFIG_NAME).read_text())
            config = SpecialistConfig.from_dict(data)
        except (json.JSONDecodeError, TypeError, ValueError) as err:
            raise SpecialistFormatError(
                f"{folder / CONFIG_NAME} is not a valid specialist config: {err}. Fix the file, or re-save the "
                "specialist with `save_pretrained`"
            ) from err
        if config.format_version > FORMAT_VERSION:
            raise SpecialistFormatError(
                f"{folder} was written by a newer sim2real-edit (format {config.format_version}); upgrade the package"
            )
        return config

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What training changes: LoRA weights, the widened conv_in and the style attention."""
        state = {f"unet.{k}": v for k, v in self.unet.state_dict().items() if ".lora_" in k}
        state.update({f"conv_in.{k}": v for k, v in self.unet.conv_in.conv.state_dict().items()})
        state.update({f"style_attention.{k}": v for k, v in self.style_attention.state_dict().items()})
        return state

    def save_pretrained(self, folder: str | Path, exemplars: Sequence[np.ndarray] | None = None) -> Path:
        """Writes the trained parts (megabytes) and the config; `exemplars` (style images) are saved too,
        so that the folder alone is enough to edit."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.trainable_state_dict().items()}
        save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
        make_readable(folder / WEIGHTS_NAME)
        config = asdict(self.config)
        config["guidance"] = list(self.config.guidance)
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        if exemplars is not None:
            target = folder / EXEMPLARS_DIR
            target.mkdir(exist_ok=True)
            for old in target.glob("*.png"):
                old.unlink()
            for i, image in enumerate(exemplars):
                Image.fromarray(as_uint8_batch(image, "exemplars")[0]).save(target / f"{i:02d}.png")
        return folder

    def _load_weights(self, folder: Path) -> None:
        try:
            tensors = load_file(str(folder / WEIGHTS_NAME))
        except (SafetensorError, OSError) as err:
            raise SpecialistFormatError(
                f"{folder / WEIGHTS_NAME} is corrupt or unreadable ({err}); re-save or re-train the specialist"
            ) from err
        expected = self.trainable_state_dict()
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        if missing or unexpected:
            raise SpecialistFormatError(
                f"{folder / WEIGHTS_NAME} does not fit base {self.config.base!r}: "
                f"{len(missing)} missing tensors (e.g. {missing[:2]}), {len(unexpected)} unexpected "
                f"(e.g. {unexpected[:2]}). Load it on the base it was trained on ({self.config.base!r})"
            )
        for key, value in tensors.items():
            if value.shape != expected[key].shape:
                raise SpecialistFormatError(
                    f"{folder / WEIGHTS_NAME}: {key} has shape {tuple(value.shape)}, the base expects "
                    f"{tuple(expected[key].shape)}; load it on the base it was trained on ({self.config.base!r})"
                )
        with torch.no_grad():
            for key, value in tensors.items():
                expected[key].copy_(value)

    def exemplars(self, folder: str | Path) -> list[np.ndarray]:
        """Style images saved beside a specialist (empty when there are none)."""
        paths = sorted((Path(folder) / EXEMPLARS_DIR).glob("*.png"))
        return [np.asarray(Image.open(p).convert("RGB")) for p in paths]

    # ------------------------------------------------------------------ devices, dtypes, training modes

    @property
    def device(self) -> torch.device:
        return self.unet.conv_in.conv.weight.device  # cheaper than walking every parameter

    @property
    def dtype(self) -> torch.dtype:
        return self.vae.dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> EditSpecialist:
        """Moves the stack; conv_in and the style attention stay float32 whatever `dtype` is."""
        for module in (self.unet, self.vae, self.text_encoder):
            # diffusers warns whenever `dtype` is passed at all, even as None: pass only what changes
            changes = {"device": device} if device is not None else {}
            if dtype is not None and dtype != module.dtype:
                changes["dtype"] = dtype
            if changes:
                module.to(**changes)
        self.unet.conv_in.to(device=device, dtype=torch.float32)
        self.style_attention.to(device=device, dtype=torch.float32)
        if self._reference is not None:
            for module in self._reference.values():
                module.to(device=device, dtype=torch.float32)
        self._text_cache.clear()
        self._style_cache.clear()
        return self

    def optimize(self, options: InferenceOptions | None = None, **switches) -> EditSpecialist:
        """Switches faster inference paths on, in place: `optimize(InferenceOptions.fastest("cuda"))`, or
        one at a time on top of the current ones, e.g. `optimize(channels_last=True)`. Paths this device
        cannot run fall back to the plain ones (see `sim2real_edit.acceleration`)."""
        return accelerate_specialist(self, replace(options or self.inference, **switches))

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        params = [p for n, p in self.unet.named_parameters() if ".lora_" in n]
        params += list(self.unet.conv_in.parameters()) + list(self.style_attention.parameters())
        return params

    def prepare_for_training(self) -> list[torch.nn.Parameter]:
        """Freezes a copy of conv_in and the style attention as the DPO reference policy, makes the
        trainable parameters require grad and returns them."""
        if self._reference is None:
            self._reference = {
                "conv_in": copy.deepcopy(self.unet.conv_in).requires_grad_(False),
                "style_attention": copy.deepcopy(self.style_attention).requires_grad_(False),
            }
        params = self.trainable_parameters()
        for p in params:
            p.data = p.data.float()  # trained in float32 even when the frozen network runs in half precision
            p.requires_grad_(True)
        return params

    @contextlib.contextmanager
    def reference_policy(self) -> Iterator[None]:
        """Runs the network as it was before training: LoRA off, original conv_in and style attention."""
        if self._reference is None:
            raise RuntimeError("call prepare_for_training() before using the reference policy")
        trained_conv_in, trained_attention = self.unet.conv_in, self.style_attention
        self.unet.disable_adapters()
        self.unet.conv_in = self._reference["conv_in"]
        self.style_attention = self._reference["style_attention"]
        try:
            yield
        finally:
            self.unet.conv_in = trained_conv_in
            self.style_attention = trained_attention
            self.unet.enable_adapters()

    # ------------------------------------------------------------------ encoding

    def _check_images(self, images: ImageBatch, name: str) -> np.ndarray:
        batch = as_uint8_batch(images, name)
        height, width = batch.shape[1:3]
        factor = self.vae_scale_factor
        if height % factor or width % factor:
            raise ImageFormatError(
                f"`{name}` are {height}x{width}; height and width must be multiples of {factor}. "
                f"Resize or crop, e.g. to {height // factor * factor}x{width // factor * factor}"
            )
        return batch

    @torch.no_grad()
    def encode_images(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> VAE latent means (N, 4, H/8, W/8), unscaled as InstructPix2Pix expects."""
        if self.inference.pinned_transfers:
            pixels = model_pixels(images, self.device, self.vae.dtype, pin_memory=True)
        else:
            pixels = to_model_pixels(images, self.device, self.vae.dtype)
        return map_in_chunks(
            lambda chunk: self.vae.encode(chunk).latent_dist.mode(), pixels, chunk_size=self.inference.vae_batch_size
        )

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        latents = latents.to(self.vae.dtype) / self.vae.config.scaling_factor
        pixels = map_in_chunks(
            lambda chunk: self.vae.decode(chunk).sample, latents, chunk_size=self.inference.vae_batch_size
        )
        if self.inference.pinned_transfers:
            return uint8_frames(pixels, pin_memory=True)
        return to_uint8_images(pixels)

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """CLIP text embeddings (N, L, D), cached per prompt."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        if missing:
            tokens = self.tokenizer(
                list(missing),
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids.to(self.device)
            embeds = self.text_encoder(tokens)[0]
            for prompt, embed in zip(missing, embeds):
                self._text_cache[prompt] = embed
        return torch.stack([self._text_cache[p] for p in prompts])

    @torch.no_grad()
    def encode_styles(self, styles: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        """Style latents at the input's size, cached per (image content, size): a style's exemplar is
        encoded once, however many frames it edits."""
        keys = [(hashlib.sha1(s.tobytes()).hexdigest(), *size) for s in styles]
        todo = {k: s for k, s in zip(keys, styles) if k not in self._style_cache}
        if todo:
            latents = self.encode_images(resize_batch(np.stack(list(todo.values())), size))
            for key, latent in zip(todo, latents):
                self._style_cache[key] = latent
        return torch.stack([self._style_cache[k] for k in keys])

    def condition(
        self, images: ImageBatch, style_images: ImageBatch, instruction: str | Sequence[str] | None = None
    ) -> EditCondition:
        """Validates and encodes a batch: one style image for all, or one per image."""
        batch = self._check_images(images, "images")
        styles = as_uint8_batch(style_images, "style_images")
        if styles.shape[0] not in (1, batch.shape[0]):
            raise ImageFormatError(
                f"got {styles.shape[0]} style images for {batch.shape[0]} images; pass one style image for all, "
                "or one per image"
            )
        style_latents = self.encode_styles(styles, batch.shape[1:3])
        if style_latents.shape[0] != batch.shape[0]:  # one style for all: encoded (and hashed) once
            style_latents = style_latents.repeat(batch.shape[0], 1, 1, 1)
        instruction = self.config.instruction if instruction is None else instruction
        prompts = [instruction] * len(batch) if isinstance(instruction, str) else list(instruction)
        if len(prompts) != len(batch):
            raise ValueError(f"got {len(prompts)} instructions for {len(batch)} images; pass one, or one per image")
        return EditCondition(
            image_latents=self.encode_images(batch),
            style_latents=style_latents,
            text_embeds=self.encode_text(prompts),
            empty_embeds=self.encode_text([""] * len(batch)),
        )

    # ------------------------------------------------------------------ the policy: one denoising step

    def guidance_inputs(self, cond: EditCondition) -> GuidanceInputs:
        """The four branches' image and style channels and text, which no denoising step changes.

        Branches (image, style, text): (0,0,0), (I,0,0), (I,S,0), (I,S,T). A dropped image is a zero latent;
        dropped text is the empty-prompt embedding, used by the UNet and by the style attention alike.
        """
        zeros = torch.zeros_like(cond.image_latents)
        style_no_text = self.style_attention(cond.image_latents, cond.style_latents, cond.empty_embeds)
        style_text = self.style_attention(cond.image_latents, cond.style_latents, cond.text_embeds)
        dtype = self.unet.dtype
        conditioning = torch.cat(
            [
                torch.cat([zeros, cond.image_latents, cond.image_latents, cond.image_latents]).to(dtype),
                torch.cat([zeros, zeros, style_no_text.to(dtype), style_text.to(dtype)]).to(dtype),
            ],
            dim=1,
        )
        text = torch.cat([cond.empty_embeds, cond.empty_embeds, cond.empty_embeds, cond.text_embeds]).to(dtype)
        return GuidanceInputs(conditioning, text)

    def guided_noise(
        self,
        latents: torch.Tensor,
        sampler: Sampler,
        index: int,
        cond: EditCondition,
        guidance: GuidanceScales,
        *,
        inputs: GuidanceInputs | None = None,
        unet: Callable | None = None,
    ) -> torch.Tensor:
        """Three-way guided noise prediction, all four conditionings (see `guidance_inputs`) in one UNet call.

        A sampling loop may pass `inputs` built once for all its steps, and `unet`, a compiled stand-in for
        `self.unet`; by default both are computed here, so that gradients reach the style attention.
        """
        batch = latents.shape[0]
        model_input = sampler.scale_model_input(latents.float(), index)
        inputs = self.guidance_inputs(cond) if inputs is None else inputs
        noisy = model_input.repeat(4, 1, 1, 1).to(self.unet.dtype)
        unet_input = torch.cat([noisy, inputs.conditioning], dim=1)
        timestep = sampler.timesteps[index].to(self.device)
        network = self.unet if unet is None else unet
        eps = network(unet_input, timestep, encoder_hidden_states=inputs.text).sample
        eps_none, eps_image, eps_image_style, eps_all = eps.float().split(batch)
        return combine_guidance(eps_none, eps_image, eps_image_style, eps_all, guidance)

    def step_log_prob(
        self,
        cond: EditCondition,
        latents: torch.Tensor,
        next_latents: torch.Tensor,
        sampler: Sampler,
        index: int,
        guidance: GuidanceScales,
    ) -> torch.Tensor:
        """log p(next_latents | latents) of step `index` under the current network (B,), with gradients."""
        eps = self.guided_noise(latents, sampler, index, cond, guidance)
        mean, std = sampler.step_mean_std(eps, index, latents)
        return gaussian_log_prob(next_latents, mean, std)

    # ------------------------------------------------------------------ sampling

    @_on_cpu_threads
    @torch.no_grad()
    def sample(
        self,
        cond: EditCondition,
        seed: int | Sequence[int] = 0,
        step_seed: int | Sequence[int] | None = None,
        num_steps: int | None = None,
        guidance: GuidanceScales | tuple | None = None,
        scheduler: str | None = None,
        eta: float = 1.0,
        return_trajectory: bool = False,
        progress: bool = False,
    ) -> tuple[torch.Tensor, Trajectory | None]:
        """Denoises from per-image seeded noise. Each image draws its noise from its own generator, so an
        image's edit does not depend on the rest of the batch. Returns final latents (and the trajectory).

        `seed` seeds the initial noise and, unless `step_seed` is given, the noise of every step after it.
        With `step_seed`, the steps' noise has its own generators: two samples with the same `seed` and
        different `step_seed` start from the same noise and diverge (D3PO's pairs)."""
        guidance = GuidanceScales.parse(guidance if guidance is not None else self.config.guidance)
        sampler = self.make_sampler(scheduler, num_steps, eta)
        fast = self.inference
        batch = cond.batch_size
        shape = tuple(cond.image_latents.shape[1:])
        generators = [torch.Generator(device="cpu").manual_seed(s) for s in _seeds_for(batch, seed)]

        def draw(source: list[torch.Generator]) -> torch.Tensor:
            if fast.predraw_noise:  # the same numbers, through the steps' pinned, non-blocking transfer
                return draw_step_noise(source, 1, shape, self.device, fast.pinned_transfers)[0]
            return torch.cat([torch.randn((1, *shape), generator=g) for g in source]).to(self.device)

        latents = draw(generators) * sampler.init_noise_sigma
        if step_seed is not None:
            generators = [torch.Generator(device="cpu").manual_seed(s) for s in _seeds_for(batch, step_seed)]
        step_noise = None
        if fast.predraw_noise:
            step_noise = draw_step_noise(generators, sampler.num_steps, shape, self.device, fast.pinned_transfers)
        inputs = self.guidance_inputs(cond) if fast.cache_conditioning else None
        states, log_probs, stochastic = [latents], [], []
        steps = range(sampler.num_steps)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="denoising", leave=False)
        for index in steps:
            eps = self.guided_noise(latents, sampler, index, cond, guidance, inputs=inputs,
                                    unet=self.compiled.unet)
            noise = step_noise[index] if step_noise is not None else draw(generators)
            out = sampler.step(eps, index, latents, noise)
            latents = out.prev_sample
            if return_trajectory:
                is_random = sampler.is_stochastic(index)
                stochastic.append(is_random)
                log_probs.append(
                    gaussian_log_prob(out.prev_sample, out.mean, out.std) if is_random
                    else torch.zeros(batch, device=self.device)
                )
                states.append(latents)
        trajectory = None
        if return_trajectory:
            trajectory = Trajectory(
                latents=torch.stack(states),
                log_probs=torch.stack(log_probs),
                stochastic=torch.tensor(stochastic),
                scheduler=sampler.name,
                eta=eta,
                guidance=guidance,
            )
        return latents, trajectory

    def make_sampler(self, scheduler: str | None = None, num_steps: int | None = None, eta: float = 1.0) -> Sampler:
        """A sampler on this model's noise schedule (e.g. the one a trajectory was drawn with), its timesteps
        already on the model's device when `inference.device_timesteps` is on."""
        sampler = make_sampler(scheduler or self.config.scheduler, self.scheduler_config,
                               self.config.num_steps if num_steps is None else num_steps, eta)
        if self.inference.device_timesteps:
            # copied without a stream sync; the sigmas stay on the host, read as scalars without syncs
            sampler.timesteps = sampler.timesteps.to(self.device, non_blocking=True)
        return sampler

    @_on_cpu_threads
    def edit(
        self,
        images: ImageBatch,
        style_images: ImageBatch,
        instruction: str | Sequence[str] | None = None,
        num_steps: int | None = None,
        guidance: GuidanceScales | tuple | None = (7.5, 1.5, 3.0),
        seed: int | Sequence[int] = 0,
        scheduler: str | None = None,
        eta: float = 1.0,
        progress: bool = False,
    ) -> np.ndarray:
        """Edits a batch of uint8 (N, H, W, 3) images (or PIL images) and returns uint8 (N, H, W, 3).

        `seed` is one seed for every image or one per image; an image's edit depends only on the image,
        its style image, the instruction and its seed.
        """
        cond = self.condition(images, style_images, instruction)
        latents, _ = self.sample(cond, seed=seed, num_steps=num_steps, guidance=guidance, scheduler=scheduler,
                                 eta=eta, progress=progress)
        return self.decode_latents(latents)
