"""Instruction -> 512-d Universal Sentence Encoder embedding, RT-1's language input, behind an on-disk cache.

The encoder (large, v5) is a TF-Hub module of about 600 MB that takes a while to load, and an evaluation
uses only six instructions. `SentenceEncoder` therefore keeps every embedding it computes in a JSON file
(one per encoder handle) and loads the encoder only when an instruction is not in that file yet: a run
needs the encoder once, and later runs not at all.

The encoder is loaded from a local SavedModel folder, or from a TF-Hub URL: through ``tensorflow_hub`` when
it is installed, otherwise by downloading the module's compressed SavedModel into the cache folder and
loading it with ``tf.saved_model.load`` (``tensorflow_hub`` 0.16 needs ``setuptools<81`` and ``tf-keras``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from policies.tensorflow_runtime import import_tensorflow

logger = logging.getLogger(__name__)

DEFAULT_SENTENCE_ENCODER = "https://tfhub.dev/google/universal-sentence-encoder-large/5"
EMBEDDING_DIM = 512

#: Encodes a batch of texts into an (N, embedding_dim) array.
EncodeFn = Callable[[list[str]], np.ndarray]


def default_cache_dir() -> Path:
    """``$SIM2REAL_EDIT_HOME/sentence_embeddings``, else under ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    home = os.environ.get("SIM2REAL_EDIT_HOME")
    if home:
        return Path(home).expanduser() / "sentence_embeddings"
    cache_root = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    return cache_root / "sim2real_edit" / "sentence_embeddings"


def _file_stem(handle: str) -> str:
    """A readable, collision-free file name for an encoder handle (URL or folder)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", handle.rstrip("/"))[-60:].strip("_.")
    digest = hashlib.sha1(handle.encode()).hexdigest()[:10]
    return f"{readable}-{digest}"


def _download_compressed_module(url: str, download_dir: Path) -> Path:
    """Downloads and unpacks a TF-Hub module's compressed SavedModel once; returns its folder."""
    module_dir = download_dir / _file_stem(url)
    if (module_dir / "saved_model.pb").is_file():
        return module_dir
    is_archive = url.split("?")[0].endswith((".tar.gz", ".tgz"))
    archive_url = url if is_archive or "?" in url else f"{url}?tf-hub-format=compressed"
    download_dir.mkdir(parents=True, exist_ok=True)
    logger.info("downloading the sentence encoder from %s", archive_url)
    with tempfile.TemporaryDirectory(dir=download_dir) as scratch:
        archive_path = Path(scratch) / "module.tar.gz"
        try:
            with urllib.request.urlopen(archive_url) as response, archive_path.open("wb") as archive_file:
                shutil.copyfileobj(response, archive_file)
        except OSError as error:
            raise OSError(
                f"could not download the sentence encoder from {archive_url} ({error}); on a machine without "
                "network, download and unpack it elsewhere and pass the SavedModel folder as the handle"
            ) from error
        unpacked = Path(scratch) / "module"
        with tarfile.open(archive_path) as archive:
            if hasattr(tarfile, "data_filter"):
                archive.extractall(unpacked, filter="data")
            else:
                archive.extractall(unpacked)  # Python < 3.10.12 has no extraction filters
        if not (unpacked / "saved_model.pb").is_file():
            raise ValueError(
                f"{archive_url} did not unpack into a SavedModel (no saved_model.pb at its top level)"
            )
        if not module_dir.exists():
            os.replace(unpacked, module_dir)
    return module_dir


def _load_with_tensorflow_hub(url: str) -> Any | None:
    """The module at ``url`` through tensorflow_hub (its own download cache), or None where it is not installed."""
    try:
        import tensorflow_hub as hub
    except ImportError:
        return None
    return hub.load(url)


