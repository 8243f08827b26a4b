"""AI feedback for the RL loop: depth, Grounded-SAM2 masks, patch embeddings, and the preference scores."""

from .analytic import ColourStatisticsEmbedder, GradientDepth, MeanColourEmbedder
from .depth import DEPTH_LARGE, DEPTH_SMALL, DepthEstimator
from .dreamsim_embedder import DREAMSIM_CACHE, DreamSimEmbedder
from .embeddings import CLIP_B16, DINOV2_BASE, ClipEmbedder, Dinov2Embedder, PatchEmbedder
from .feedback import Feedback, FeedbackConfig, FeedbackScores, Preference
from .loading import JudgeWeightsNotFoundError
from .pixels import FeedbackInputError
from .prompts import material_word, object_word
from .protocols import DepthModel, Embedder, MaskResult, Segmenter
from .scores import (
    embedding_distance,
    normalized_advantages,
    outside_mask_error,
    rank_pairs,
    semantic_score,
    structure_score,
    total_advantage,
)
from .segmentation import GROUNDING_DINO_TINY, SAM2_LARGE, GroundedSAM2

__all__ = [
    "CLIP_B16",
    "DEPTH_LARGE",
    "DEPTH_SMALL",
    "DINOV2_BASE",
    "DREAMSIM_CACHE",
    "GROUNDING_DINO_TINY",
    "SAM2_LARGE",
    "ClipEmbedder",
    "ColourStatisticsEmbedder",
    "DepthEstimator",
    "DepthModel",
    "Dinov2Embedder",
    "DreamSimEmbedder",
    "Embedder",
    "Feedback",
    "FeedbackConfig",
    "FeedbackInputError",
    "FeedbackScores",
    "GradientDepth",
    "GroundedSAM2",
    "JudgeWeightsNotFoundError",
    "MaskResult",
    "MeanColourEmbedder",
    "PatchEmbedder",
    "Preference",
    "Segmenter",
    "embedding_distance",
    "material_word",
    "normalized_advantages",
    "object_word",
    "outside_mask_error",
    "rank_pairs",
    "semantic_score",
    "structure_score",
    "total_advantage",
]
