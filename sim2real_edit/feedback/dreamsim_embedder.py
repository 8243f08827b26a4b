"""DreamSim's dinov2_vitb14 patch model as a `PatchEmbedder`.

DreamSim embeds an image as the tokens of its backbone's last block, each token centred and L2-normalised
over its features (the `dreamsim` package's `normalize_embeds=True`); the patch model's backbone is DINOv2
ViT-B/14 at 224x224 with DreamSim's LoRA fine-tuning, giving a 16x16 grid of patch tokens.
"""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..offline import DREAMSIM_DOWNLOAD, DREAMSIM_FILES, work_offline_if_unreachable
from .architectures import DREAMSIM_VIT_SIZES
from .embeddings import PatchEmbedder
from .loading import JudgeWeightsNotFoundError, Networks, PretrainedJudge, build_random
from .pixels import IMAGENET_MEAN, IMAGENET_STD, normalize, resize

DREAMSIM_TYPE = "dinov2_vitb14"
DREAMSIM_CACHE = "~/.cache/dreamsim"
DREAMSIM_IMAGE_SIZE = 224


def missing_dreamsim_files(folder: Path) -> list[str]:
    return [name for name in DREAMSIM_FILES if not (folder / name).exists()]


def _missing_weights_help(folder: Path) -> str:
    missing = ", ".join(missing_dreamsim_files(folder)) or "nothing listed"
    return (
        f"the DreamSim {DREAMSIM_TYPE} patch model is not complete in {folder} (missing: {missing}) and "
        "could not be downloaded: this machine may be offline. Fill the folder where there is a network: "
        f"`{DREAMSIM_DOWNLOAD.format(folder='DIR')}`, copy DIR here and "
        "pass it: DreamSimEmbedder.from_pretrained('DIR') or FeedbackConfig(embedder_model='DIR') "
        "(scripts/train_specialist.py --embedder-model DIR)"
    )


class DreamSimEmbedder(PretrainedJudge, PatchEmbedder):
    """Masked-mean DreamSim patch embeddings.

    `backbone` is a DINO-style ViT (the DINOv2 torch.hub model, or the `dreamsim` package's own
    `VisionTransformer` for random weights) with a `blocks` list whose last block yields the tokens.
    `from_pretrained` takes DreamSim's cache folder (`DREAMSIM_CACHE` by default).
    """

    default_model_id = DREAMSIM_CACHE

    def __init__(self, backbone: nn.Module, max_batch: int = 32):
        self.backbone = backbone.eval().requires_grad_(False)
        self.max_batch = max_batch
        patch = backbone.patch_embed.patch_size
        self.grid = DREAMSIM_IMAGE_SIZE // (patch[0] if isinstance(patch, tuple) else patch)

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.backbone.parameters()).dtype

    @classmethod
    def load_networks(cls, model_id: str | Path, device: torch.device | str) -> Networks:
        """The patch model through the `dreamsim` package from its cache folder `model_id`, LoRA merged.

        Where the folder is incomplete the package downloads what is missing; offline (no network, or
        HF_HUB_OFFLINE set) that fails with an error that says how to fill the folder elsewhere.
        """
        folder = Path(model_id).expanduser()
        if work_offline_if_unreachable() and missing_dreamsim_files(folder):
            raise JudgeWeightsNotFoundError(
                _missing_weights_help(folder) + " (downloads are off: HF_HUB_OFFLINE)"
            )
        from dreamsim import dreamsim

        hub_dir = torch.hub.get_dir()  # dreamsim points torch.hub at its cache folder; put it back afterwards
        try:
            with warnings.catch_warnings():
                # dreamsim wraps the model in LoRA twice while loading; peft warns about the second adapter.
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                model, _ = dreamsim(
                    pretrained=True,
                    device=str(device),
                    cache_dir=str(folder),
                    dreamsim_type=DREAMSIM_TYPE,
                    use_patch_model=True,
                    normalize_embeds=True,
                )
        except OSError as error:
            raise JudgeWeightsNotFoundError(_missing_weights_help(folder) + f"\n(cause: {error})") from error
        except RuntimeError as error:
            if "internet connection" not in str(error):
                raise
            raise JudgeWeightsNotFoundError(_missing_weights_help(folder) + f"\n(cause: {error})") from error
        finally:
            torch.hub.set_dir(hub_dir)
        return (model.merge_and_unload().extractor_list[0].model,)

    @classmethod
    def random_networks(cls, size: str, seed: int) -> tuple[Networks, dict[str, Any]]:
        """A ViT/14 of DreamSim's patch-model shape (full: ViT-B/14)."""
        from dreamsim.feature_extraction.vision_transformer import VisionTransformer

        backbone = build_random(
            VisionTransformer,
            img_size=[DREAMSIM_IMAGE_SIZE],
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            seed=seed,
            **DREAMSIM_VIT_SIZES[size],
        )
        return (backbone,), {}

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """float (N, 3, H, W) in [0, 1] -> normalised DreamSim tokens (N, 1 + grid**2, D), class token 1st."""
        size = (DREAMSIM_IMAGE_SIZE, DREAMSIM_IMAGE_SIZE)
        model_pixels = normalize(resize(pixels, size), IMAGENET_MEAN, IMAGENET_STD).to(self.dtype)
        captured: list[torch.Tensor] = []
        hook = self.backbone.blocks[-1].register_forward_hook(
            lambda module, args, output: captured.append(output)
        )
        try:
            self.backbone(model_pixels)
        finally:
            hook.remove()
        tokens = captured[0].float()
        return F.normalize(tokens - tokens.mean(dim=-1, keepdim=True), dim=-1)

    def patch_features(self, pixels: torch.Tensor) -> torch.Tensor:
        patches = self.tokens(pixels)[:, 1:]
        return patches.transpose(1, 2).reshape(patches.shape[0], -1, self.grid, self.grid)