def load_universal_sentence_encoder(
    handle: str | Path = DEFAULT_SENTENCE_ENCODER, download_dir: str | Path | None = None
) -> EncodeFn:
    """Loads a sentence-encoder SavedModel (a TF-Hub URL or a local folder) as an `EncodeFn`.

    ``download_dir`` holds modules downloaded without ``tensorflow_hub`` (default: ``default_cache_dir()/modules``).
    """
    tf = import_tensorflow()
    handle_text = str(handle)
    local_dir = Path(handle_text).expanduser()
    if local_dir.is_dir():
        module = tf.saved_model.load(str(local_dir))
    elif re.match(r"^(https?|file)://", handle_text):
        module = _load_with_tensorflow_hub(handle_text) if handle_text.startswith("http") else None
        if module is None:
            modules_dir = Path(download_dir) if download_dir is not None else default_cache_dir() / "modules"
            module = tf.saved_model.load(str(_download_compressed_module(handle_text, modules_dir)))
    else:
        raise FileNotFoundError(
            f"sentence encoder {handle_text!r} is neither a local SavedModel folder nor a URL; pass a TF-Hub URL "
            f"such as {DEFAULT_SENTENCE_ENCODER!r} or the folder of a downloaded copy"
        )

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(module(tf.constant(list(texts), dtype=tf.string)), dtype=np.float32)

    return encode


class SentenceEncoder:
    """Instructions -> (N, 512) float32 embeddings, computed once per instruction and kept on disk.

    Args:
        handle: TF-Hub URL or local SavedModel folder of the encoder; also names the cache file.
        cache_dir: folder of the cache (default `default_cache_dir()`); a ``<handle>.json`` file lives there.
        encode_fn: encoder to call on cache misses instead of loading ``handle`` (e.g. a stand-in in tests).
        embedding_dim: width of an embedding.
    """

    def __init__(
        self,
        handle: str | Path = DEFAULT_SENTENCE_ENCODER,
        cache_dir: str | Path | None = None,
        encode_fn: EncodeFn | None = None,
        embedding_dim: int = EMBEDDING_DIM,
    ) -> None:
        local_dir = Path(handle).expanduser()
        self.handle = str(local_dir.resolve()) if local_dir.is_dir() else str(handle)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.cache_path = self.cache_dir / f"{_file_stem(self.handle)}.json"
        self.embedding_dim = embedding_dim
        self._encode_fn = encode_fn
        self._embeddings = self._read_cache()

    def __call__(self, instructions: Sequence[str]) -> np.ndarray:
        instructions = [str(text) for text in instructions]
        missing = [text for text in dict.fromkeys(instructions) if text not in self._embeddings]
        if missing:
            self._embed_and_store(missing)
        if not instructions:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return np.stack([self._embeddings[text] for text in instructions])

    def _embed_and_store(self, texts: list[str]) -> None:
        if self._encode_fn is None:
            self._encode_fn = load_universal_sentence_encoder(self.handle, self.cache_dir / "modules")
        vectors = np.asarray(self._encode_fn(texts), dtype=np.float32)
        if vectors.shape != (len(texts), self.embedding_dim):
            raise ValueError(
                f"the sentence encoder returned shape {vectors.shape} for {len(texts)} texts; expected "
                f"({len(texts)}, {self.embedding_dim}). Use a {self.embedding_dim}-d encoder (RT-1 takes the "
                "Universal Sentence Encoder large v5) or set embedding_dim"
            )
        # Merge with entries another process may have written since this one read the file.
        self._embeddings = {**self._read_cache(), **self._embeddings, **dict(zip(texts, vectors))}
        self._write_cache()

    def _read_cache(self) -> dict[str, np.ndarray]:
        if not self.cache_path.is_file():
            return {}
        try:
            stored = json.loads(self.cache_path.read_text())
            embeddings = {
                text: np.asarray(vector, dtype=np.float32) for text, vector in stored["embeddings"].items()
            }
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"the sentence-embedding cache {self.cache_path} is unreadable ({error}); delete it and it will "
                "be rebuilt"
            ) from error
        wrong_width = [text for text, vector in embeddings.items() if vector.shape != (self.embedding_dim,)]
        if wrong_width:
            raise ValueError(
                f"{self.cache_path} holds embeddings that are not {self.embedding_dim}-d (e.g. for "
                f"{wrong_width[0]!r}); delete the file or use another cache_dir"
            )
        return embeddings

    def _write_cache(self) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "encoder": self.handle,
            "embedding_dim": self.embedding_dim,
            "embeddings": {text: vector.tolist() for text, vector in self._embeddings.items()},
        }
        with tempfile.NamedTemporaryFile("w", dir=self.cache_dir, suffix=".tmp", delete=False) as scratch:
            json.dump(payload, scratch)
        os.replace(scratch.name, self.cache_path)
