"""The pretrained pieces a specialist is built on, loaded from the hub, a local folder, or built tiny."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, UNet2DConditionModel
from safetensors import SafetensorError
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from .offline import names_a_folder, work_offline_if_unreachable

# What loading a damaged (truncated, overwritten) weight or config file raises, through diffusers or not.
_UNREADABLE = (OSError, ValueError, RuntimeError, EOFError, SafetensorError)

DEFAULT_BASE = "timbrooks/instruct-pix2pix"
TINY_BASE = "tiny"
#: The tiny preset's base trained on the CPU (`sim2real_edit.tiny_base`), kept in `<data root>/tiny/base`.
TINY_TRAINED_BASE = "tiny-trained"


def is_tiny_base(base: str) -> bool:
    """Whether `base` names one of the tiny preset's bases: the trained one (`tiny-trained`) or the random
    one of unit tests (`tiny`, `tiny:<seed>`)."""
    return base in (TINY_BASE, TINY_TRAINED_BASE) or base.startswith(TINY_BASE + ":")


#: Where the tiny preset's trained base lives when set; default `<data root>/tiny/base`.
TINY_BASE_ENV_VAR = "SIM2REAL_EDIT_TINY_BASE"


def tiny_trained_base_folder() -> Path:
    """The folder of the tiny preset's trained base: `$SIM2REAL_EDIT_TINY_BASE`, else `<data root>/tiny/base`."""
    import os

    from .styles import tiny_home

    configured = os.environ.get(TINY_BASE_ENV_VAR)
    return Path(configured).expanduser() if configured else tiny_home() / "base"


class WeightsNotFoundError(OSError):
    """Pretrained weights could not be found (offline machine, wrong id, or incomplete folder)."""


class DamagedWeightsError(WeightsNotFoundError):
    """A local model folder is there but its weights cannot be read (truncated or corrupted files)."""


@dataclass
class BaseComponents:
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler_config: dict
    base: str
    revision: str | None = None

    def instruct_pix2pix_pipeline(self):
        """diffusers' own InstructPix2Pix pipeline on these weights (Euler-ancestral, no safety checker, no
        progress bar): the reference an untrained specialist must match, and the benchmarks' baseline."""
        from diffusers import StableDiffusionInstructPix2PixPipeline

        pipe = StableDiffusionInstructPix2PixPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            unet=self.unet,
            scheduler=EulerAncestralDiscreteScheduler.from_config(self.scheduler_config),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe


def load_base_components(
    base: str = DEFAULT_BASE, revision: str | None = None, dtype: torch.dtype = torch.float32
) -> BaseComponents:
    """Loads an InstructPix2Pix diffusers folder or hub id: unet, vae, text_encoder, tokenizer, scheduler."""
    if base == TINY_TRAINED_BASE:
        folder = tiny_trained_base_folder()
        if not (folder / "unet").is_dir():
            raise WeightsNotFoundError(
                f"the tiny preset's trained base is not in {folder} yet; build it once (a few minutes on a CPU) "
                "with `python scripts/build_miniature.py`, or run any `--preset tiny` command, which builds it first"
            )
        rebuild = (f"move it aside (`mv {folder} {folder}.damaged`) and rebuild it with `python "
                   "scripts/build_miniature.py` (or any `--preset tiny` command, which builds it first)")
        components = _load_diffusers(str(folder), None, dtype, repair=rebuild)
        components.base = TINY_TRAINED_BASE
        return components
    if is_tiny_base(base):
        seed = int(base.split(":", 1)[1]) if ":" in base else 0
        return tiny_base_components(seed)
    repair = (f"download it again (`hf download {DEFAULT_BASE} --local-dir {base}` for the default base) or "
              "save it again with `StableDiffusionInstructPix2PixPipeline.save_pretrained`")
    return _load_diffusers(base, revision, dtype, repair=repair)


