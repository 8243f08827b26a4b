"""Episode videos: one H.264 MP4 per episode, stored beside the episode's row in the run folder.

A video shows what the policy saw - its camera frame in the episode's domain - and, where the domain edits the
frame, the unedited simulator render beside it (``info["unedited_rgb"]``), each panel labelled, with the step,
the action taken and the target drawer's opening written under the panels.

Frames: one at the reset and one after every step, so an episode of ``steps`` steps has ``steps + 1`` frames;
frame k shows the observation after step k, the action of step k and the drawer's opening after it. (Where
a vector env resets an ended env within its last step - gymnasium 0.29, at the env's own time limit - the last
observation belongs to the next episode and is left out: ``steps`` frames.)

Videos are for looking, not measuring: libx264 here is not bit-reproducible - the same frames (checked by
hash) give files whose decoded pixels differ from run to run, by up to ~45 levels on the noisy frames of the
miniature real world and by at most 2 on the simulator's. Outcomes never depend on them.

Frames are encoded as they come (no frame is kept in memory) into a hidden temporary file in the video's
folder, renamed into place (``os.replace``) when the episode ends, and only then indexed in
``RUN_DIR/videos/index.jsonl``; the runner stores the episode's row after that, so a stored row implies its
video is complete. A killed run leaves at most unindexed temporary files and index lines of episodes that
were not stored; `VideoRecorder.prepare` removes both before the run continues, and a rerun encodes those
episodes again.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .config import (
    CEILING,
    COLOUR_TRANSFER,
    EDITED,
    EDITED_COMPOSITED,
    EDITED_CROP,
    FLOOR,
    GAIN_ORACLE,
    REAL,
    UNEDITED,
)
from .results import EpisodeKey, EpisodeResult, write_text_atomically

VIDEOS_DIR = "videos"
INDEX_NAME = "index.jsonl"
FPS = 10
#: Small frames (the stand-in's 80 x 64 or 160 x 128) are enlarged by a whole factor (nearest neighbour, every
#: pixel stays a block) to at least this height, so that the labels and the scene stay legible.
MIN_PANEL_HEIGHT = 192
CAPTION_LINES = 3
_PARTIAL_SUFFIX = ".partial"
#: H.264 in yuv420p (what browsers play), moderate quality; `faststart` puts the index first so a browser
#: starts playing before the whole file has loaded.
_CODEC = "libx264"
_CODEC_OPTIONS = {"preset": "veryfast", "crf": "23"}

#: What the policy's panel shows in each domain.
POLICY_PANEL = {
    UNEDITED: "sim",
    EDITED: "edited",
    EDITED_COMPOSITED: "composited",
    EDITED_CROP: "crop",
    COLOUR_TRANSFER: "colour-transfer",
    GAIN_ORACLE: "gain-oracle",
    CEILING: "ceiling: real cabinet in sim",
    FLOOR: "real, fresh noise",
    REAL: "real",
}
SIM_PANEL = "sim (unedited render)"


def panel_labels(domain: str, style: str, with_sim: bool) -> tuple[str, ...]:
    """The labels of a video's panels: the policy's frame in ``domain`` (with its style), then the unedited
    simulator render where the domain edits the frame (``with_sim``)."""
    label = POLICY_PANEL.get(domain, domain)
    if style:
        label = f"{label} ({style})"
    return (f"{label} - policy input", SIM_PANEL) if with_sim else (f"{label} - policy input",)


def safe_name(name: str) -> str:
    """``name`` as one file-name component: letters, digits, ``.``, ``_`` and ``-`` only. A name that had to be
    changed gets a short hash of the original, so two names never share a file ("a b" and "a_b")."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "unnamed"
    if cleaned == name:
        return name
    return f"{cleaned[:80]}_{zlib.crc32(name.encode()):08x}"


def video_path(key: EpisodeKey) -> str:
    """The video of an episode, relative to the run folder:
    ``videos/<policy>/<domain>[-<style>]/<task>_<pose>_<urdf version or 'default'>_seed<k>.mp4``."""
    policy, domain, style, urdf_version, seed, task, pose = key
    domain_folder = f"{domain}-{style}" if style else domain
    file_name = f"{task}_{pose}_{urdf_version or 'default'}_seed{seed}"
    return "/".join((VIDEOS_DIR, safe_name(policy), safe_name(domain_folder), safe_name(file_name) + ".mp4"))


@dataclass(frozen=True)
class VideoRecord:
    """One line of ``videos/index.jsonl``: an episode's video and what it cost."""

    policy: str
    domain: str
    style: str
    urdf_version: str
    seed: int
    task: str
    pose: str
    path: str  # relative to the run folder
    bytes: int
    frames: int
    width: int
    height: int
    fps: int
    encode_s: float  # drawing and encoding its frames, writing the file
    panels: tuple[str, ...]

    @property
    def key(self) -> EpisodeKey:
        return (self.policy, self.domain, self.style, self.urdf_version, self.seed, self.task, self.pose)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "panels": list(self.panels)}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> VideoRecord:
        return cls(**{**values, "seed": int(values["seed"]), "panels": tuple(values["panels"])})


