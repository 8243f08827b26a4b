"""AI feedback for the RL loop: structure and semantic scores of (input, edit, style) triples, pair ranks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from .analytic import (
    STAND_IN_CABINET_ALBEDO,
    ColourStatisticsEmbedder,
    GradientDepth,
    MaterialStatisticsEmbedder,
    MeanColourEmbedder,
)
from .architectures import Size
from .depth import DEPTH_LARGE, DEPTH_SMALL, DepthEstimator
from .dreamsim_embedder import DreamSimEmbedder
from .embeddings import ClipEmbedder, Dinov2Embedder
from .pixels import FeedbackInputError, ImageInput, MaskInput, as_bool_masks, as_unit_pixels
from .prompts import material_word, object_word
from .protocols import DepthModel, Embedder, LightingAwareEmbedder, MaskResult, Segmenter
from .scores import (
    embedding_distance,
    normalized_advantages,
    outside_mask_error,
    rank_pairs,
    structure_score,
    total_advantage,
)
from .segmentation import GROUNDING_DINO_TINY, SAM2_LARGE, GroundedSAM2

EmbedderName = Literal["dreamsim", "dinov2", "clip"]
StyleMaskMode = Literal["object", "full"]
JudgeKind = Literal["models", "analytic"]
AnalyticEmbedderName = Literal["mean_colour", "colour_statistics", "material_statistics"]
_ANALYTIC_EMBEDDERS = ("mean_colour", "colour_statistics", "material_statistics")
_EMBEDDERS = {"dreamsim": DreamSimEmbedder, "dinov2": Dinov2Embedder, "clip": ClipEmbedder}


@dataclass
class FeedbackConfig:
    """Which judges to load and how to combine their scores (defaults: the paper's)."""

    # "models": the networks below (the paper's). "analytic": model-free judges that run anywhere in
    # milliseconds (image-gradient structure, masked mean colour; see `analytic`), for the CPU miniature;
    # they need exact input masks and a full-frame style mask.
    judges: JudgeKind = "models"
    analytic_grid: int = 16  # "analytic": the colour embedder's patch grid (finer follows the mask closer)
    # "analytic": "mean_colour" (cosine of centred mean colours: hue direction) or "colour_statistics" (mean
    # colour and local contrast as a colour distance; see `ColourStatisticsEmbedder`) or "material_statistics"
    # (the material with the simulator's shading divided out: chromaticity and texture statistics against the
    # exemplars'; see `MaterialStatisticsEmbedder`).
    analytic_embedder: AnalyticEmbedderName = "mean_colour"
    # "material_statistics": the simulator's albedo of the object (RGB 0-255), from which it reads the shading.
    sim_albedo: tuple[float, float, float] = STAND_IN_CABINET_ALBEDO
    depth_model: str = DEPTH_LARGE
    detector_model: str = GROUNDING_DINO_TINY
    segmenter_model: str = SAM2_LARGE
    embedder: EmbedderName = "dreamsim"
    # Hub id or folder of the embedder; None: DreamSim's cache folder, facebook/dinov2-base, or CLIP ViT-B/16.
    embedder_model: str | None = None
    box_threshold: float = 0.4
    text_threshold: float = 0.3
    # "object": the style image's own mask of the material; "full": the whole style image.
    style_mask: StyleMaskMode = "object"
    # False: no Grounded-SAM2 is loaded; `score` then needs input masks (exact simulator masks), and style
    # masks or style_mask="full".
    use_segmenter: bool = True
    # Detector prompts; None: taken from the instruction ("make the cupboard out of wood": cupboard, wood).
    object_prompt: str | None = None
    style_prompt: str | None = None
    pixel_weight: float = 0.5  # lambda in Eq. 9
    semantic_weight: float = 1.0  # alpha in the total advantage
    advantage_eps: float = 1e-8
    max_batch: int = 32
    mask_cache_size: int = 4096

    def __post_init__(self):
        if self.embedder not in _EMBEDDERS:
            raise ValueError(
                f"FeedbackConfig.embedder must be one of {sorted(_EMBEDDERS)}, got {self.embedder!r}"
            )
        if self.style_mask not in ("object", "full"):
            raise ValueError(f"FeedbackConfig.style_mask must be 'object' or 'full', got {self.style_mask!r}")
        for name in ("box_threshold", "text_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(
                    f"FeedbackConfig.{name} is a probability in [0, 1], got {getattr(self, name)}"
                )
        if self.max_batch < 1:
            raise ValueError(f"FeedbackConfig.max_batch must be at least 1, got {self.max_batch}")
        if self.judges not in ("models", "analytic"):
            raise ValueError(f"FeedbackConfig.judges must be 'models' or 'analytic', got {self.judges!r}")
        if self.judges == "analytic" and (self.use_segmenter or self.style_mask != "full"):
            raise ValueError("analytic judges find no masks: set use_segmenter=False and style_mask='full', and "
                             "pass the inputs' exact masks")
        if self.analytic_embedder not in _ANALYTIC_EMBEDDERS:
            raise ValueError(f"FeedbackConfig.analytic_embedder must be one of {_ANALYTIC_EMBEDDERS}, got "
                             f"{self.analytic_embedder!r}")
        self.sim_albedo = tuple(float(c) for c in self.sim_albedo)  # JSON gives a list back
        if len(self.sim_albedo) != 3 or min(self.sim_albedo) <= 0:
            raise ValueError(
                f"FeedbackConfig.sim_albedo must be a positive RGB colour (0-255), got {self.sim_albedo!r}"
            )
        if not isinstance(self.analytic_grid, int) or self.analytic_grid < 1:
            raise ValueError(f"FeedbackConfig.analytic_grid must be an integer >= 1, got {self.analytic_grid!r}")

    @property
    def embedder_source(self) -> str:
        return self.embedder_model or _EMBEDDERS[self.embedder].default_model_id


@dataclass
class FeedbackScores:
    """Scores of N (input, edit, style) triples; lower is better.

    structure: Eq. 8. semantic: Eq. 9 = embedding_distance + lambda x pixel_error. The masks' `found` flags
    say where an object or material was not found: there the embedding distance compares an empty region
    (distance 1) and the caller should drop or penalise the sample (`valid`).
    """

    structure: torch.Tensor
    semantic: torch.Tensor
    embedding_distance: torch.Tensor
    pixel_error: torch.Tensor
    input_mask_found: torch.Tensor
    style_mask_found: torch.Tensor
    input_masks: torch.Tensor

    @property
    def valid(self) -> torch.Tensor:
        return self.input_mask_found & self.style_mask_found

    def __len__(self) -> int:
        return self.structure.shape[0]


@dataclass
class Preference:
    """Ranking of N pairs (a_i, b_i): total advantages (lower is better) and which sample of each wins."""

    a_preferred: torch.Tensor
    total_a: torch.Tensor
    total_b: torch.Tensor
    valid: torch.Tensor  # both samples' masks were found; rank only these pairs


class Feedback:
    """The AI judges of the RL loop, loaded once, scoring whole batches in a few batched calls.

    The judges are injectable: any depth model, segmenter and embedder with the interfaces in `protocols`
    (e.g. the analytic `GradientDepth` and `MeanColourEmbedder`) can stand in for the networks. The
    segmenter may be None when callers always pass masks (exact simulator masks) or use full-frame style
    masks.
    """

    def __init__(
        self,
        depth: DepthModel,
        embedder: Embedder,
        segmenter: Segmenter | None = None,
        config: FeedbackConfig | None = None,
        device: torch.device | str = "cpu",
    ):
        self.depth = depth
        self.embedder = embedder
        self.segmenter = segmenter
        self.config = config or FeedbackConfig()
        self.device = torch.device(device)

    @classmethod
    def from_config(
        cls,
        config: FeedbackConfig | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Feedback:
        """Loads every judge named by `config` (hub ids or local folders); CUDA and float16 when available."""
        config = config or FeedbackConfig()
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if config.judges == "analytic":
            return cls.analytic(config, device)
        dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
        depth = DepthEstimator.from_pretrained(config.depth_model, device, dtype, max_batch=config.max_batch)
        segmenter = None
        if config.use_segmenter:
            segmenter = GroundedSAM2.from_pretrained(
                config.detector_model,
                config.segmenter_model,
                config.box_threshold,
                config.text_threshold,
                device,
                dtype,
                max_batch=config.max_batch,
                cache_size=config.mask_cache_size,
            )
        embedder = _EMBEDDERS[config.embedder].from_pretrained(
            config.embedder_source, device, dtype, max_batch=config.max_batch
        )
        return cls(depth, embedder, segmenter, config, device)

    @classmethod
    def from_architecture(
        cls,
        size: Size = "full",
        config: FeedbackConfig | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Feedback:
        """The judges `config` names, in full-size (or tiny) architectures with random weights, offline."""
        config = config or FeedbackConfig()
        depth_size = "tiny" if size == "tiny" else ("small" if config.depth_model == DEPTH_SMALL else "large")
        depth = DepthEstimator.from_architecture(depth_size, seed, device, dtype, max_batch=config.max_batch)
        segmenter = None
        if config.use_segmenter:
            segmenter = GroundedSAM2.from_architecture(
                size,
                seed + 10,
                device,
                dtype,
                box_threshold=config.box_threshold,
                text_threshold=config.text_threshold,
                max_batch=config.max_batch,
                cache_size=config.mask_cache_size,
            )
        embedder = _EMBEDDERS[config.embedder].from_architecture(size, seed + 20, device, dtype,
                                                                 max_batch=config.max_batch)
        return cls(depth, embedder, segmenter, config, device)

    @classmethod
    def tiny(cls, seed: int = 0, config: FeedbackConfig | None = None) -> Feedback:
        """Tiny random-weight networks on CPU (tests)."""
        return cls.from_architecture("tiny", config, seed)

    @classmethod
    def analytic(cls, config: FeedbackConfig | None = None, device: torch.device | str = "cpu") -> Feedback:
        """Model-free judges (image gradients for depth, mean colour for embedding); pass masks to `score`."""
        config = config or FeedbackConfig(use_segmenter=False, style_mask="full")
        if config.analytic_embedder == "material_statistics":
            embedder = MaterialStatisticsEmbedder(sim_albedo=config.sim_albedo, device=device)
        else:
            kind = ColourStatisticsEmbedder if config.analytic_embedder == "colour_statistics" else MeanColourEmbedder
            embedder = kind(grid=config.analytic_grid, device=device)
        return cls(GradientDepth(device), embedder, None, config, device)

    @torch.inference_mode()
    def score(
        self,
        inputs: ImageInput,
        edits: ImageInput,
        styles: ImageInput,
        instruction: str | None = None,
        input_masks: MaskInput | None = None,
        style_masks: MaskInput | None = None,
        material_masks: MaskInput | None = None,
    ) -> FeedbackScores:
        """Scores N edits of N inputs against their style images (N of them, or one for all).

        Images: uint8 (N, H, W, 3) or float (N, 3, H, W) in [0, 1]; inputs and edits share one size, styles
        may have another. `input_masks` (bool (N, H, W), e.g. exact simulator masks) replace the segmenter
        for the inputs, and an empty given mask counts as not found; `style_masks` likewise for the styles.
        `instruction` supplies the detector prompts where masks must be found. `material_masks` (bool (N, H, W)):
        the part of each input's object that shows its material (handles and cavities left out), the region of
        the style score; None: the input masks. The pixel error outside always uses the input masks.
        """
        inputs_px = as_unit_pixels(inputs, self.device, "inputs")
        edits_px = as_unit_pixels(edits, self.device, "edits")
        styles_px = as_unit_pixels(styles, self.device, "styles")
        count = inputs_px.shape[0]
        if edits_px.shape != inputs_px.shape:
            raise FeedbackInputError(
                f"inputs {tuple(inputs_px.shape)} and edits {tuple(edits_px.shape)} must have the same shape "
                "(N, 3, H, W): each edit is compared pixel by pixel with its input; resize the edits to the "
                "inputs"
            )
        if styles_px.shape[0] not in (1, count):
            raise FeedbackInputError(
                f"got {count} inputs but {styles_px.shape[0]} style images; pass one style image per input, "
                "or one for the whole batch"
            )
        input_result = self._masks(
            inputs_px, input_masks, "input_masks", lambda: self._prompt(instruction, "object")
        )
        style_result = self._style_masks(styles_px, style_masks, instruction)

        depth = self.depth(torch.cat([inputs_px, edits_px])).to(self.device)
        structure = structure_score(depth[:count], depth[count:])
        style_region = input_result.masks
        if material_masks is not None:
            style_region = as_bool_masks(material_masks, inputs_px, "material_masks") & input_result.masks
        if isinstance(self.embedder, LightingAwareEmbedder):
            edit_embedding = self.embedder.embed(edits_px, style_region, lit_by=inputs_px).to(self.device)
            style_embedding = self.embedder.embed(styles_px, style_result.masks).to(self.device)
            distance = self.embedder.distance(edit_embedding, style_embedding.expand(count, -1))
        else:
            edit_embedding = self.embedder.embed(edits_px, style_region).to(self.device)
            style_embedding = self.embedder.embed(styles_px, style_result.masks).to(self.device)
            distance = embedding_distance(edit_embedding, style_embedding.expand(count, -1))
        pixel_error = outside_mask_error(inputs_px, edits_px, input_result.masks)
        return FeedbackScores(
            structure=structure,
            semantic=distance + self.config.pixel_weight * pixel_error,
            embedding_distance=distance,
            pixel_error=pixel_error,
            input_mask_found=input_result.found.to(self.device),
            style_mask_found=style_result.found.to(self.device).expand(count),
            input_masks=input_result.masks,
        )

    def rank(self, scores_a: FeedbackScores, scores_b: FeedbackScores) -> Preference:
        """Ranks pairs (a_i, b_i): advantages normalised over all 2N samples, total A_struct + alpha x A_sem.

        Semantic statistics use only samples whose masks were found (the others' semantic advantage is 0).
        """
        if len(scores_a) != len(scores_b):
            raise ValueError(
                f"pairs need as many a samples as b samples, got {len(scores_a)} and {len(scores_b)}"
            )
        eps = self.config.advantage_eps
        valid = torch.cat([scores_a.valid, scores_b.valid])
        structure = normalized_advantages(torch.cat([scores_a.structure, scores_b.structure]), eps)
        semantic = normalized_advantages(torch.cat([scores_a.semantic, scores_b.semantic]), eps, valid=valid)
        total = total_advantage(structure, semantic, self.config.semantic_weight)
        total_a, total_b = total.split(len(scores_a))
        return Preference(rank_pairs(total_a, total_b), total_a, total_b, scores_a.valid & scores_b.valid)

    def _prompt(self, instruction: str | None, kind: Literal["object", "style"]) -> str:
        configured = self.config.object_prompt if kind == "object" else self.config.style_prompt
        if configured:
            return configured
        if instruction is None:
            images = "inputs" if kind == "object" else "style images"
            raise ValueError(
                f"masks must be found for the {images} but no instruction was given; pass `instruction=`, "
                f"set FeedbackConfig.{kind}_prompt, or pass the masks"
            )
        return object_word(instruction) if kind == "object" else material_word(instruction)

    def _masks(
        self, pixels: torch.Tensor, given: MaskInput | None, name: str, prompt: Callable[[], str]
    ) -> MaskResult:
        if given is not None:
            masks = as_bool_masks(given, pixels, name)
            return MaskResult(masks, masks.flatten(1).any(dim=1))
        if self.segmenter is None:
            alternative = " or set FeedbackConfig.style_mask='full'" if name == "style_masks" else ""
            raise ValueError(
                "this Feedback has no segmenter (FeedbackConfig.use_segmenter=False or none injected): "
                f"pass `{name}`{alternative}"
            )
        return self.segmenter(pixels, prompt())

    def _style_masks(
        self, styles: torch.Tensor, given: MaskInput | None, instruction: str | None
    ) -> MaskResult:
        if given is None and self.config.style_mask == "full":
            shape = (styles.shape[0], *styles.shape[-2:])
            return MaskResult(
                torch.ones(shape, dtype=torch.bool, device=styles.device),
                torch.ones(styles.shape[0], dtype=torch.bool, device=styles.device),
            )
        return self._masks(styles, given, "style_masks", lambda: self._prompt(instruction, "style"))
