"""The material styles: instruction text, exemplar photos, and where each style's specialist lives.

Styles are data, read from ``configs/styles.yaml`` at the repository root. When that file is not next
to the package (a non-editable install copies only the Python package), a built-in table with the
same styles and the texture presets' default recipes is used instead.

Folders are resolved against a data root: the ``root`` argument, else ``$SIM2REAL_EDIT_HOME``, else the
YAML's ``root``, else ``~/.cache/sim2real_edit``. Exemplars live in ``<root>/exemplars/<style>`` and
specialists in ``<root>/specialists/<style>`` unless the YAML says otherwise. A style whose exemplar
folder holds no images gets a procedural default set written there on first use; user photos put in
the folder are always preferred over the procedural images.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from sim2real_edit.outputs import check_writable_folder
from sim2real_edit.textures import TEXTURE_PRESETS, generate_texture

logger = logging.getLogger(__name__)

HOME_ENV_VAR = "SIM2REAL_EDIT_HOME"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
PROCEDURAL_PREFIX = "procedural_"
DEFAULT_EXEMPLAR_COUNT = 5
STYLES_YAML = Path(__file__).resolve().parents[1] / "configs" / "styles.yaml"

_BUILTIN_MATERIALS = {
    "wood": "wood",
    "gold": "gold",
    "leather": "leather",
    "stone": "stone",
    "steel": "steel",
    "white_marble": "white marble",
    "black_marble": "black marble",
}
_BUILTIN_ALIASES = {"marble": "white_marble"}


def default_home() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "sim2real_edit"


@dataclass(frozen=True)
class Style:
    name: str
    material: str
    exemplar_dir: Path
    specialist_dir: Path
    texture: str
    texture_params: dict[str, Any] = field(default_factory=dict)

    @property
    def instruction(self) -> str:
        return f"make the cupboard out of {self.material}"

    def has_exemplars(self) -> bool:
        """Whether the exemplar folder holds images (else the first use writes the procedural set there)."""
        return bool(_image_files(self.exemplar_dir))

    def exemplar_paths(self, generate_if_missing: bool = True, size: int = 256) -> list[Path]:
        """The exemplar image files, sorted by name: the user's photos if any, else the procedural set.

        With no images in the folder, ``generate_if_missing`` writes the procedural default set there
        (at ``size`` pixels); otherwise a ``FileNotFoundError`` says where to put photos.
        """
        if generate_if_missing:
            self.exemplar_dir.mkdir(parents=True, exist_ok=True)
        # Held while listing and while writing the default set: processes that start together (training
        # ranks, evaluation workers) never list a set that another one is halfway through writing.
        with _folder_lock(self.exemplar_dir):
            return self._exemplar_paths_unlocked(generate_if_missing, size)

    def _exemplar_paths_unlocked(self, generate_if_missing: bool, size: int) -> list[Path]:
        images = _image_files(self.exemplar_dir)
        photos = [path for path in images if not path.name.startswith(PROCEDURAL_PREFIX)]
        if photos:
            return photos
        if images:
            return images
        if not generate_if_missing:
            raise FileNotFoundError(
                f"No exemplar images for style {self.name!r} in {self.exemplar_dir}. Put ~5 photos of "
                f"{self.material} there ({', '.join(IMAGE_SUFFIXES)}), or write the procedural default set "
                f"with `python scripts/make_exemplars.py --style {self.name} --out {self.exemplar_dir}`."
            )
        written = self.write_default_exemplars(size=size)
        logger.warning(
            "Style %r had no exemplar images; wrote %d procedural %s textures to %s. Real photos give "
            "real results: put ~5 photos of %s in that folder and they will be used instead.",
            self.name,
            len(written),
            self.material,
            self.exemplar_dir,
            self.material,
        )
        return written

    def exemplars(self, generate_if_missing: bool = True, size: int | None = 256) -> list[np.ndarray]:
        """Exemplar images as uint8 HWC RGB, centre-cropped to a square and resized to ``size``.

        ``size=None`` keeps each image as it is.
        """
        paths = self.exemplar_paths(generate_if_missing, size or 256)
        return [_load_rgb(path, size) for path in paths]

    def exemplar_hashes(self) -> dict[str, str]:
        """SHA-256 of each exemplar file's bytes, by file name (for model cards)."""
        return {
            path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in self.exemplar_paths(generate_if_missing=False)
        }

    def write_default_exemplars(
        self,
        out_dir: str | Path | None = None,
        count: int = DEFAULT_EXEMPLAR_COUNT,
        size: int = 256,
        seed: int = 0,
        progress: bool = False,
    ) -> list[Path]:
        """Write ``count`` procedural textures named ``procedural_XX.png`` to ``out_dir`` or exemplar_dir."""
        folder = Path(out_dir) if out_dir is not None else self.exemplar_dir
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for index, texture_seed in enumerate(
            tqdm(
                self.procedural_exemplar_seeds(count, seed),
                desc=f"{self.name} exemplars",
                disable=not progress,
            )
        ):
            image = self.procedural_texture((size, size), texture_seed)
            path = folder / f"{PROCEDURAL_PREFIX}{index:02d}.png"
            # Written under another name and renamed: a reader (another training process) never sees half
            # a file, and processes writing the same default set at once just replace identical files.
            partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
            Image.fromarray(image).save(partial, format="PNG")
            partial.replace(path)
            paths.append(path)
        return paths

    def trained_specialist_dir(self) -> Path:
        """The folder of this style's trained specialist; raises if it has not been trained yet."""
        if not self.specialist_dir.is_dir() or not any(self.specialist_dir.iterdir()):
            raise FileNotFoundError(
                f"No trained specialist for style {self.name!r} in {self.specialist_dir}. Train one (GPU, real "
                f"models) with `python scripts/collect_frames.py --out frames/ && python "
                f"scripts/train_specialist.py --style {self.name} --frames frames/`, which saves it there, or set "
                f"{HOME_ENV_VAR} to the data root that holds specialists/{self.name}. For a CPU demo without "
                "trained models use the tiny preset: gym.make(..., preset='tiny'), "
                "scripts/eval_policies.py --preset tiny."
            )
        return self.specialist_dir

    def procedural_texture(self, size: tuple[int, int], seed: int) -> np.ndarray:
        """A procedural image of this style's material (uint8 HWC RGB, ``size`` = (height, width)): the
        texture preset with this style's recipe, from ``seed``."""
        return generate_texture(self.texture, size, seed, **self.texture_params)

    def procedural_exemplar_seeds(self, count: int = DEFAULT_EXEMPLAR_COUNT, seed: int = 0) -> list[int]:
        """The texture seeds of the procedural exemplar set `write_default_exemplars` writes."""
        # Mixing in the style name keeps styles that share a generator (the two marbles) from sharing
        # vein layouts.
        return [zlib.crc32(f"{self.name}:{seed}:{index}".encode()) for index in range(count)]