def read_video_index(run_dir: str | Path, stored: set[EpisodeKey] | None = None) -> list[VideoRecord]:
    """The run folder's video records, one per video file that exists (the last line of a path wins), in file
    order; with ``stored``, only those of stored episodes. Lines a killed run left half-written are skipped."""
    run_dir = Path(run_dir)
    index = run_dir / VIDEOS_DIR / INDEX_NAME
    if not index.is_file():
        return []
    records: dict[str, VideoRecord] = {}
    for line in index.read_text().splitlines():
        try:
            record = VideoRecord.from_json(json.loads(line))
        except (ValueError, TypeError, KeyError):
            continue
        if (stored is None or record.key in stored) and (run_dir / record.path).is_file():
            records.pop(record.path, None)
            records[record.path] = record
    return list(records.values())


class VideoRecorder:
    """Writes the episode videos of one run folder; `run_batch` opens one `BatchRecording` per batch."""

    def __init__(self, run_dir: str | Path, fps: int = FPS) -> None:
        self.run_dir = Path(run_dir)
        self.fps = fps

    @property
    def index_path(self) -> Path:
        return self.run_dir / VIDEOS_DIR / INDEX_NAME

    def prepare(self, stored: set[EpisodeKey]) -> None:
        """Before a run (under the folder's lock): removes what a killed run left - temporary files, and index
        lines of episodes whose row was never stored or whose file is gone - so that every index line
        belongs to a stored episode and no video is listed twice."""
        folder = self.run_dir / VIDEOS_DIR
        if not folder.is_dir():
            return
        for partial in folder.rglob(f".*{_PARTIAL_SUFFIX}"):
            partial.unlink(missing_ok=True)
        if self.index_path.is_file():
            kept = "".join(json.dumps(r.to_json()) + "\n" for r in read_video_index(self.run_dir, stored))
            if kept != self.index_path.read_text():
                write_text_atomically(self.index_path, kept)

    def batch(self, keys: Sequence[EpisodeKey], camera: str) -> BatchRecording:
        return BatchRecording(self, list(keys), camera)

    def _append(self, record: VideoRecord) -> None:
        with open(self.index_path, "a") as index:
            index.write(json.dumps(record.to_json()) + "\n")
            index.flush()
            os.fsync(index.fileno())


class BatchRecording:
    """The videos of one batch: env ``i`` records episode ``keys[i]``; envs past the keys (spare envs that
    repeat the batch's episodes) are not recorded."""

    def __init__(self, recorder: VideoRecorder, keys: list[EpisodeKey], camera: str) -> None:
        self.recorder = recorder
        self.keys = keys
        self.camera = camera
        self._videos: dict[int, EpisodeVideo] = {}

    def add(self, step: int, observations: dict, info: dict, envs: Iterable[int],
            actions: np.ndarray | None = None) -> None:
        """Adds a frame to the videos of ``envs``: the observation after ``step`` (0: the reset's), with the
        action that led to it and the drawer's opening in ``info``."""
        frames = observations["image"][self.camera]["rgb"]
        unedited = info.get("unedited_rgb")
        for index in envs:
            index = int(index)
            video = self._videos.get(index)
            if video is None:
                _, domain, style = self.keys[index][:3]
                video = EpisodeVideo(self.recorder.run_dir / video_path(self.keys[index]),
                                     panel_labels(domain, style, unedited is not None), self.recorder.fps)
                self._videos[index] = video
            panels = [frames[index]] + ([unedited[index]] if unedited is not None else [])
            action = None if actions is None else actions[index]
            video.add(panels, caption(step, action, float(info["drawer_qpos"][index])))

    def finish(self, index: int, episode: EpisodeResult) -> VideoRecord:
        """Closes env ``index``'s video of ``episode``, moves it into place and indexes it."""
        if episode.key != self.keys[index]:
            raise RuntimeError(f"env {index} recorded episode {self.keys[index]} but ended {episode.key}")
        video = self._videos.pop(index)
        file = video.finish()
        record = VideoRecord(*episode.key[:4], episode.seed, episode.task, episode.pose,
                             path=video.path.relative_to(self.recorder.run_dir).as_posix(), bytes=file.bytes,
                             frames=file.frames, width=file.width, height=file.height, fps=video.fps,
                             encode_s=round(file.encode_s, 4), panels=video.labels)
        self.recorder._append(record)
        return record

    def close(self) -> None:
        """Discards the videos of episodes that did not end (the batch was interrupted)."""
        for video in self._videos.values():
            video.discard()
        self._videos.clear()


