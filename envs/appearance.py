"""The look of the drawer stand-in: ``"sim"`` (the simulator) or ``"real"`` (a miniature real world).

The CPU experiment needs a "real world" whose frames differ from the simulator's in the way SIMPLER's
frames differ from the robot's camera, so that a policy trained on real frames can be measured in the real
world, then in the simulator, then in the simulator seen through an editing specialist. The stand-in
(`envs.standin.DrawerStandIn`, NOT SIMPLER) is the simulator; ``appearance="real"`` renders the same scene
as its real world. THE REAL WORLD IS DESIGNED A PRIORI: it was fixed, as written here, before any policy was
trained, and is never changed to suit policy results.

Design rationale (decided before training, not tuned):

- **Same scene, same physics.** Geometry, robot, camera pose and intrinsics, background, dynamics and the
  success rule are the simulator's. In SIMPLER's visual matching the background already *is* the real
  photograph (the overlay), so what separates sim from real there is mostly the objects' materials and the
  camera; here too.
- **The material.** The real cabinet is white marble: the style ``white_marble`` of ``configs/styles.yaml``
  (its texture preset and recipe, `sim2real_edit.textures`), from a held-out seed that none of the style's
  procedural exemplars uses (`real_cabinet_texture_seed`; any other style can be the real world's material,
  ``DrawerStandIn(real_material=...)``, cut the same way from its own held-out seed) - the real cabinet is another piece of the same material, so a specialist
  trained on the exemplars has never seen this piece. The texture covers the cabinet body and the drawers'
  front and side faces, mapped in each link's object frame (planar per face: x-faces by (y, z), y-faces by
  (x, z), z-faces by (x, y); 4 mm per texel), so it slides with its drawer; every link is a different part of
  the slab. The simulator's Lambertian shading factor of each face multiplies the texture. Handles, the
  dark cavities and the trays' insides keep the simulator's colours. Texels are averaged over the pixel's
  footprint (a box-filtered mip level per pixel), as a camera integrates light over its pixel.
- **The lighting.** A mild warm cast over the whole frame (RGB x (1.04, 1.00, 0.94)) and a soft vignette
  (quadratic in the distance from the image centre, 8% darker in the corners).
- **The camera.** A slight optical blur (Gaussian, sigma 0.6 px at SIMPLER's 640 px width, scaled with the
  image width), then Gaussian sensor noise (sigma 3 of 255) drawn afresh for every frame from the episode's
  reset seed and the step, so an episode is reproducible and frames are not. (After the first trial runs
  the noise sampler was swapped for a faster one of the same distribution, see `_NORMAL_QUANTILES`.)

The segmentation (and so the cabinet masks) is the simulator's: appearance changes pixels, never geometry.

Two more looks serve the experiment's bounds (they are measurement instruments, not simulators to evaluate):

- ``"ceiling"``: the simulator's frame with the real world's pixels inside the cabinet's exact mask - the real
  cabinet, lit and seen by the real camera in the same state, composited into the sim frame. No cabinet editor
  can do better than this, so its agreement with the real world is the ceiling of every edited domain.
- the real world with another ``noise_stream``: the same episodes under fresh sensor-noise draws. Its
  disagreement with stream 0 is what sampling noise alone produces: the floor under every comparison.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np

APPEARANCES: tuple[str, ...] = ("sim", "real", "ceiling")
#: The style whose material the real cabinet is made of (configs/styles.yaml) unless another is chosen.
REAL_CABINET_STYLE = "white_marble"


def real_cabinet_texture_seed(style: str) -> int:
    """Seed of the real cabinet's texture in the material of ``style`` (a canonical style name); held out from
    that style's procedural exemplar seeds (checked by `real_cabinet_material`)."""
    return zlib.crc32(f"{style}:miniature-real-world-cabinet".encode())


