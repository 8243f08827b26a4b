"""AI feedback for the RL loop: depth, Grounded-SAM2 masks, patch embeddings, and the preference scores.

Each name loads its submodule on first use, so importing the package does not import torch, transformers or
dreamsim.
"""

from __future__ import annotations

from ..lazy_exports import lazy_exports

_EXPORTS = {
    "CLIP_B16": "embeddings",
    "DEPTH_LARGE": "depth",
    "DEPTH_SMALL": "depth",
    "DINOV2_BASE": "embeddings",
    "DREAMSIM_CACHE": "dreamsim_embedder",
    "GROUNDING_DINO_TINY": "segmentation",
    "SAM2_LARGE": "segmentation",
    "ClipEmbedder": "embeddings",
    "ColourStatisticsEmbedder": "analytic",
    "DepthEstimator": "depth",
    "DepthModel": "protocols",
    "Dinov2Embedder": "embeddings",
    "DreamSimEmbedder": "dreamsim_embedder",
    "Embedder": "protocols",
    "LightingAwareEmbedder": "protocols",
    "MaterialStatisticsEmbedder": "analytic",
    "STAND_IN_CABINET_ALBEDO": "analytic",
    "Feedback": "feedback",
    "FeedbackConfig": "feedback",
    "FeedbackInputError": "pixels",
    "FeedbackScores": "feedback",
    "GradientDepth": "analytic",
    "GroundedSAM2": "segmentation",
    "JudgeWeightsNotFoundError": "loading",
    "MaskResult": "protocols",
    "MeanColourEmbedder": "analytic",
    "PatchEmbedder": "embeddings",
    "Preference": "feedback",
    "Segmenter": "protocols",
    "edge_structure": "analytic",
    "embedding_distance": "scores",
    "material_word": "prompts",
    "normalized_advantages": "scores",
    "object_word": "prompts",
    "outside_mask_error": "scores",
    "rank_pairs": "scores",
    "semantic_score": "scores",
    "structure_score": "scores",
    "total_advantage": "scores",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
