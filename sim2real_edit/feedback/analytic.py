"""Model-free judges with the same interfaces as the networks, for fast end-to-end training tests.

`GradientDepth` stands in for depth with the image's edge strength (structure is kept when edges stay where
they were); `MeanColourEmbedder` stands in for DreamSim with the masked mean colour (style is matched when
the edited region takes the style image's colour); `ColourStatisticsEmbedder` with its mean colour and local
contrast (a material's colour and how much its texture varies: white marble is bright, grey and veined).

`MaterialStatisticsEmbedder` judges the material rather than its lighting: it divides the simulator's shading
out of the edit before comparing colour and texture statistics with the (unshaded) exemplars. `edge_structure`
is an evaluation figure: how much of the input's edge pattern an edit keeps inside (and around) the mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .embeddings import PatchEmbedder
from .pixels import FeedbackInputError, ImageInput, MaskInput, as_bool_masks, as_unit_pixels

_LUMA = (0.299, 0.587, 0.114)


def luminance(pixels: torch.Tensor) -> torch.Tensor:
    """float (N, 3, H, W) -> (N, H, W): Rec. 601 luma."""
    return torch.einsum("nchw,c->nhw", pixels, torch.tensor(_LUMA, device=pixels.device, dtype=pixels.dtype))


class GradientDepth:
    """Images -> (N, H, W) Sobel gradient magnitude of the luminance, a depth-map stand-in."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
        self.kernels = torch.stack([sobel_x, sobel_x.T])[:, None].to(self.device)

    @torch.inference_mode()
    def __call__(self, images: ImageInput) -> torch.Tensor:
        pixels = as_unit_pixels(images, self.device)
        luma = luminance(pixels)[:, None]
        gradients = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), self.kernels)
        return gradients.square().sum(dim=1).sqrt()


class MeanColourEmbedder(PatchEmbedder):
    """The masked mean colour, in [-1, 1] so that cosine distance sees brightness as well as hue, as a 3-d
    embedding through the same patch-grid pooling as the ViT judges."""

    def __init__(self, grid: int = 16, device: torch.device | str = "cpu"):
        self.grid = grid
        self._device = torch.device(device)

    @property
    def device(self) -> torch.device:
        return self._device

    def patch_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(pixels * 2 - 1, self.grid)


class ColourStatisticsEmbedder(MeanColourEmbedder):
    """Mean colour and local contrast (standard deviation over a small window) per patch, plus a constant.

    The constant makes cosine distance a colour distance: with it, (x, c) and (y, c) have 1 - cos close to
    |x - y|^2 / 2c^2, so brightness counts as much as hue (without it, cosine distance of centred mean colours
    sees only a colour's direction, and a brighter orange scores as well as a white).
    """

    def __init__(self, grid: int = 16, window: int = 5, contrast_scale: float = 4.0, constant: float = 1.0,
                 device: torch.device | str = "cpu"):
        super().__init__(grid, device)
        self.window = window
        self.contrast_scale = contrast_scale
        self.constant = constant

    def patch_features(self, pixels: torch.Tensor) -> torch.Tensor:
        pad = self.window // 2
        mean = F.avg_pool2d(pixels, self.window, stride=1, padding=pad, count_include_pad=False)
        square = F.avg_pool2d(pixels.square(), self.window, stride=1, padding=pad, count_include_pad=False)
        contrast = (square - mean.square()).clamp_min(0).sqrt()
        constant = torch.full_like(pixels[:, :1], self.constant)
        features = torch.cat([mean * 2 - 1, contrast * self.contrast_scale, constant], dim=1)
        return F.adaptive_avg_pool2d(features, self.grid)


#: The stand-in simulator's cabinet albedo (RGB 0-255, `envs.standin`): its rendered cabinet is this colour times
#: a Lambertian shading factor per face, which is how `MaterialStatisticsEmbedder` recovers the shading.
STAND_IN_CABINET_ALBEDO = (190.0, 148.0, 119.0)


