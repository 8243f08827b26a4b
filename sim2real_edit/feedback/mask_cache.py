"""A bounded store of object masks keyed by image content and prompt.

The RL loop edits each training input many times; its mask only depends on the input, so it is computed once.
"""

from __future__ import annotations

from collections import OrderedDict

import torch


class MaskCache:
    """Least-recently-used map from a key to a (bool (H, W) mask on CPU, found) pair."""

    def __init__(self, capacity: int = 4096):
        if capacity < 1:
            raise ValueError(
                f"MaskCache capacity must be at least 1, got {capacity}; pass cache_size=0 to disable it"
            )
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[torch.Tensor, bool]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> tuple[torch.Tensor, bool] | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: str, mask: torch.Tensor, found: bool) -> None:
        self._entries[key] = (mask.to("cpu", copy=True), bool(found))
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
