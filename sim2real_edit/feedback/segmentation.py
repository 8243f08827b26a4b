"""Grounded-SAM2 through transformers: GroundingDINO boxes for a text prompt, refined into masks by SAM2."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ..chunking import map_in_chunks
from .architectures import grounding_dino_config, sam2_config, word_piece_tokenizer
from .loading import Networks, PretrainedJudge, build_random, load_pretrained
from .mask_cache import MaskCache
from .pixels import IMAGENET_MEAN, IMAGENET_STD, ImageInput, as_unit_pixels, content_hashes, normalize, resize
from .protocols import MaskResult

if TYPE_CHECKING:
    from transformers import GroundingDinoForObjectDetection, PreTrainedTokenizerBase, Sam2Model

GROUNDING_DINO_TINY = "IDEA-Research/grounding-dino-tiny"
SAM2_LARGE = "facebook/sam2.1-hiera-large"


def detector_input_size(height: int, width: int, shortest_edge: int, longest_edge: int) -> tuple[int, int]:
    """GroundingDINO's resize: shortest side to `shortest_edge` unless the longest passes `longest_edge`."""
    scale = shortest_edge / min(height, width)
    if max(height, width) * scale > longest_edge:
        scale = longest_edge / max(height, width)
    return round(height * scale), round(width * scale)


def detector_text(prompt: str) -> str:
    """GroundingDINO's caption format: lower case, ending with a period."""
    text = prompt.strip().lower().rstrip(".").strip()
    if not text:
        raise ValueError("the detector prompt is empty; pass the object to find, e.g. 'cupboard'")
    return text + "."


