"""The preference scores (lower is better) and their per-batch advantages, as pure tensor functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _same_shape(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def structure_score(depth_input: torch.Tensor, depth_edit: torch.Tensor) -> torch.Tensor:
    """Eq. 8: mean absolute difference of the depth maps (N, H, W) of input and edit -> (N,)."""
    _same_shape(depth_input, depth_edit, "depth_input and depth_edit")
    return (depth_input.float() - depth_edit.float()).abs().flatten(1).mean(dim=1)


def embedding_distance(edit_embedding: torch.Tensor, style_embedding: torch.Tensor) -> torch.Tensor:
    """Cosine distance 1 - cos(a, b) of (N, D) embeddings -> (N,) in [0, 2].

    A zero embedding (the embedding of an empty mask) has distance 1 to anything: no evidence either way.
    """
    _same_shape(edit_embedding, style_embedding, "edit_embedding and style_embedding")
    return 1.0 - F.cosine_similarity(edit_embedding.float(), style_embedding.float(), dim=-1, eps=1e-8)


def outside_mask_error(inputs: torch.Tensor, edits: torch.Tensor, input_masks: torch.Tensor) -> torch.Tensor:
    """Mean squared error of input and edit (N, 3, H, W) in [0, 1] over the pixels outside the mask -> (N,).

    A mask that covers the whole image leaves no pixel to compare: the error is 0.
    """
    _same_shape(inputs, edits, "inputs and edits")
    if input_masks.shape != (inputs.shape[0], *inputs.shape[2:]):
        raise ValueError(
            f"input_masks must have shape (N, H, W) = {(inputs.shape[0], *inputs.shape[2:])}, "
            f"got {tuple(input_masks.shape)}"
        )
    outside = (~input_masks.bool()).float()
    squared = (edits.float() - inputs.float()).square().mean(dim=1)
    return (squared * outside).flatten(1).sum(dim=1) / outside.flatten(1).sum(dim=1).clamp_min(1.0)


def semantic_score(
    edit_embedding: torch.Tensor,
    style_embedding: torch.Tensor,
    inputs: torch.Tensor,
    edits: torch.Tensor,
    input_masks: torch.Tensor,
    pixel_weight: float = 0.5,
) -> torch.Tensor:
    """Eq. 9: cosine distance between the masked edit's and the masked style image's embeddings, plus
    `pixel_weight` (lambda) x the mean squared pixel error outside the input's mask -> (N,)."""
    distance = embedding_distance(edit_embedding, style_embedding)
    return distance + pixel_weight * outside_mask_error(inputs, edits, input_masks)


def normalized_advantages(
    scores: torch.Tensor, eps: float = 1e-8, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """(L - mean) / sqrt(var + eps) over the batch (population variance) -> (N,).

    With `valid` (bool (N,)), mean and variance come from the valid rows only and invalid rows get 0.
    A batch of one (or a batch of equal scores) has no spread: every advantage is 0.
    """
    if scores.ndim != 1:
        raise ValueError(f"scores must be one score per sample (N,), got shape {tuple(scores.shape)}")
    scores = scores.float()
    weights = torch.ones_like(scores) if valid is None else valid.float()
    count = weights.sum().clamp_min(1.0)
    mean = (scores * weights).sum() / count
    variance = ((scores - mean).square() * weights).sum() / count
    return (scores - mean) / torch.sqrt(variance + eps) * weights


def total_advantage(
    structure_advantage: torch.Tensor, semantic_advantage: torch.Tensor, alpha: float = 1.0
) -> torch.Tensor:
    """A_struct + alpha x A_sem (lower is better)."""
    return structure_advantage + alpha * semantic_advantage


def rank_pairs(total_a: torch.Tensor, total_b: torch.Tensor) -> torch.Tensor:
    """bool (N,): True where sample a is preferred, i.e. has the strictly lower total (ties go to b)."""
    _same_shape(total_a, total_b, "total_a and total_b")
    return total_a < total_b