#: Seed of the white-marble real cabinet's texture.
REAL_CABINET_TEXTURE_SEED = real_cabinet_texture_seed(REAL_CABINET_STYLE)
TEXTURE_SIZE = 256
METRES_PER_TEXEL = 0.004
_MIP_LEVELS = 5  # 4, 8, 16, 32, 64 mm per texel


def check_appearance(appearance: str) -> str:
    if appearance not in APPEARANCES:
        raise ValueError(
            f"unknown appearance {appearance!r}; choose 'sim' (the simulator), 'real' (the miniature real world) "
            "or 'ceiling' (the simulator with the real cabinet's pixels inside the cabinet mask)"
        )
    return appearance


def check_noise_stream(noise_stream: int) -> int:
    if isinstance(noise_stream, bool) or not isinstance(noise_stream, (int, np.integer)) or noise_stream < 0:
        raise ValueError(f"noise_stream must be an integer >= 0 (0: the real world's own draws), got {noise_stream!r}")
    return int(noise_stream)


class CabinetMaterial:
    """Paints the real cabinet's faces: a marble texture in each link's object frame, times the face's
    Lambertian shading factor."""

    def __init__(
        self,
        texture: np.ndarray,
        link_ids: tuple[int, ...],
        metres_per_texel: float = METRES_PER_TEXEL,
        layout_seed: int = REAL_CABINET_TEXTURE_SEED,
    ):
        texture = np.asarray(texture, dtype=np.float32)
        if texture.ndim != 3 or texture.shape[2] != 3 or texture.shape[0] != texture.shape[1]:
            raise ValueError(f"the cabinet texture must be a square (S, S, 3) image, got {texture.shape}")
        self.metres_per_texel = metres_per_texel
        # Box-filtered mip levels: level k averages 2^k x 2^k texels.
        self.levels = [texture]
        while len(self.levels) < _MIP_LEVELS and self.levels[-1].shape[0] % 2 == 0:
            previous = self.levels[-1]
            size = previous.shape[0] // 2
            self.levels.append(previous.reshape(size, 2, size, 2, 3).mean(axis=(1, 3)))
        # Each link is cut from another part of the slab (a fixed texel offset per link, from ``layout_seed``).
        rng = np.random.default_rng(layout_seed)
        self.link_offsets = {link_id: rng.integers(0, texture.shape[0], size=2) for link_id in link_ids}

    def paint(
        self, points: np.ndarray, normal_axis: int, shading: float, link_id: int, pixel_metres: np.ndarray
    ) -> np.ndarray:
        """Colours (n, 3) uint8 of face points given in their link's object frame (n, 3): ``normal_axis`` is
        the face's normal axis (0, 1, 2 = x, y, z), ``pixel_metres`` (n,) the width one pixel covers there."""
        plane_axes = {0: (1, 2), 1: (0, 2), 2: (0, 1)}[normal_axis]
        # Columns along the first plane axis, rows down the second (z up reads top to bottom).
        coordinates = np.stack([points[:, plane_axes[0]], -points[:, plane_axes[1]]], axis=1)
        texels = coordinates / self.metres_per_texel + self.link_offsets[link_id]
        level = np.clip(
            np.floor(np.log2(np.maximum(pixel_metres / self.metres_per_texel, 1.0))), 0, len(self.levels) - 1
        ).astype(np.int64)
        colours = np.empty((len(points), 3), dtype=np.float32)
        for k in np.unique(level):
            chosen = level == k
            texture = self.levels[k]
            index = np.floor(texels[chosen] / 2**k).astype(np.int64) % texture.shape[0]
            colours[chosen] = texture[index[:, 1], index[:, 0]]
        return np.clip(colours * shading, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=32)
def real_material_style(material: str) -> str:
    """The canonical name of the style ``material`` names (an alias such as ``marble`` included); an unknown
    name is refused with the known ones listed."""
    from sim2real_edit.styles import StyleRegistry

    try:
        return StyleRegistry.load().get(material).name
    except (TypeError, ValueError) as error:
        raise ValueError(f"real_material: {error}") from None


