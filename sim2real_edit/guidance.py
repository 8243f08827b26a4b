"""Three-way classifier-free guidance over input image, style image and text."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .validation import is_number


@dataclass(frozen=True)
class GuidanceScales:
    """s_T, s_I, s_S of eps = e000 + s_I (eI00 - e000) + s_S (eIS0 - eI00) + s_T (eIST - eIS0)."""

    text: float = 7.5
    image: float = 1.5
    style: float = 3.0

    def __post_init__(self) -> None:
        for name in ("text", "image", "style"):
            value = getattr(self, name)
            if not is_number(value):
                raise ValueError(
                    f"the {name} guidance scale must be a finite number (e.g. (7.5, 1.5, 3.0) for text, image, "
                    f"style), got {value!r}"
                )

    @classmethod
    def parse(cls, value: GuidanceScales | tuple | list | None) -> GuidanceScales:
        """Accepts GuidanceScales, a (text, image, style) tuple, or None for the defaults."""
        if value is None:
            return cls()
        if isinstance(value, GuidanceScales):
            return value
        if isinstance(value, (tuple, list)) and len(value) == 3:
            try:
                scales = [float(v) for v in value]
            except (TypeError, ValueError):
                scales = None
            if scales is not None:
                return cls(*scales)  # checks that they are finite
        raise ValueError(f"guidance must be (text, image, style) scales such as (7.5, 1.5, 3.0), got {value!r}")

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.text, self.image, self.style)


#: Order of the four conditionings in the batched UNet call: (image, style, text) present or dropped.
BRANCHES: tuple[str, ...] = ("none", "image", "image+style", "image+style+text")


def combine_guidance(
    eps_none: torch.Tensor,
    eps_image: torch.Tensor,
    eps_image_style: torch.Tensor,
    eps_all: torch.Tensor,
    scales: GuidanceScales,
) -> torch.Tensor:
    """e(0,0,0) + s_I (e(I,0,0) - e(0,0,0)) + s_S (e(I,S,0) - e(I,0,0)) + s_T (e(I,S,T) - e(I,S,0))."""
    return (
        eps_none
        + scales.image * (eps_image - eps_none)
        + scales.style * (eps_image_style - eps_image)
        + scales.text * (eps_all - eps_image_style)
    )
