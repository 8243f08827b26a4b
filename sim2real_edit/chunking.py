"""Running a batched model call in memory-bounded chunks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

Output = TypeVar("Output", torch.Tensor, tuple[torch.Tensor, ...])


def map_in_chunks(fn: Callable[..., Output], *tensors: torch.Tensor, chunk_size: int | None) -> Output:
    """Calls `fn` on consecutive slices of at most `chunk_size` rows of `tensors`; concatenates the results.

    `fn` returns a tensor or a tuple of tensors, each with the slice's rows first. `chunk_size=None` calls
    `fn` once on everything.
    """
    total = tensors[0].shape[0]
    if chunk_size is None or total <= chunk_size:
        return fn(*tensors)
    parts = [fn(*(t[start : start + chunk_size] for t in tensors)) for start in range(0, total, chunk_size)]
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(column) for column in zip(*parts, strict=True))
    return torch.cat(parts)
