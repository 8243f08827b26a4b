"""Loading judges from a hub id or a local folder, or building them with random weights from a config."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import torch
from transformers import PretrainedConfig

from ..offline import hub_offline, names_a_folder, work_offline_if_unreachable

ModelT = TypeVar("ModelT")


class JudgeWeightsNotFoundError(OSError):
    """A judge's weights could not be found: wrong id, incomplete folder, or an offline machine."""


def offline_help(model_id: str, what: str, how_to_pass: str) -> str:
    offline = hub_offline()
    local = Path(model_id).expanduser()
    where = (
        f"the folder {local} does not hold a complete model"
        if local.exists()
        else f"{model_id!r} is neither a local folder nor cached, and this machine may be offline"
        + (" (HF_HUB_OFFLINE is set)" if offline else "")
    )
    return (
        f"could not load the {what} from {model_id!r}: {where}. Download it where there is a network "
        f"(`hf download {model_id} --local-dir DIR`) and pass the folder: {how_to_pass}"
    )


def load_pretrained(
    model_class: type[ModelT], model_id: str, what: str, how_to_pass: str, **kwargs: Any
) -> ModelT:
    """`model_class.from_pretrained(model_id)`; a missing download becomes an error that says what to do."""
    source = str(Path(model_id).expanduser()) if Path(model_id).expanduser().exists() else model_id
    if not names_a_folder(model_id):
        work_offline_if_unreachable()  # no minute of retries on a machine without a network
    try:
        return model_class.from_pretrained(source, **kwargs)
    except OSError as error:
        raise JudgeWeightsNotFoundError(
            offline_help(model_id, what, how_to_pass) + f"\n(cause: {error})"
        ) from error


def build_random(model_class: type[ModelT], config: PretrainedConfig, seed: int) -> ModelT:
    """A model with seeded random weights, leaving the global random state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(config)


def place(model: torch.nn.Module, device: torch.device | str, dtype: torch.dtype) -> torch.nn.Module:
    """Moves a judge model to `device`/`dtype` for inference only."""
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