class MaterialStatisticsEmbedder:
    """Colour and texture statistics of a region's *material*: the simulator's shading divided out.

    The simulator renders the object as albedo x shading. Given the unedited input frame (`lit_by`), the shading
    of each pixel is its luminance over the albedo's luminance; the edit divided by it is the material the edit
    paints, as if lit evenly, which is how the exemplar photos show it. Pixels whose estimated shading lies
    outside `shading_range` are not that albedo under the simulator's light (handles, dark cavities, edges
    blended with them) and carry no weight. Style images (`lit_by=None`) are taken as they are.

    Features (all in log space, so a change of light or exposure moves only the brightness): mean log-luminance
    (how bright the material is), mean and standard deviation of the log-chromaticities log(R/G) and log(B/G)
    (its hue and how much the hue varies), the standard deviation of log-luminance (veins, grain) and its local
    contrast (the mean standard deviation in a `window` x `window` neighbourhood: fine texture). The last column
    is the fraction of the mask that carried evidence; `distance` is half the squared distance of the features,
    or 1 where either region carried none.
    """

    def __init__(
        self,
        sim_albedo: tuple[float, float, float] = STAND_IN_CABINET_ALBEDO,
        shading_range: tuple[float, float] = (0.5, 1.1),
        window: int = 5,
        device: torch.device | str = "cpu",
    ):
        if len(sim_albedo) != 3 or min(sim_albedo) <= 0:
            raise ValueError(f"sim_albedo must be a positive RGB colour (0-255), got {sim_albedo!r}")
        if not 0 < shading_range[0] < shading_range[1]:
            raise ValueError(f"shading_range must be (low, high) with 0 < low < high, got {shading_range!r}")
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be an odd number of pixels, got {window}")
        self._device = torch.device(device)
        self.albedo_luminance = float(torch.tensor(sim_albedo) @ torch.tensor(_LUMA)) / 255.0
        self.shading_range = shading_range
        self.window = window

    @property
    def device(self) -> torch.device:
        return self._device

    @torch.inference_mode()
    def embed(self, images: ImageInput, masks: torch.Tensor, lit_by: ImageInput | None = None) -> torch.Tensor:
        """Images and bool masks (N, H, W) -> float32 (N, 8): the material statistics, then the evidence
        fraction. `lit_by`: the unedited simulator frames the images were edited from (their shading is divided
        out); None for images that show the material evenly lit (exemplars)."""
        pixels = as_unit_pixels(images, self.device)
        weights = as_bool_masks(masks, pixels).float()
        mask_area = weights.flatten(1).sum(dim=1).clamp_min(1.0)
        if lit_by is None:
            shading = torch.ones_like(pixels[:, 0])
        else:
            lighting = as_unit_pixels(lit_by, self.device, "lit_by")
            if lighting.shape != pixels.shape:
                raise FeedbackInputError(f"lit_by {tuple(lighting.shape)} must match the images {tuple(pixels.shape)}"
                                         ": pass the unedited input frame of each edit")
            shading = luminance(lighting) / self.albedo_luminance
            low, high = self.shading_range
            weights = weights * ((shading >= low) & (shading <= high)).float()
            shading = shading.clamp(low, high)
        albedo = (pixels / shading[:, None]).clamp_min(1.0 / 255.0)
        log_luminance = luminance(albedo).log()
        red_green = (albedo[:, 0] / albedo[:, 1]).log()
        blue_green = (albedo[:, 2] / albedo[:, 1]).log()
        count = weights.flatten(1).sum(dim=1)
        total = count.clamp_min(1.0)

        def mean(values: torch.Tensor) -> torch.Tensor:
            return (values * weights).flatten(1).sum(dim=1) / total

        def spread(values: torch.Tensor) -> torch.Tensor:
            return (mean(values.square()) - mean(values).square()).clamp_min(0.0).sqrt()

        features = torch.stack([
            mean(log_luminance), mean(red_green), mean(blue_green), spread(red_green), spread(blue_green),
            spread(log_luminance), self._local_contrast(log_luminance, weights, total),
            count / mask_area,
        ], dim=1)
        return features.float()

    def _local_contrast(self, values: torch.Tensor, weights: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        """Mean over the weighted pixels of the standard deviation of `values` among the weighted pixels of
        their neighbourhood (the region's edge does not count as contrast)."""
        pad = self.window // 2
        stacked = torch.stack([weights, weights * values, weights * values.square()], dim=1)
        sums = F.avg_pool2d(stacked, self.window, stride=1, padding=pad) * self.window**2
        enough = sums[:, 0] >= 2
        local_count = sums[:, 0].clamp_min(1.0)
        local_mean = sums[:, 1] / local_count
        local_sd = (sums[:, 2] / local_count - local_mean.square()).clamp_min(0.0).sqrt()
        return (local_sd * weights * enough).flatten(1).sum(dim=1) / total

    @staticmethod
    def distance(edit_embedding: torch.Tensor, style_embedding: torch.Tensor) -> torch.Tensor:
        """(N, 8) embeddings -> (N,): half the squared distance of the statistics; 1 where either region
        carried no evidence (as an empty mask's cosine distance)."""
        if edit_embedding.shape != style_embedding.shape:
            raise ValueError(f"edit and style embeddings must have the same shape, got "
                             f"{tuple(edit_embedding.shape)} and {tuple(style_embedding.shape)}")
        half_square = 0.5 * (edit_embedding[:, :-1] - style_embedding[:, :-1]).square().sum(dim=1)
        evidence = (edit_embedding[:, -1] > 0) & (style_embedding[:, -1] > 0)
        return torch.where(evidence, half_square, torch.ones_like(half_square))


def edge_structure(inputs: ImageInput, edits: ImageInput, masks: MaskInput, erosion: int = 2) -> float:
    """How well edits keep their inputs' edges inside the object: the correlation of the input's and the edit's
    Sobel gradient magnitudes (luminance) over the mask's interior, per frame, averaged over frames. 1.0 for an
    unchanged frame (or any gain of it); about 0 for edges unrelated to the input's, or none.

    The interior is the mask eroded by `erosion` pixels: the object's outline would dominate the figure (a
    cabinet painted flat keeps it and scores about 0.7 on the whole mask) and says nothing about its drawer
    lines and handles; the pixel error outside the mask guards the outline. A frame whose interior has no edge
    variation in the input or the edit counts 0.

    inputs, edits: uint8 (N, H, W, 3) or float (N, 3, H, W) in [0, 1]; masks: bool (N, H, W).
    """
    input_pixels = as_unit_pixels(inputs, "cpu", "inputs")
    edit_pixels = as_unit_pixels(edits, "cpu", "edits")
    if input_pixels.shape != edit_pixels.shape:
        raise FeedbackInputError(f"inputs {tuple(input_pixels.shape)} and edits {tuple(edit_pixels.shape)} must "
                                 "have the same shape: an edit is compared with its own input")
    if input_pixels.shape[0] == 0:
        raise FeedbackInputError("edge_structure needs at least one frame")
    outside = (~as_bool_masks(masks, input_pixels)).float()[:, None]
    if erosion > 0:
        outside = F.max_pool2d(outside, 2 * erosion + 1, stride=1, padding=erosion)
    region = outside[:, 0] == 0
    gradients = GradientDepth("cpu")
    input_edges, edit_edges = gradients(input_pixels), gradients(edit_pixels)
    correlations = []
    for first, second, inside in zip(input_edges, edit_edges, region):
        a, b = first[inside].double(), second[inside].double()
        a, b = a - a.mean(), b - b.mean()
        scale = (a.square().sum() * b.square().sum()).sqrt()
        correlations.append(float((a * b).sum() / scale) if scale > 1e-12 else 0.0)
    return sum(correlations) / len(correlations)