@dataclass(frozen=True)
class StyleRegistry:
    styles: dict[str, Style]
    aliases: dict[str, str]
    root: Path
    source: Path | None = None

    @classmethod
    def load(cls, path: str | Path | None = None, root: str | Path | None = None) -> StyleRegistry:
        """Read the styles YAML (default: ``configs/styles.yaml``, else the built-in table)."""
        if path is not None:
            source: Path | None = Path(path)
            if not source.is_file():
                raise FileNotFoundError(f"Styles file {source} does not exist; pass an existing YAML file.")
        elif STYLES_YAML.is_file():
            source = STYLES_YAML
        else:
            source = None
            logger.debug("%s not found (non-editable install); using the built-in style table.", STYLES_YAML)
        if source is None:
            config: dict[str, Any] = {
                "styles": {name: {"material": material} for name, material in _BUILTIN_MATERIALS.items()},
                "aliases": dict(_BUILTIN_ALIASES),
            }
        else:
            config = yaml.safe_load(source.read_text()) or {}
        return cls.from_config(config, root=root, source=source)

    @classmethod
    def from_config(
        cls, config: dict[str, Any], root: str | Path | None = None, source: Path | None = None
    ) -> StyleRegistry:
        where = source or "the style config"
        if not config.get("styles"):
            raise ValueError(f"{where} defines no styles; add a `styles:` mapping of name -> settings.")
        data_root = _resolve_root(root, config.get("root"), source)
        styles = {}
        for name, settings in config["styles"].items():
            settings = settings or {}
            if "material" not in settings:
                raise ValueError(
                    f"Style {name!r} in {where} has no `material`; add the instruction's material."
                )
            texture = settings.get("texture") or {}
            preset = texture.get("preset", name)
            if preset not in TEXTURE_PRESETS:
                raise ValueError(
                    f"Style {name!r} in {where} uses texture preset {preset!r}; choose one of "
                    f"{sorted(TEXTURE_PRESETS)}."
                )
            styles[name] = Style(
                name=name,
                material=settings["material"],
                exemplar_dir=_under(data_root, settings.get("exemplar_dir", f"exemplars/{name}")),
                specialist_dir=_under(data_root, settings.get("specialist_dir", f"specialists/{name}")),
                texture=preset,
                texture_params=dict(texture.get("params") or {}),
            )
        aliases = dict(config.get("aliases") or {})
        for alias, target in aliases.items():
            if target not in styles:
                raise ValueError(f"Alias {alias!r} in {where} points to unknown style {target!r}.")
        return cls(styles=styles, aliases=aliases, root=data_root, source=source)

    @property
    def names(self) -> list[str]:
        return list(self.styles)

    def get(self, name: str) -> Style:
        if not isinstance(name, str):
            raise TypeError(f"a style is given by its name, e.g. 'wood'; got {name!r}. Known styles: "
                             f"{', '.join(self.names)}")
        key = name.strip().lower().replace(" ", "_").replace("-", "_")
        key = self.aliases.get(key, key)
        if key not in self.styles:
            alias_text = ", ".join(f"{alias} -> {target}" for alias, target in self.aliases.items())
            raise ValueError(
                f"Unknown style {name!r}. Known styles: {', '.join(self.names)}"
                + (f" (aliases: {alias_text})." if alias_text else ".")
            )
        return self.styles[key]

    def __contains__(self, name: object) -> bool:
        try:
            self.get(str(name))
        except ValueError:
            return False
        return True

    def __iter__(self) -> Iterator[Style]:
        return iter(self.styles.values())

    def __len__(self) -> int:
        return len(self.styles)


