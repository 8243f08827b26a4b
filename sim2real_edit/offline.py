"""Pretrained models on machines without a network.

Whether the Hugging Face hub can be reached is checked once per process (`work_offline_if_unreachable`);
when it cannot, HF_HUB_OFFLINE is switched on, so that loaders read local folders and the cache at once
instead of retrying downloads for a minute. `require_models` then names every missing model in one error,
each with the command that downloads it on a machine with a network and the flag that points here at it.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

OFFLINE_ENV_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
DEFAULT_HUB_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 3.0

# What `dreamsim(cache_dir=DIR, dreamsim_type="dinov2_vitb14", use_patch_model=True)` leaves in DIR: the
# DreamSim release (an unused backbone file it checks for, and the LoRA adapter) and torch.hub's DINOv2.
DREAMSIM_FILES = (
    "dinov2_vitb14_pretrain.pth",
    "dinov2_vitb14_patch_lora/adapter_config.json",
    "facebookresearch_dinov2_main/hubconf.py",
    "checkpoints/dinov2_vitb14_pretrain.pth",
)
DREAMSIM_DOWNLOAD = (
    'python -c "from dreamsim import dreamsim; dreamsim(pretrained=True, dreamsim_type=\'dinov2_vitb14\', '
    "use_patch_model=True, cache_dir='{folder}', device='cpu')\""
)


class MissingModelsError(OSError):
    """Pretrained models a job needs are neither on this machine nor downloadable (offline)."""


def hub_offline() -> bool:
    """Whether downloads are switched off (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE set), as in the tests."""
    return any(os.environ.get(name, "") not in ("", "0") for name in OFFLINE_ENV_VARS)


@functools.cache
def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub (HF_ENDPOINT, or the HTTPS proxy when one is set) can be opened."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy or os.environ.get("HF_ENDPOINT") or DEFAULT_HUB_ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def work_offline_if_unreachable() -> bool:
    """True when downloads are off: switched off by the environment, or the hub cannot be reached (checked
    once; then HF_HUB_OFFLINE is set for this process and the processes it starts)."""
    if hub_offline():
        return True
    if hub_reachable():
        return False
    logger.warning("The Hugging Face hub cannot be reached: working offline (HF_HUB_OFFLINE=1), from local "
                   "folders and the cache only.")
    os.environ["HF_HUB_OFFLINE"] = "1"
    # Libraries imported already read the variable at import: switch them too.
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None and hasattr(transformers_hub, "_is_offline_mode"):
        transformers_hub._is_offline_mode = True  # transformers 4.x keeps its own copy
    return True


@dataclass(frozen=True)
class RequiredModel:
    """A pretrained model a job loads: from `source` (hub id or local folder), the default being `hub_id`."""

    what: str  # e.g. "depth judge"
    source: str
    hub_id: str
    flag: str  # the command-line option that points the job at a local folder
    files: tuple[str, ...] = ("config.json",)  # what a complete copy holds, relative to its root
    kind: str = "hub"  # "hub": an `hf download` repository; "dreamsim": the dreamsim package's cache folder
    setting: str = ""  # the config field that holds `source`
    chosen: bool = True  # whether `source` was chosen by the user (else it is the default place)

    @property
    def folder_name(self) -> str:
        """Its folder under --models-dir."""
        return "dreamsim" if self.kind == "dreamsim" else self.hub_id.rstrip("/").split("/")[-1]

    def download_command(self, folder: str) -> str:
        if self.kind == "dreamsim":
            return DREAMSIM_DOWNLOAD.format(folder=folder)
        return f"hf download {self.hub_id} --local-dir {folder}"


def names_a_folder(source: str) -> bool:
    """Whether a model source is a local folder: one that exists, or a path that cannot be a hub id."""
    path = Path(source).expanduser()
    return path.is_dir() or path.is_absolute() or source.startswith((".", "~"))


def missing_files(model: RequiredModel, offline: bool) -> list[str] | None:
    """The files of `model` this machine lacks; None when they can still be downloaded (online)."""
    if model.kind == "dreamsim" or names_a_folder(model.source):
        folder = Path(model.source).expanduser()
        missing = [name for name in model.files if not (folder / name).exists()]
        # The dreamsim package fills its cache folder itself when it can download; a given folder cannot.
        return None if (model.kind == "dreamsim" and not offline) else missing
    if not offline:
        return None
    from huggingface_hub import try_to_load_from_cache

    return [name for name in model.files if not isinstance(try_to_load_from_cache(model.source, name), str)]


def require_models(models: Sequence[RequiredModel], models_dir_flag: str = "--models-dir") -> None:
    """Raises one MissingModelsError naming every model of `models` that this machine lacks and cannot
    download, with the commands that fetch them elsewhere and the flags that point here at them."""
    downloads = [model for model in models if model.kind == "dreamsim" or not names_a_folder(model.source)]
    offline = bool(downloads) and work_offline_if_unreachable()  # no network check for local folders only
    missing = [(model, files) for model in models if (files := missing_files(model, offline))]
    if not missing:
        return
    lines = [f"{len(missing)} pretrained model{'s are' if len(missing) > 1 else ' is'} missing on this machine"
             + (", which cannot download (offline: HF_HUB_OFFLINE is set or the hub is unreachable)" if offline
                else "") + ":"]
    for model, files in missing:
        if not (model.kind == "dreamsim" or names_a_folder(model.source)):
            where = f"{model.source} is not in the hub cache"
        elif Path(model.source).expanduser().is_dir():
            where = f"the folder {model.source} lacks {', '.join(files)}"
        else:
            where = f"there is no folder {model.source}"
        target = model.source if model.chosen and names_a_folder(model.source) else f"models/{model.folder_name}"
        lines.append(f"  - {model.what} ({where}): {model.download_command(target)}   then pass {model.flag} {target}")
    lines.append(f"Run the commands where there is a network, copy the folders here and pass each with its flag, "
                 f"or put them all in one folder (models/ above) and pass {models_dir_flag} models.")
    raise MissingModelsError("\n".join(lines))