def caption(step: int, action: np.ndarray | None, drawer_qpos: float) -> tuple[str, str, str]:
    """The lines under a frame: step and drawer opening, then the 7 action numbers (translation, rotation,
    gripper) rounded to 3 decimals."""
    head = f"step {step}{' (reset)' if step == 0 else ''}   drawer {drawer_qpos:.3f} m"
    if action is None:
        return head, "action -", ""
    values = [float(value) for value in np.asarray(action, dtype=np.float64).reshape(-1)]
    numbers = " ".join(f"{value:+.3f}" for value in values[:3])
    rest = " ".join(f"{value:+.3f}" for value in values[3:6])
    return head, f"xyz {numbers}", f"rot {rest}  grip {values[6]:+.3f}" if len(values) >= 7 else f"rot {rest}"


@dataclass(frozen=True)
class EncodedFile:
    bytes: int
    frames: int
    width: int
    height: int
    encode_s: float


class EpisodeVideo:
    """One episode's MP4, encoded frame by frame into a hidden temporary file and renamed into place by
    `finish`. Its size is fixed by the first frame."""

    def __init__(self, path: Path, labels: tuple[str, ...], fps: int = FPS) -> None:
        self.path = path
        self.labels = labels
        self.fps = fps
        self.frames = 0
        self.encode_s = 0.0
        self._partial = path.with_name(f".{path.name}{_PARTIAL_SUFFIX}")
        self._container: Any = None
        self._stream: Any = None
        self._scale = 1
        self._size = (0, 0)

    def add(self, panels: Sequence[np.ndarray], lines: Sequence[str]) -> None:
        started = time.perf_counter()
        if len(panels) != len(self.labels):
            raise ValueError(f"{self.path.name}: {len(panels)} panels for the labels {self.labels}")
        if self._container is None:
            self._scale = max(1, math.ceil(MIN_PANEL_HEIGHT / np.asarray(panels[0]).shape[0]))
        image = compose_frame(panels, self.labels, lines, self._scale)
        if self._container is None:
            self._open(image.shape[1], image.shape[0])
        elif (image.shape[1], image.shape[0]) != self._size:
            raise ValueError(f"{self.path.name}: frame {self.frames} is {image.shape[1]}x{image.shape[0]}, the "
                             f"video's first was {self._size[0]}x{self._size[1]}")
        import av

        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = self.frames, Fraction(1, self.fps)  # frame k shown at k / fps
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1
        self.encode_s += time.perf_counter() - started

    def _open(self, width: int, height: int) -> None:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The name ends in .partial, so the container format is named.
        self._container = av.open(str(self._partial), "w", format="mp4", options={"movflags": "faststart"})
        stream = self._container.add_stream(_CODEC, rate=self.fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = dict(_CODEC_OPTIONS)
        # One thread per video: a batch encodes one video per env at once, on CPUs the simulators share.
        stream.codec_context.thread_count = 1
        self._stream = stream
        self._size = (width, height)

    def finish(self) -> EncodedFile:
        if self._container is None:
            raise RuntimeError(f"{self.path.name}: a video needs at least one frame")
        started = time.perf_counter()
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
        os.replace(self._partial, self.path)
        self.encode_s += time.perf_counter() - started
        return EncodedFile(self.path.stat().st_size, self.frames, *self._size, self.encode_s)

    def discard(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):  # a half-written file: deleted below whatever went wrong
                self._container.close()
            self._container = None
        self._partial.unlink(missing_ok=True)


def compose_frame(panels: Sequence[np.ndarray], labels: Sequence[str], lines: Sequence[str],
                  scale: int = 1) -> np.ndarray:
    """The panels side by side (each enlarged ``scale`` times, to the first panel's size), each labelled at its
    top left, with ``lines`` of text on a band below; width and height even (yuv420p halves both)."""
    from PIL import Image, ImageDraw

    font = _font()
    first = np.asarray(panels[0])
    panel_w, panel_h = first.shape[1] * scale, first.shape[0] * scale
    line_h = _line_height()
    band = CAPTION_LINES * line_h + 6
    width = max(panel_w * len(panels), _CAPTION_MIN_WIDTH)
    width, height = width + width % 2, panel_h + band + (panel_h + band) % 2
    canvas = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(canvas)
    for number, (panel, label) in enumerate(zip(panels, labels)):
        image = Image.fromarray(np.ascontiguousarray(np.asarray(panel, dtype=np.uint8)[..., :3]))
        if image.size != (panel_w, panel_h):
            image = image.resize((panel_w, panel_h), Image.Resampling.NEAREST)
        left = number * panel_w
        canvas.paste(image, (left, 0))
        text_w = draw.textlength(label, font=font)
        draw.rectangle((left, 0, left + text_w + 6, line_h + 3), fill=(0, 0, 0))
        draw.text((left + 3, 2), label, fill=(255, 255, 255), font=font)
    for row, line in enumerate(lines):
        draw.text((4, panel_h + 3 + row * line_h), line, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


_CAPTION_MIN_WIDTH = 240  # the action line's width in the default font, with a margin


@lru_cache(maxsize=1)
def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


@lru_cache(maxsize=1)
def _line_height() -> int:
    return int(_font().getbbox("Ag[0.9]")[3]) + 3