def tiny_home(root: str | Path | None = None) -> Path:
    """The tiny (CPU) preset's own namespace, ``<data root>/tiny``: its base model, policies, specialists and
    real-world table live there, so that nothing a full-size run looks up is ever a tiny artefact."""
    return StyleRegistry.load(root=root).root / "tiny"


def preset_specialist_dir(style: str, preset: str = "full", root: str | Path | None = None) -> Path:
    """Where the specialist of `style` lives for `preset`: the registry's folder, or for the tiny preset
    ``<tiny home>/specialists/<style>``, which no full-size run ever reads."""
    chosen = get_style(style, root)
    return tiny_home(root) / "specialists" / chosen.name if preset == "tiny" else chosen.specialist_dir


def check_data_root(root: str | Path | None = None) -> Path:
    """The data root, checked before a command's work: it must be a folder (or creatable) that takes writes,
    for commands that write there (the tiny preset's base, policies and specialists; default exemplars)."""
    data_root = StyleRegistry.load(root=root).root
    source = f" (${HOME_ENV_VAR})" if root is None and os.environ.get(HOME_ENV_VAR) else ""
    check_writable_folder(data_root, what=f"the data root {data_root}{source}",
                          fix=f"set {HOME_ENV_VAR} to a writable folder (default: {default_home()})")
    return data_root


def get_style(name: str, root: str | Path | None = None) -> Style:
    """Shortcut for ``StyleRegistry.load(root=root).get(name)``."""
    return StyleRegistry.load(root=root).get(name)


def _resolve_root(root: str | Path | None, config_root: str | None, source: Path | None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(HOME_ENV_VAR):
        return Path(os.environ[HOME_ENV_VAR]).expanduser()
    if config_root:
        config_path = Path(config_root).expanduser()
        if source is not None and not config_path.is_absolute():
            return source.resolve().parent / config_path
        return config_path
    return default_home()


def _under(root: Path, folder: str) -> Path:
    path = Path(folder).expanduser()
    return path if path.is_absolute() else root / path


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive inter-process lock on `folder` (a no-op where no lock file can be made, e.g. a read-only
    tree: nothing can be written there, so nothing can be half-written either)."""
    try:
        # Beside the folder, not in it: the folder holds only the user's images.
        handle = open(folder.parent / f".{folder.name}.lock", "a")  # noqa: SIM115 (closed below)
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_rgb(path: Path, size: int | None) -> np.ndarray:
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    if size is not None:
        image = ImageOps.fit(image, (size, size), method=Image.BICUBIC)
    return np.asarray(image, dtype=np.uint8)
