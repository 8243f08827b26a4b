"""Procedural material textures: the default style exemplars when no real photos are available.

Every generator is vectorised numpy and deterministic per seed. The looks are set by small frozen
recipes (colours as 0..1 RGB, feature scales in cycles per image side) so that a style's
configuration can override any of them. These images stand in for photos; real photos of the
material give a specialist a far better idea of what the material looks like.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Color = tuple[float, float, float]


@dataclass(frozen=True)
class WoodRecipe:
    """Flat-sawn board: arched growth rings around an off-board log axis, plus fibres along the grain."""

    light: Color = (0.78, 0.55, 0.32)
    dark: Color = (0.47, 0.27, 0.12)
    ring_count: float = 11.0
    ring_sharpness: float = 2.5
    warp: float = 0.9
    fibre_contrast: float = 0.2


@dataclass(frozen=True)
class MarbleRecipe:
    """Turbulence-distorted sine veins over a cloudy base."""

    base: Color = (0.92, 0.91, 0.89)
    cloud: Color = (0.80, 0.80, 0.80)
    vein: Color = (0.38, 0.38, 0.42)
    vein_count: float = 2.0
    turbulence: float = 5.0
    vein_thinness: float = 14.0
    secondary_veins: float = 0.6


@dataclass(frozen=True)
class MetalRecipe:
    """Brushed metal: streaks along x and a broad specular band across the sheet."""

    shadow: Color = (0.28, 0.30, 0.33)
    base: Color = (0.58, 0.60, 0.63)
    highlight: Color = (0.92, 0.93, 0.95)
    streak_contrast: float = 0.2
    specular_strength: float = 0.6
    specular_width: float = 0.22


@dataclass(frozen=True)
class LeatherRecipe:
    """Pebble grain: raised cells separated by creases, lit from the top left, with mottled dye."""

    base: Color = (0.40, 0.22, 0.11)
    crease: Color = (0.16, 0.08, 0.04)
    cells: int = 30
    relief: float = 0.4
    mottle: float = 0.18


@dataclass(frozen=True)
class StoneRecipe:
    """Granite: mineral speckles of several colours over a slowly varying matrix."""

    matrix: Color = (0.56, 0.55, 0.53)
    dark_mineral: Color = (0.14, 0.14, 0.15)
    light_mineral: Color = (0.86, 0.84, 0.82)
    warm_mineral: Color = (0.66, 0.52, 0.46)
    grain: float = 70.0
    dark_fraction: float = 0.22
    light_fraction: float = 0.16
    warm_fraction: float = 0.10


Recipe = WoodRecipe | MarbleRecipe | MetalRecipe | LeatherRecipe | StoneRecipe

TEXTURE_PRESETS: dict[str, Recipe] = {
    "wood": WoodRecipe(),
    "gold": MetalRecipe(
        shadow=(0.42, 0.26, 0.05),
        base=(0.80, 0.58, 0.18),
        highlight=(1.00, 0.89, 0.55),
        streak_contrast=0.12,
    ),
    "leather": LeatherRecipe(),
    "stone": StoneRecipe(),
    "steel": MetalRecipe(),
    "white_marble": MarbleRecipe(),
    "black_marble": MarbleRecipe(
        base=(0.05, 0.05, 0.06),
        cloud=(0.13, 0.13, 0.14),
        vein=(0.88, 0.87, 0.84),
        vein_count=1.5,
        vein_thinness=30.0,
        secondary_veins=0.8,
    ),
}


def texture_names() -> list[str]:
    return sorted(TEXTURE_PRESETS)


def generate_texture(
    material: str, size: int | tuple[int, int] = (256, 256), seed: int = 0, **overrides: object
) -> np.ndarray:
    """Render a procedural texture of ``material`` (one of ``texture_names()``) as uint8 HWC RGB.

    ``size`` is ``(height, width)`` or one int for a square; ``overrides`` replace fields of the
    material's preset recipe (e.g. ``light=(0.9, 0.7, 0.5)`` for a paler wood).
    """
    key = material.strip().lower().replace(" ", "_").replace("-", "_")
    if key not in TEXTURE_PRESETS:
        raise ValueError(f"Unknown texture material {material!r}; choose one of {texture_names()}.")
    recipe = TEXTURE_PRESETS[key]
    if overrides:
        valid = [field.name for field in dataclasses.fields(recipe)]
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise ValueError(
                f"Unknown parameters {unknown} for the {key!r} texture; valid parameters are {valid}."
            )
        recipe = dataclasses.replace(recipe, **_as_recipe_values(overrides))
    height, width = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    rgb = _RENDERERS[type(recipe)](recipe, (height, width), rng)
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def _as_recipe_values(overrides: dict[str, object]) -> dict[str, object]:
    # Colours arrive as lists from YAML; recipes hold tuples so they stay hashable and frozen.
    return {key: tuple(value) if isinstance(value, list) else value for key, value in overrides.items()}


# --- noise -----------------------------------------------------------------------------------------


def _value_noise(shape: tuple[int, int], cells: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Smooth random field in [0, 1] with ``cells = (rows, cols)`` lattice cells across the image."""
    height, width = shape
    cells_y, cells_x = max(cells[0], 1e-3), max(cells[1], 1e-3)
    lattice = rng.random((int(np.ceil(cells_y)) + 2, int(np.ceil(cells_x)) + 2), dtype=np.float32)
    y = np.arange(height, dtype=np.float32) * (cells_y / height) + rng.random(dtype=np.float32)
    x = np.arange(width, dtype=np.float32) * (cells_x / width) + rng.random(dtype=np.float32)
    y0, x0 = y.astype(np.int64), x.astype(np.int64)
    fy, fx = _smoothstep(y - y0), _smoothstep(x - x0)
    # Separable interpolation: along x for every lattice row, then along y.
    along_x = lattice[:, x0] * (1.0 - fx) + lattice[:, x0 + 1] * fx
    return along_x[y0] * (1.0 - fy)[:, None] + along_x[y0 + 1] * fy[:, None]