def _load_diffusers(base: str, revision: str | None, dtype: torch.dtype, *, repair: str) -> BaseComponents:
    """A diffusers InstructPix2Pix folder or hub id; a local folder whose files fail to load is named as
    damaged, with `repair` (the command that rebuilds or re-downloads it)."""
    local = Path(base).expanduser()
    source = str(local) if local.exists() else base
    if not names_a_folder(base):
        work_offline_if_unreachable()  # no minute of retries on a machine without a network
    if local.exists() and not (local / "unet").is_dir():
        raise WeightsNotFoundError(
            f"{local} is not a diffusers InstructPix2Pix folder: it has no unet/ subfolder. Point `base` at the "
            "folder that holds model_index.json with unet/, vae/, text_encoder/, tokenizer/, scheduler/ "
            "(as written by `StableDiffusionInstructPix2PixPipeline.save_pretrained`)"
        )

    def load(kind, subfolder, **kwargs):
        try:
            return kind.from_pretrained(source, subfolder=subfolder, revision=revision, **kwargs)
        except _UNREADABLE as err:
            if local.exists() and (local / subfolder).is_dir():
                raise DamagedWeightsError(
                    f"the {subfolder} of the local model folder {local} is damaged or incomplete: it is there "
                    f"but does not load ({type(err).__name__}: {_first_line(err)}). {repair[0].upper()}{repair[1:]}"
                ) from err
            if not isinstance(err, (OSError, ValueError)):
                raise
            raise WeightsNotFoundError(
                f"could not load the {subfolder} of base model {base!r}: {err}\n"
                f"If this machine is offline, download the model where there is a network "
                f"(`hf download {base} --local-dir instruct-pix2pix`) and pass the local folder: "
                "EditSpecialist.from_pretrained(base='path/to/instruct-pix2pix'), or --base path/to/instruct-pix2pix "
                "on the command line; or set HF_HOME to a cache that already holds it."
            ) from err

    return BaseComponents(
        unet=load(UNet2DConditionModel, "unet", torch_dtype=dtype),
        vae=load(AutoencoderKL, "vae", torch_dtype=dtype),
        text_encoder=load(CLIPTextModel, "text_encoder", torch_dtype=dtype),
        tokenizer=load(CLIPTokenizer, "tokenizer"),
        scheduler_config=dict(load(EulerAncestralDiscreteScheduler, "scheduler").config),
        base=base,
        revision=revision,
    )


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]


def _byte_level_alphabet() -> list[str]:
    """The 256 printable stand-ins CLIP's byte-level BPE uses for bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def tiny_tokenizer(model_max_length: int = 77) -> CLIPTokenizer:
    """A character-level CLIP tokenizer built offline (every byte is a token; no merges)."""
    alphabet = _byte_level_alphabet()
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab.update({ch + "</w>": len(alphabet) + i for i, ch in enumerate(alphabet)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def tiny_text_encoder(tokenizer: CLIPTokenizer, hidden_size: int, intermediate_size: int) -> CLIPTextModel:
    """A two-layer CLIP text encoder of toy width over `tokenizer`'s vocabulary (random weights)."""
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def tiny_base_components(seed: int = 0) -> BaseComponents:
    """A random-weight InstructPix2Pix stack with SD-1.5's structure at toy width (runs in ms on a CPU).

    The VAE down-samples by 8 like SD's, so image sizes behave as with the real model. Group norms span
    several channels per group, as in SD (10 per group in the UNet, 4-16 in the VAE): with one channel per
    group every norm would remove each channel's mean, so neither network could shift an image's colour and
    RL on a colour judge could not learn anything.
    """
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        tokenizer = tiny_tokenizer(model_max_length=48)
        text_encoder = tiny_text_encoder(tokenizer, hidden_size=32, intermediate_size=37)
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=8,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=4,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 16, 16, 16),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=2,
            sample_size=64,
        )
    finally:
        torch.random.set_rng_state(generator_state)
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000, steps_offset=1
    )
    return BaseComponents(
        unet=unet.eval(),
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        scheduler_config=dict(scheduler.config),
        base=f"{TINY_BASE}:{seed}",
    )


# Stable Diffusion 1.5 / InstructPix2Pix shapes (the public configs' values).
SD15_UNET = {
    "sample_size": 64,
    "in_channels": 8,
    "out_channels": 4,
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
}
SD15_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
SD15_TEXT = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 768,
}
SD15_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
}


def random_sd15_components(seed: int = 0, device: torch.device | str = "cpu") -> BaseComponents:
    """InstructPix2Pix at SD-1.5 shapes with random weights, built directly on `device` in float32: for
    benchmarks, whose speed does not depend on the weights' values."""

    tokenizer = tiny_tokenizer(model_max_length=77)  # character-level, offline; 77 tokens like CLIP's
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**SD15_UNET)
        vae = AutoencoderKL(**SD15_VAE)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                **SD15_TEXT,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    return BaseComponents(
        unet=unet.eval(),
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        scheduler_config=dict(SD15_SCHEDULER),
        base=f"random-sd15:{seed}",
    )
