"""A tiny InstructPix2Pix base *trained on the CPU* so that an untrained specialist reproduces its input.

The tiny preset used to edit with random weights, which paint noise. Here the same classes as the real
base (diffusers' `AutoencoderKL` and `UNet2DConditionModel`, a CLIP text encoder) are built at toy width and
trained in two stages on simulator frames:

1. the VAE learns to reconstruct frames (random crops; L1 + L2 + a small KL term), and its latents are
   scaled to unit variance, as SD's `scaling_factor` does;
2. the UNet learns InstructPix2Pix's image-conditioned denoising with the *input itself* as the target
   (epsilon prediction; InstructPix2Pix's conditioning dropout of text, image and both), so that the base
   edits nothing: it reproduces its input whatever the instruction says, and a specialist trained on top of
   it must learn every change from its AI feedback.

Frames are recoloured at random inside their masks (procedural textures in random colours, global colour
jitter) so that the base reproduces cabinets of any look, not only the simulator's; none of this teaches it
to *change* anything. The result is a plain diffusers folder (`save_pretrained`), loaded like any base by
`components.load_base_components`, with `tiny_base.json` holding its config and measured reconstruction.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from .components import (
    SD15_SCHEDULER,
    TINY_TRAINED_BASE,
    BaseComponents,
    load_base_components,
    tiny_text_encoder,
    tiny_tokenizer,
)
from .textures import TEXTURE_PRESETS, generate_texture

REPORT_NAME = "tiny_base.json"
#: Prompts the UNet sees in training (any of them, or none, gives the same target: the input).
TRAINING_MATERIALS = ("wood", "gold", "leather", "stone", "steel", "white marble", "black marble", "glass", "paper")


@dataclass(frozen=True)
class TinyBaseConfig:
    """Sizes and training schedule of the tiny base; the defaults build it in a few minutes on 2 cores."""

    # Two blocks: the VAE down-samples by 2. By 4 (with 4 or 8 latent channels) it blurred the drawer handles
    # and the gripper's colour away at this size, and the policies look for both.
    vae_channels: tuple[int, ...] = (16, 32)
    latent_channels: int = 4
    unet_channels: tuple[int, ...] = (16, 16, 32)  # attention only at the lowest resolution (see tiny_architecture)
    text_dim: int = 32
    norm_groups: int = 4  # VAE: 4-8 channels per group norm (one channel per group would erase colours)
    # UNet: 8-16 channels per group. The UNet's output passes a group norm: with few channels per group it
    # cannot carry a frame's own colour levels through it, and the "identity" edits drift in colour.
    unet_norm_groups: int = 2
    vae_steps: int = 400
    unet_steps: int = 1000
    batch_size: int = 16
    vae_crop: tuple[int, int] = (32, 40)  # pixels; the VAE is convolutional, crops train it as well
    unet_crop: tuple[int, int] = (16, 20)  # latent cells
    vae_learning_rate: float = 2e-3
    unet_learning_rate: float = 1e-3
    kl_weight: float = 1e-6
    edge_weight: float = 0.5  # L1 of image gradients: keeps drawer lines and handles sharp
    conditioning_dropout: float = 0.05  # InstructPix2Pix: p for text, image and both
    recolour_probability: float = 0.5
    seed: int = 0

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class TinyBaseReport:
    """What a build measured on held-out frames (uint8 PSNR in dB; higher is better)."""

    vae_psnr: float
    edit_psnr: float  # the untrained specialist's edit vs its input
    edit_cabinet_psnr: float  # the same, inside the cabinet masks only
    frames: int
    seconds: float
    config: dict = field(default_factory=dict)

    @property
    def config_hash(self) -> str:
        """Identifies the build settings (equal to `TinyBaseConfig.hash` of the config it was built with)."""
        return hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()[:16]


def tiny_architecture(config: TinyBaseConfig = TinyBaseConfig()) -> BaseComponents:
    """The tiny base's networks with fresh random weights (deterministic in `config.seed`)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(config.seed)
    try:
        tokenizer = tiny_tokenizer(model_max_length=48)
        text_encoder = tiny_text_encoder(tokenizer, hidden_size=config.text_dim, intermediate_size=2 * config.text_dim)
        blocks = len(config.vae_channels)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * blocks,
            up_block_types=("UpDecoderBlock2D",) * blocks,
            block_out_channels=tuple(config.vae_channels),
            layers_per_block=1,
            latent_channels=config.latent_channels,
            norm_num_groups=config.norm_groups,
            sample_size=64,
            mid_block_add_attention=False,
        )
        # Attention only at the lowest resolution: at full latent resolution it costs most of a CPU step.
        levels = len(config.unet_channels)
        unet = UNet2DConditionModel(
            sample_size=32,
            in_channels=2 * config.latent_channels,
            out_channels=config.latent_channels,
            block_out_channels=tuple(config.unet_channels),
            layers_per_block=1,
            down_block_types=("DownBlock2D",) * (levels - 1) + ("CrossAttnDownBlock2D",),
            up_block_types=("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
            cross_attention_dim=config.text_dim,
            attention_head_dim=8,
            norm_num_groups=config.unet_norm_groups,
        )
    finally:
        torch.random.set_rng_state(state)
    return BaseComponents(
        unet=unet, vae=vae, text_encoder=text_encoder.eval(), tokenizer=tokenizer,
        scheduler_config=dict(SD15_SCHEDULER), base=TINY_TRAINED_BASE,
    )


def recolour(frames: np.ndarray, masks: np.ndarray, rng: np.random.Generator, probability: float) -> np.ndarray:
    """Frames whose masked region is repainted, with `probability`, by a procedural texture in random colours
    (keeping the frame's shading), and whose colours are jittered as a whole: a base that reproduces these
    reproduces any cabinet. uint8 (N, H, W, 3) -> uint8 (N, H, W, 3)."""
    out = frames.astype(np.float32)
    names = sorted(TEXTURE_PRESETS)
    height, width = frames.shape[1:3]
    for image, mask in zip(out, masks):
        if rng.random() < probability and mask.any():
            texture = generate_texture(names[rng.integers(len(names))], (height, width), int(rng.integers(2**31)))
            tint = rng.uniform(0.4, 1.4, size=3)
            shading = image[mask].mean(axis=1, keepdims=True) / max(float(image[mask].mean()), 1.0)
            image[mask] = np.clip(texture[mask] * tint * shading, 0, 255)
        image *= rng.uniform(0.8, 1.2, size=3)
    return np.clip(out, 0, 255).round().astype(np.uint8)


def _unit_pixels(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _random_crops(tensor: torch.Tensor, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    height, width = size
    tops = torch.randint(0, tensor.shape[-2] - height + 1, (tensor.shape[0],), generator=generator)
    lefts = torch.randint(0, tensor.shape[-1] - width + 1, (tensor.shape[0],), generator=generator)
    return torch.stack([t[..., y : y + height, x : x + width] for t, y, x in zip(tensor, tops, lefts)])


def _gradients(pixels: torch.Tensor) -> torch.Tensor:
    """Horizontal and vertical finite differences of (N, C, H, W) images, flattened side by side."""
    return torch.cat([(pixels[..., 1:, :] - pixels[..., :-1, :]).flatten(1),
                      (pixels[..., :, 1:] - pixels[..., :, :-1]).flatten(1)], dim=1)


def _optimizer(module: torch.nn.Module, learning_rate: float, steps: int):
    """AdamW without weight decay and its learning-rate schedule (`_schedule`) over `steps`."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=learning_rate, weight_decay=0.0)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _schedule(step, steps))


@torch.no_grad()
def _latent_means(vae: AutoencoderKL, pixels: torch.Tensor) -> torch.Tensor:
    """The posterior means of `pixels` ([-1, 1], NCHW), encoded 64 at a time."""
    return torch.cat([vae.encode(chunk).latent_dist.mean for chunk in pixels.split(64)])


def _schedule(step: int, total: int) -> float:
    """Constant learning rate, then a linear decay to zero over the last 30% of the steps."""
    decay_from = int(0.7 * total)
    return 1.0 if step < decay_from else max(0.0, (total - step) / max(1, total - decay_from))


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio of uint8 images, over `mask` (N, H, W) where given."""
    error = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = error[mask].mean() if mask is not None else error.mean()
    return float(10 * math.log10(255.0**2 / max(mse, 1e-10)))


def train_vae(vae: AutoencoderKL, frames: np.ndarray, config: TinyBaseConfig, progress: bool = True) -> None:
    """Stage 1: reconstruction on random crops, then `scaling_factor` = 1 / std of the latents."""
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(config.seed)
    pixels = _unit_pixels(frames)
    optimizer, scheduler = _optimizer(vae, config.vae_learning_rate, config.vae_steps)
    vae.train()
    bar = tqdm(range(config.vae_steps), desc="tiny base: VAE", disable=not progress)
    for _ in bar:
        rows = torch.randint(0, len(pixels), (config.batch_size,), generator=generator)
        batch = _random_crops(pixels[rows], config.vae_crop, generator)
        posterior = vae.encode(batch).latent_dist
        latents = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        reconstruction = vae.decode(latents).sample
        error = reconstruction - batch
        loss = error.abs().mean() + error.square().mean() + config.kl_weight * posterior.kl().mean()
        loss = loss + config.edge_weight * (_gradients(reconstruction) - _gradients(batch)).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    vae.eval()
    vae.register_to_config(scaling_factor=float(1.0 / _latent_means(vae, pixels).std()))


def train_unet(components: BaseComponents, frames: np.ndarray, config: TinyBaseConfig, progress: bool = True) -> None:
    """Stage 2: InstructPix2Pix's denoising objective with the input as its own target (identity edits)."""
    from tqdm.auto import tqdm

    unet, vae = components.unet, components.vae
    generator = torch.Generator().manual_seed(config.seed + 1)
    # The posterior's mean, not a sample: the target is then exactly the condition, and an unpredictable
    # sampling noise in the target would dominate the loss at low noise levels.
    means = _latent_means(vae, _unit_pixels(frames))
    with torch.no_grad():
        prompts = ["", *(f"make the cupboard out of {m}" for m in TRAINING_MATERIALS)]
        tokens = components.tokenizer(prompts, padding="max_length", max_length=components.tokenizer.model_max_length,
                                      truncation=True, return_tensors="pt").input_ids
        prompt_embeds = components.text_encoder(tokens)[0]
    scale = vae.config.scaling_factor
    noise_schedule = DDPMScheduler.from_config(components.scheduler_config)
    optimizer, scheduler = _optimizer(unet, config.unet_learning_rate, config.unet_steps)
    unet.train()
    bar = tqdm(range(config.unet_steps), desc="tiny base: UNet", disable=not progress)
    for _ in bar:
        rows = torch.randint(0, len(means), (config.batch_size,), generator=generator)
        condition = _random_crops(means[rows], config.unet_crop, generator)
        target = condition * scale
        text = prompt_embeds[torch.randint(0, len(prompts), (config.batch_size,), generator=generator)].clone()
        draw = torch.rand(config.batch_size, generator=generator)
        p = config.conditioning_dropout
        drop_text = (draw < p) | ((draw >= 2 * p) & (draw < 3 * p))
        drop_image = draw >= p
        drop_image &= draw < 3 * p
        text[drop_text] = prompt_embeds[0]
        condition[drop_image] = 0.0
        noise = torch.randn(target.shape, generator=generator)
        timesteps = torch.randint(0, noise_schedule.config.num_train_timesteps, (config.batch_size,),
                                  generator=generator)
        noisy = noise_schedule.add_noise(target, noise, timesteps)
        prediction = unet(torch.cat([noisy, condition], dim=1), timesteps, encoder_hidden_states=text).sample
        loss = F.mse_loss(prediction, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    unet.eval()


def measure_reconstruction(components: BaseComponents, frames: np.ndarray, masks: np.ndarray, num_steps: int = 4,
                           seed: int = 0) -> tuple[float, float, float]:
    """(VAE PSNR, edit PSNR, edit PSNR inside the masks) of an untrained specialist on `frames`."""
    from .specialist import EditSpecialist

    with torch.no_grad():
        pixels = _unit_pixels(frames)
        decoded = components.vae.decode(components.vae.encode(pixels).latent_dist.mode()).sample
    reconstructed = ((decoded.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    specialist = EditSpecialist(copy.deepcopy(components))  # it widens the UNet it is given, in place
    style = np.full((16, 16, 3), 128, np.uint8)
    edits = specialist.edit(frames, style, "make the cupboard out of wood", num_steps=num_steps,
                            seed=list(range(seed, seed + len(frames))))
    return psnr(reconstructed, frames), psnr(edits, frames), psnr(edits, frames, masks)


def train_tiny_base(
    frames: np.ndarray,
    masks: np.ndarray,
    held_out: tuple[np.ndarray, np.ndarray],
    config: TinyBaseConfig = TinyBaseConfig(),
    progress: bool = True,
) -> tuple[BaseComponents, TinyBaseReport]:
    """Trains the tiny base on uint8 frames (N, H, W, 3) with their object masks (N, H, W); `held_out`
    (frames, masks) measure the reconstruction. Deterministic in `config.seed` (on one machine and thread count)."""
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    training = np.concatenate([frames, recolour(frames, masks, rng, config.recolour_probability)])
    components = tiny_architecture(config)
    for module in (components.text_encoder,):
        module.requires_grad_(False)
    train_vae(components.vae, training, config, progress)
    components.vae.requires_grad_(False)
    train_unet(components, training, config, progress)
    components.unet.requires_grad_(False)
    vae_psnr, edit_psnr, cabinet_psnr = measure_reconstruction(components, *held_out)
    report = TinyBaseReport(vae_psnr, edit_psnr, cabinet_psnr, len(frames), time.perf_counter() - started,
                            config.to_dict())
    return components, report


def save_tiny_base(components: BaseComponents, report: TinyBaseReport, folder: str | Path) -> Path:
    """Writes a diffusers InstructPix2Pix folder plus `tiny_base.json`; the report is written last, so a
    folder with a report is complete."""
    folder = Path(folder)
    components.instruct_pix2pix_pipeline().save_pretrained(folder)
    partial = folder / f".{REPORT_NAME}.partial"
    partial.write_text(json.dumps(asdict(report), indent=2) + "\n")
    partial.replace(folder / REPORT_NAME)
    return folder


def read_tiny_base_report(folder: str | Path) -> TinyBaseReport | None:
    """The build report of a complete tiny base folder; None when the folder holds no complete base."""
    path = Path(folder) / REPORT_NAME
    if not path.is_file():
        return None
    return TinyBaseReport(**json.loads(path.read_text()))


def load_tiny_base(folder: str | Path) -> BaseComponents:
    """A saved tiny base, as `BaseComponents` (it loads like any diffusers InstructPix2Pix folder)."""
    return load_base_components(str(folder))