def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def _fbm(
    shape: tuple[int, int],
    cells: tuple[float, float],
    rng: np.random.Generator,
    octaves: int = 5,
    persistence: float = 0.5,
    turbulent: bool = False,
) -> np.ndarray:
    """Fractal sum of value noise, normalised to [0, 1]; ``turbulent`` sums |noise| (sharp creases)."""
    total = np.zeros(shape, dtype=np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        scale = 2.0**octave
        layer = _value_noise(shape, (cells[0] * scale, cells[1] * scale), rng)
        total += amplitude * (np.abs(2.0 * layer - 1.0) if turbulent else layer)
        norm += amplitude
        amplitude *= persistence
    return total / norm


def _worley(shape: tuple[int, int], cells: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the nearest and second-nearest jittered feature point, in cell units."""
    height, width = shape
    points = rng.random((cells, cells, 2), dtype=np.float32)
    y = (np.arange(height, dtype=np.float32) + 0.5) * (cells / height)
    x = (np.arange(width, dtype=np.float32) + 0.5) * (cells / width)
    cell_y, cell_x = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    distances = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            neighbour_y = cell_y + dy
            neighbour_x = cell_x + dx
            point = points[neighbour_y[:, None] % cells, neighbour_x[None, :] % cells]
            offset_y = neighbour_y[:, None] + point[..., 0] - y[:, None]
            offset_x = neighbour_x[None, :] + point[..., 1] - x[None, :]
            distances.append(np.sqrt(offset_y**2 + offset_x**2))
    nearest_two = np.partition(np.stack(distances), 1, axis=0)[:2]
    return nearest_two[0], nearest_two[1]


def _mix(low: Color, high: Color, t: np.ndarray) -> np.ndarray:
    low_rgb, high_rgb = np.asarray(low, np.float32), np.asarray(high, np.float32)
    return low_rgb + (high_rgb - low_rgb) * t[..., None]


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1) along y and x, broadcastable to ``shape``."""
    height, width = shape
    y = ((np.arange(height, dtype=np.float32) + 0.5) / height)[:, None]
    x = ((np.arange(width, dtype=np.float32) + 0.5) / width)[None, :]
    return y, x


# --- materials -------------------------------------------------------------------------------------


def _render_wood(recipe: WoodRecipe, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    height, width = shape
    y, x = _grid(shape)
    # The log axis runs along y, just behind the board and slightly tilted, so the rings cut by the
    # board surface form the long arches of flat-sawn lumber.
    axis_x = rng.uniform(0.3, 0.7)
    depth = rng.uniform(0.08, 0.25) + rng.uniform(0.15, 0.35) * y
    wobble = recipe.warp * 0.06 * (_fbm(shape, (2.0, 3.0), rng, octaves=4) - 0.5)
    ring_position = np.sqrt((x - axis_x + wobble) ** 2 + depth**2) * recipe.ring_count * 2.0
    ring_position = ring_position + recipe.warp * _fbm(shape, (3.0, 4.0), rng, octaves=3)
    # Earlywood fades slowly into the dark latewood band that closes each ring; rings differ in tone.
    ring_phase = ring_position % 1.0
    latewood = ring_phase**recipe.ring_sharpness * np.clip((1.0 - ring_phase) / 0.06, 0.0, 1.0)
    ring_tone = rng.random(64, dtype=np.float32)[ring_position.astype(np.int64) % 64] - 0.5
    fibres = _fbm(shape, (2.0, width / 3.0), rng, octaves=2) - 0.5
    pores = _value_noise(shape, (height / 6.0, width / 1.5), rng) > 0.82
    figure = _fbm(shape, (3.0, 3.0), rng, octaves=4) - 0.5
    tone = (
        latewood * 0.7
        + 0.3 * ring_tone
        + 2.0 * recipe.fibre_contrast * fibres
        + 0.12 * pores * (0.3 + latewood)
        + 0.25 * figure
    )
    return _mix(recipe.light, recipe.dark, np.clip(tone, 0.0, 1.0))


def _render_marble(recipe: MarbleRecipe, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    y, x = _grid(shape)
    angle = rng.uniform(0.0, np.pi)
    direction = x * np.cos(angle) + y * np.sin(angle)
    turbulence = _fbm(shape, (1.5, 1.5), rng, octaves=7, turbulent=True)
    closeness = 1.0 - np.abs(
        np.sin(2.0 * np.pi * recipe.vein_count * direction + recipe.turbulence * turbulence)
    )
    # Veins fade in and out along their length instead of running at one strength.
    strength = np.clip(1.8 * _fbm(shape, (2.0, 2.0), rng, octaves=3) - 0.45, 0.1, 1.0)
    veins = strength * closeness**recipe.vein_thinness
    halo = 0.25 * strength * closeness ** (recipe.vein_thinness / 6.0)
    # A network of hairline veins: the zero crossings of a fractal noise, which branch and wander.
    network = 1.0 - np.abs(2.0 * _fbm(shape, (2.5, 2.5), rng, octaves=6) - 1.0)
    hairlines = recipe.secondary_veins * network ** (recipe.vein_thinness * 4.0)
    clouds = _fbm(shape, (3.0, 3.0), rng, octaves=5)
    base = _mix(recipe.base, recipe.cloud, np.clip((clouds - 0.4) * 2.0, 0.0, 1.0))
    vein_amount = np.clip(veins + halo + hairlines, 0.0, 1.0)
    return base + (np.asarray(recipe.vein, np.float32) - base) * vein_amount[..., None]


def _render_metal(recipe: MetalRecipe, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    height = shape[0]
    y, x = _grid(shape)
    # Brushing: noise that changes every row or two but only slowly along a row.
    streaks = (
        0.45 * _value_noise(shape, (height / 1.0, 4.0), rng)
        + 0.35 * _value_noise(shape, (height / 3.0, 8.0), rng)
        + 0.20 * _value_noise(shape, (height / 12.0, 2.0), rng)
    ) - 0.5
    # Grooves along x spread a light's reflection across them, into a soft band running along y.
    centre = rng.uniform(0.2, 0.8)
    tilt = rng.uniform(-0.3, 0.3)
    band = np.exp(-(((x - centre - tilt * (y - 0.5)) / recipe.specular_width) ** 2))
    environment = _fbm(shape, (1.0, 2.5), rng, octaves=3) - 0.5
    shade = np.clip(0.4 + 0.5 * environment + recipe.streak_contrast * 2.0 * streaks, 0.0, 1.0)
    color = np.where(
        (shade < 0.5)[..., None],
        _mix(recipe.shadow, recipe.base, shade * 2.0),
        _mix(recipe.base, recipe.highlight, (shade - 0.5) * 2.0),
    )
    sheen = recipe.specular_strength * band * (1.0 + 0.6 * streaks)
    return color + (np.asarray(recipe.highlight, np.float32) - color) * sheen[..., None]


def _render_leather(recipe: LeatherRecipe, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    nearest, second = _worley(shape, recipe.cells, rng)
    # Each pebble is a rounded dome that falls off into a narrow crease where two cells meet.
    edge_distance = second - nearest
    dome = np.sqrt(np.clip(edge_distance / 0.35, 0.0, 1.0))
    crease = 1.0 - np.clip(edge_distance / 0.08, 0.0, 1.0)
    pores = _value_noise(shape, (shape[0] / 2.0, shape[1] / 2.0), rng)
    height_field = dome + 0.08 * pores
    grad_y, grad_x = np.gradient(height_field * recipe.cells * recipe.relief)
    y, x = _grid(shape)
    sheen = 0.25 * np.exp(-(((x + y - rng.uniform(0.6, 1.4)) / 0.5) ** 2))
    light = np.clip(0.85 - 0.3 * (grad_y + grad_x), 0.45, 1.3) + sheen
    mottle = recipe.mottle * (_fbm(shape, (4.0, 4.0), rng, octaves=5) - 0.5) * 2.0
    color = _mix(recipe.base, recipe.crease, 0.7 * crease)
    return color * (light + mottle)[..., None]


def _render_stone(recipe: StoneRecipe, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    clouds = _fbm(shape, (2.5, 2.5), rng, octaves=5)
    # The matrix between crystals drifts between darker and lighter patches over the slab.
    drift = _mix(recipe.dark_mineral, recipe.light_mineral, 0.35 + 0.3 * clouds)
    color = 0.5 * np.asarray(recipe.matrix, np.float32) + 0.5 * drift
    color = color * (0.9 + 0.2 * _value_noise(shape, (shape[0] / 2.0, shape[1] / 2.0), rng))[..., None]
    # Crystals of mixed size: a coarse and a fine grain layer per mineral, each covering its fraction.
    for mineral, fraction in (
        (recipe.warm_mineral, recipe.warm_fraction),
        (recipe.light_mineral, recipe.light_fraction),
        (recipe.dark_mineral, recipe.dark_fraction),
    ):
        crystals = 0.6 * _fbm(shape, (recipe.grain * 0.5,) * 2, rng, octaves=2) + 0.4 * _value_noise(
            shape, (recipe.grain * 1.5,) * 2, rng
        )
        threshold = np.quantile(crystals, 1.0 - fraction)
        coverage = np.clip((crystals - threshold) * 40.0, 0.0, 1.0)
        color = color + (np.asarray(mineral, np.float32) - color) * coverage[..., None]
    return color


_RENDERERS: dict[type, Callable[[Recipe, tuple[int, int], np.random.Generator], np.ndarray]] = {
    WoodRecipe: _render_wood,
    MarbleRecipe: _render_marble,
    MetalRecipe: _render_metal,
    LeatherRecipe: _render_leather,
    StoneRecipe: _render_stone,
}
