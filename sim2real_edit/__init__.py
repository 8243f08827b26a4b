"""sim2real-edit: diffusion editing specialists that make simulated robot evaluation look real.

Heavy dependencies (torch, diffusers) load on first use of a model class, so light modules such as
`sim2real_edit.styles` and `sim2real_edit.metrics` import quickly.
"""

from __future__ import annotations

from .lazy_exports import lazy_exports

_EXPORTS = {
    "DEFAULT_BASE": "components",
    "WeightsNotFoundError": "components",
    "GuidanceScales": "guidance",
    "combine_guidance": "guidance",
    "ImageFormatError": "images",
    "EditCondition": "specialist",
    "EditSpecialist": "specialist",
    "SpecialistConfig": "specialist",
    "SpecialistFormatError": "specialist",
    "Trajectory": "specialist",
    "StyleAttention": "style_attention",
    "StyleAttentionConfig": "style_attention",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