@functools.lru_cache(maxsize=4)
def real_cabinet_material(link_ids: tuple[int, ...], material: str = REAL_CABINET_STYLE) -> CabinetMaterial:
    """The real cabinet's material: a held-out piece of the style ``material``'s procedural texture (one
    object per process and material: the stand-in caches renders per material object)."""
    from sim2real_edit.styles import StyleRegistry

    style = StyleRegistry.load().get(real_material_style(material))
    seed = real_cabinet_texture_seed(style.name)
    if seed in style.procedural_exemplar_seeds():
        raise RuntimeError(
            f"the real cabinet's texture seed {seed} is one of the {style.name} exemplar seeds; the real cabinet "
            "must be held out from the exemplars - change real_cabinet_texture_seed"
        )
    texture = style.procedural_texture((TEXTURE_SIZE, TEXTURE_SIZE), seed)
    return CabinetMaterial(texture, link_ids, layout_seed=seed)


@dataclass(frozen=True)
class RealCamera:
    """Lighting and camera of the real world, applied to a rendered frame (see the module docstring)."""

    colour_cast: tuple[float, float, float] = (1.04, 1.00, 0.94)
    vignette_corner_darkening: float = 0.08
    blur_sigma_at_640: float = 0.6
    noise_sigma: float = 3.0  # of 255

    def blur_sigma(self, width: int) -> float:
        return self.blur_sigma_at_640 * width / 640

    def gain(self, height: int, width: int) -> np.ndarray:
        """Per-pixel multiplicative lighting (H, W, 3) float32: colour cast times vignette."""
        return _gain(self, height, width)

    def expose(self, rgb: np.ndarray, seed: tuple[int, ...]) -> np.ndarray:
        """The camera's frame (H, W, 3) uint8 of a rendered frame; ``seed`` fixes the sensor noise."""
        height, width = rgb.shape[:2]
        light = np.multiply(rgb, self.gain(height, width), dtype=np.float32)
        light = _gaussian_blur(light, self.blur_sigma(width))
        uniform = np.random.default_rng(seed).integers(0, _NORMAL_QUANTILES.size, light.shape, dtype=np.uint16)
        light += np.take(_NORMAL_QUANTILES, uniform) * np.float32(self.noise_sigma)  # take: 3x faster than []
        np.rint(light, out=light)
        np.clip(light, 0, 255, out=light)
        return light.astype(np.uint8)


def _normal_quantiles() -> np.ndarray:
    from scipy.special import ndtri

    return ndtri((np.arange(2**16) + 0.5) / 2**16).astype(np.float32)


# Standard normal noise by inverse transform of 16-bit uniforms: the same distribution (to 1/65536 in
# probability, so within +-4.3 sigma) at less than half the cost of numpy's sampler, per frame.
_NORMAL_QUANTILES = _normal_quantiles()


@functools.lru_cache(maxsize=8)
def _gain(camera: RealCamera, height: int, width: int) -> np.ndarray:
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = (height - 1) / 2, (width - 1) / 2
    squared_radius = ((u - cx) ** 2 + (v - cy) ** 2) / (cx**2 + cy**2)  # 1 at the corners
    vignette = 1.0 - camera.vignette_corner_darkening * squared_radius
    gain = vignette[..., None] * np.asarray(camera.colour_cast, dtype=np.float32)
    gain.setflags(write=False)
    return gain


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (truncated at 3 sigma) of an (H, W, C) float image over H and W; edges repeat the border
    pixel. A kernel narrower than one pixel each side is the identity (scipy's own rounding of the radius)."""
    from scipy.ndimage import gaussian_filter

    if int(3.0 * sigma + 0.5) == 0:
        return image
    return gaussian_filter(image, sigma=(sigma, sigma, 0.0), mode="nearest", truncate=3.0)