class GroundedSAM2(PretrainedJudge):
    """Object masks for a text prompt, batched.

    GroundingDINO scores each of its queries against the prompt's tokens; a query is a detection when its best
    token probability exceeds `box_threshold` and one of the prompt's word tokens exceeds `text_threshold`.
    The best `max_boxes` detections of an image are each segmented by SAM2 from their box, and the image's
    mask is the union. Images with no detection get `found=False` and an all-False mask (see `MaskResult`).
    Masks are cached by image content and prompt (`cache_size` entries; 0 disables the cache).
    """

    def __init__(
        self,
        detector: GroundingDinoForObjectDetection,
        tokenizer: PreTrainedTokenizerBase,
        segmenter: Sam2Model,
        box_threshold: float = 0.4,
        text_threshold: float = 0.3,
        detector_shortest_edge: int = 800,
        detector_longest_edge: int = 1333,
        max_boxes: int = 8,
        max_batch: int = 16,
        cache_size: int = 4096,
    ):
        self.detector = detector.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.segmenter = segmenter.eval().requires_grad_(False)
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold
        self.detector_shortest_edge = detector_shortest_edge
        self.detector_longest_edge = detector_longest_edge
        self.max_boxes = max_boxes
        self.max_batch = max_batch
        self.segmenter_size = segmenter.config.prompt_encoder_config.image_size
        self.cache = MaskCache(cache_size) if cache_size > 0 else None
        self._texts: dict[str, tuple[dict[str, torch.Tensor], torch.Tensor]] = {}

    @property
    def device(self) -> torch.device:
        return self.detector.device

    @classmethod
    def from_pretrained(
        cls,
        detector_id: str = GROUNDING_DINO_TINY,
        segmenter_id: str = SAM2_LARGE,
        box_threshold: float = 0.4,
        text_threshold: float = 0.3,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> GroundedSAM2:
        """Loads GroundingDINO (model and tokenizer) and SAM2 by hub id or local folder."""
        from transformers import AutoTokenizer, GroundingDinoForObjectDetection, Sam2Model

        how = "GroundedSAM2.from_pretrained(detector_id='DIR', segmenter_id='DIR2')"
        networks = (
            load_pretrained(GroundingDinoForObjectDetection, detector_id, "GroundingDINO detector", how),
            load_pretrained(AutoTokenizer, detector_id, "GroundingDINO tokenizer", how),
            load_pretrained(Sam2Model, segmenter_id, "SAM2 segmenter", how),
        )
        options = {"box_threshold": box_threshold, "text_threshold": text_threshold, **kwargs}
        return cls.from_networks(networks, device, dtype, **options)

    @classmethod
    def random_networks(cls, size: str, seed: int) -> tuple[Networks, dict[str, Any]]:
        """The default models' architectures (or tiny ones), with a stand-in vocabulary."""
        from transformers import GroundingDinoForObjectDetection, Sam2Model

        detector = build_random(GroundingDinoForObjectDetection, grounding_dino_config(size), seed=seed)
        segmenter = build_random(Sam2Model, sam2_config(size), seed=seed + 1)
        # Big enough that the coarsest of the tiny detector's feature maps is still 2x2.
        options = {"detector_shortest_edge": 96, "detector_longest_edge": 160} if size == "tiny" else {}
        return (detector, word_piece_tokenizer(), segmenter), options

    def clear_cache(self) -> None:
        if self.cache is not None:
            self.cache.clear()

    @torch.inference_mode()
    def __call__(self, images: ImageInput, prompt: str) -> MaskResult:
        pixels = as_unit_pixels(images, self.device)
        text = detector_text(prompt)
        if self.cache is None:
            return MaskResult(*self._masks(pixels, text))
        keys = [f"{text}|{digest}" for digest in content_hashes(pixels)]
        # This call's results are kept here, not read back from the cache: a cache smaller than the batch
        # may already have dropped them again.
        entries: dict[str, tuple[torch.Tensor, bool]] = {}
        first_index: dict[str, int] = {}
        for index, key in enumerate(keys):
            if key in entries or key in first_index:
                continue
            cached = self.cache.get(key)
            if cached is None:
                first_index[key] = index
            else:
                entries[key] = cached
        if first_index:
            todo = torch.tensor(list(first_index.values()), device=pixels.device)
            masks, found = self._masks(pixels[todo], text)
            for key, mask, hit in zip(first_index, masks.cpu(), found.cpu().tolist(), strict=True):
                self.cache.put(key, mask, hit)
                entries[key] = (mask, hit)
        masks = torch.stack([entries[key][0] for key in keys]).to(pixels.device)
        found = torch.tensor([entries[key][1] for key in keys], device=pixels.device)
        return MaskResult(masks, found)

    def _masks(self, pixels: torch.Tensor, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        return map_in_chunks(lambda chunk: self._masks_chunk(chunk, text), pixels, chunk_size=self.max_batch)

    def _masks_chunk(self, pixels: torch.Tensor, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        boxes, valid = self.detect(pixels, text)
        found = valid.any(dim=1)
        masks = torch.zeros(pixels.shape[0], *pixels.shape[-2:], dtype=torch.bool, device=pixels.device)
        if found.any():
            masks[found] = self._segment_boxes(pixels[found], boxes[found], valid[found])
        return masks, found

    def _text_inputs(self, text: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Tokenised caption (1, L) on the device; which of its tokens are words (not [CLS], [SEP], '.')."""
        if text not in self._texts:
            encoded = self.tokenizer(text, return_tensors="pt")
            ids = encoded["input_ids"][0]
            not_words = set(self.tokenizer.all_special_ids) | set(self.tokenizer.convert_tokens_to_ids(["."]))
            word_tokens = torch.tensor([int(i) not in not_words for i in ids])
            self._texts[text] = (
                {k: v.to(self.device) for k, v in encoded.items()},
                word_tokens.to(self.device),
            )
        return self._texts[text]

    def detect(self, pixels: torch.Tensor, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Best detections per image: boxes (N, K, 4) as x0, y0, x1, y1 in [0, 1]; which are valid (N, K)."""
        encoded, word_tokens = self._text_inputs(text)
        size = detector_input_size(
            *pixels.shape[-2:], self.detector_shortest_edge, self.detector_longest_edge
        )
        model_pixels = normalize(resize(pixels, size), IMAGENET_MEAN, IMAGENET_STD)
        batch = pixels.shape[0]
        outputs = self.detector(
            pixel_values=model_pixels.to(self.detector.dtype),
            **{name: tokens.expand(batch, -1) for name, tokens in encoded.items()},
        )
        probs = (
            outputs.logits.float().sigmoid()
        )  # (N, queries, max_text_len); positions past the caption are 0
        scores = probs.max(dim=-1).values
        word_probs = probs[..., : word_tokens.shape[0]][..., word_tokens]
        keep = (scores > self.box_threshold) & (word_probs > self.text_threshold).any(dim=-1)
        ranked, index = scores.masked_fill(~keep, -1.0).topk(min(self.max_boxes, scores.shape[1]), dim=1)
        centre_x, centre_y, width, height = (
            outputs.pred_boxes.float().gather(1, index[..., None].expand(-1, -1, 4)).unbind(-1)
        )
        corners = torch.stack(
            [centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2], dim=-1
        )
        return corners.clamp(0.0, 1.0), ranked >= 0

    def _segment_boxes(self, pixels: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Union of SAM2's masks for each image's valid boxes; every row has a valid first box."""
        size = self.segmenter_size
        model_pixels = normalize(resize(pixels, (size, size), mode="bilinear"), IMAGENET_MEAN, IMAGENET_STD)
        # SAM2 takes a fixed number of boxes per image: pad with the image's best box, which changes no union.
        boxes = torch.where(valid[..., None], boxes, boxes[:, :1]) * size
        outputs = self.segmenter(
            pixel_values=model_pixels.to(self.segmenter.dtype),
            input_boxes=boxes.to(self.segmenter.dtype),
            multimask_output=False,
        )
        logits = F.interpolate(outputs.pred_masks[:, :, 0].float(), size=pixels.shape[-2:], mode="bilinear")
        return ((logits > 0) & valid[..., None, None]).any(dim=1)
