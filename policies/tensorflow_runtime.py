"""Importing TensorFlow into a PyTorch process: in a safe order, and without it taking the whole GPU."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from types import ModuleType

logger = logging.getLogger(__name__)

_INSTALL_HINT = "install it with `pip install 'sim2real-edit[rt1]'` (tensorflow>=2.15, or tensorflow-cpu)"


def import_tensorflow() -> ModuleType:
    """Imports TensorFlow once, set up to share the process (and the GPU) with PyTorch.

    Every module of this project that needs TensorFlow imports it through here.
    """
    if "tensorflow" not in sys.modules and importlib.util.find_spec("triton") is not None:
        # TensorFlow loads its native libraries with RTLD_GLOBAL; Triton's native library, loaded after
        # them (torch imports it lazily, e.g. when diffusers is imported), crashes the process with a
        # segfault. Loaded before TensorFlow, Triton works and so does TensorFlow.
        try:
            importlib.import_module("triton")
        except ImportError:
            logger.debug("triton is present but does not import; torch will not use it either")
    try:
        import tensorflow as tf
    except ImportError as error:
        raise ImportError(f"the RT-1 policies need TensorFlow: {_INSTALL_HINT}") from error
    _grow_gpu_memory(tf)
    return tf


def _grow_gpu_memory(tf: ModuleType) -> None:
    """Makes TensorFlow allocate GPU memory as it needs it instead of grabbing the whole card at start."""
    for gpu in tf.config.list_physical_devices("GPU"):
        if tf.config.experimental.get_memory_growth(gpu):
            continue
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            logger.warning(
                "TensorFlow already initialised %s without memory growth, so it may hold most of that GPU's "
                "memory; import TensorFlow through policies.tensorflow_runtime.import_tensorflow() before "
                "anything else runs TensorFlow on the GPU",
                gpu.name,
            )
