"""EditedDrawer: SIMPLER's drawer scenes (or the CPU stand-in) seen through an editing specialist.

    import envs, gymnasium as gym
    env = gym.make("EditedDrawer-v0", style="marble")                # one env
    vec = envs.make_edited_vector_env(num_envs=8, style="wood")       # N envs, one batched edit per step

Both makers take the same edit options: the fields of `EditOptions`, as keyword arguments or as `options=`.

Only the policy camera's RGB frame changes; the unedited frame is in `info["unedited_rgb"]`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from sim2real_edit.crops import crops_at_size, paste_crops
from sim2real_edit.images import as_uint8_batch, resize_batch
from sim2real_edit.seeding import SEED_MODULUS, check_reset_seed, derive_seed
from sim2real_edit.validation import FieldChecks, is_int, is_number, is_numbers

from .masks import cabinet_mask
from .simpler import POLICY_CAMERA
from .trial_env import DrawerTrialEnv, preset_backend


@dataclass
class EditSettings:
    """How frames are edited; defaults are the paper's sampling settings at 256 px short side."""

    num_steps: int = 20
    guidance: tuple[float, float, float] = (7.5, 1.5, 3.0)  # (text, image, style)
    short_side: int = 256
    scheduler: str = "euler_ancestral"
    composite: bool = True  # keep every pixel outside the cabinet mask exactly as rendered
    feather: int = 3  # width in pixels of the blend band just inside the mask's border
    exemplar: int = 0  # which style exemplar conditions the edits
    fast: bool = True  # the optimised inference paths (sim2real_edit.acceleration); False: plain eager
    # Edit only the cabinet's bounding box (grown by crop_margin of its size on every side) at the edit size,
    # then composite it back: the cabinet gets all of the model's pixels. Needs composite.
    crop: bool = False
    crop_margin: float = 0.1

    def __post_init__(self) -> None:
        from sim2real_edit.samplers import SAMPLERS

        checks = FieldChecks(self)
        for name, minimum in (("num_steps", 1), ("short_side", 8), ("feather", 0), ("exemplar", 0)):
            checks.require(name, is_int(getattr(self, name), minimum), f"an integer >= {minimum}")
        checks.require("guidance", is_numbers(self.guidance, 3), "three finite numbers (text, image, style)")
        checks.require("scheduler", self.scheduler in SAMPLERS, f"one of {SAMPLERS}")
        checks.require("crop_margin", is_number(self.crop_margin) and self.crop_margin >= 0,
                       "a finite number >= 0 (a fraction of the cabinet box's size)")
        checks.require("crop", isinstance(self.crop, bool) and not (self.crop and not self.composite),
                       "a bool, and crop=True needs composite=True (a crop is composited back into the frame "
                       "with the cabinet mask); set composite=True, or crop=False for a whole-frame edit")
        checks.raise_if_invalid()
        self.guidance = tuple(float(value) for value in self.guidance)


def composite(original: np.ndarray, edited: np.ndarray, masks: np.ndarray, feather: int) -> np.ndarray:
    """Blends `edited` into `original` inside `masks` (N, H, W); outside, pixels are the original's bytes.

    The blend weight rises from 0 at the mask's border to 1 at `feather` pixels inside it, so the edit
    meets the rendered frame without a seam and nothing outside the mask changes.
    """
    from scipy.ndimage import distance_transform_edt

    out = original.copy()
    for i, mask in enumerate(masks):
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size == 0:
            continue
        # Work in the mask's bounding box plus a one-pixel ring of background: every pixel's nearest
        # background pixel lies within it, so the distance transform is exact and much cheaper.
        top, bottom = max(rows[0] - 1, 0), min(rows[-1] + 2, mask.shape[0])
        left, right = max(cols[0] - 1, 0), min(cols[-1] + 2, mask.shape[1])
        box = (slice(top, bottom), slice(left, right))
        inside = mask[box]
        if feather > 0:
            weight = np.clip(distance_transform_edt(inside) / feather, 0.0, 1.0)
        else:
            weight = inside.astype(np.float64)
        blend = weight[inside][:, None]
        region_out, region_edit, region_in = out[i][box], edited[i][box], original[i][box]
        region_out[inside] = np.round(region_edit[inside] * blend + region_in[inside] * (1 - blend)).astype(np.uint8)
    return out


@runtime_checkable
class FramesEditor(Protocol):
    """What the edited envs need of an editor: a specialist's `FrameEditor`, or any other (e.g. a non-learned
    colour transfer). The envs read `settings.composite` and `settings.crop` to decide whether to pass the
    cabinet masks (N, H, W); `edit` returns uint8 frames of the input's shape."""

    settings: EditSettings

    def edit(self, frames: np.ndarray, seeds: list[int], masks: np.ndarray | None = None) -> np.ndarray: ...


def needs_masks(settings: EditSettings) -> bool:
    """Whether an editor with these settings must be given the cabinet masks."""
    return settings.composite or settings.crop


class FrameEditor:
    """Edits batches of simulator frames with one specialist: resize to the edit size, edit, resize back,
    composite. Seeds are per frame, so a frame's edit does not depend on the rest of the batch.

    With `settings.crop` only each frame's cabinet box (`sim2real_edit.crops.crop_box`) is edited, at the whole
    frame's edit size, all boxes of a batch in one specialist call; a frame whose mask is empty stays as
    rendered."""

    def __init__(self, specialist, style_image: np.ndarray, settings: EditSettings | None = None,
                 instruction: str | None = None):
        self.specialist = specialist
        self.style_image = as_uint8_batch(style_image, "style_image")[0]  # a bad exemplar fails before any episode
        self.settings = settings or EditSettings()
        self.instruction = instruction

    def _edit_at_edit_size(self, images: np.ndarray, seeds: list[int]) -> np.ndarray:
        return self.specialist.edit(
            images,
            self.style_image,
            instruction=self.instruction,
            num_steps=self.settings.num_steps,
            guidance=self.settings.guidance,
            seed=seeds,
            scheduler=self.settings.scheduler,
        )

    def edit(self, frames: np.ndarray, seeds: list[int], masks: np.ndarray | None = None) -> np.ndarray:
        from sim2real_edit.frames import edit_size

        frames = np.asarray(frames)
        count, height, width = frames.shape[:3]
        size = edit_size(height, width, self.settings.short_side)
        if needs_masks(self.settings):
            if masks is None:
                raise ValueError("compositing and crop editing need the cabinet masks: pass masks, or set "
                                 "composite=False (and crop=False)")
            masks = np.asarray(masks, dtype=bool)
            if masks.shape != (count, height, width):
                raise ValueError(f"masks must have shape {(count, height, width)} (one per frame), got {masks.shape}")
        if self.settings.crop:
            edited = self._edit_crops(frames, seeds, masks, size)
        else:
            edited = resize_batch(self._edit_at_edit_size(resize_batch(frames, size), seeds), (height, width))
        if self.settings.composite:
            edited = composite(frames, edited, masks, self.settings.feather)
        return edited

    def _edit_crops(self, frames: np.ndarray, seeds: list[int], masks: np.ndarray,
                    size: tuple[int, int]) -> np.ndarray:
        """`frames` with each cabinet box replaced by its edit; every crop is resized to `size`, whose aspect
        all boxes share, so one batch holds them all."""
        crops, boxes = crops_at_size(frames, masks, size, self.settings.crop_margin)
        if crops is None:
            return frames.copy()
        edits = self._edit_at_edit_size(crops, [seed for seed, box in zip(seeds, boxes) if box is not None])
        return paste_crops(frames, edits, boxes)


def _with_camera_rgb(obs: dict, camera: str, rgb: np.ndarray) -> dict:
    """`obs` with the camera's RGB frame replaced (nothing else is copied or changed)."""
    return {**obs, "image": {**obs["image"], camera: {**obs["image"][camera], "rgb": rgb}}}


def episode_seed(reset_seed: int | None, rng: np.random.Generator) -> int:
    """The diffusion seed of an episode: fixed for all its frames (no flicker), derived from the reset seed."""
    if reset_seed is None:
        return int(rng.integers(0, SEED_MODULUS))
    return derive_seed(reset_seed, 0x5EED)


class EditObservation(gym.Wrapper):
    """Passes the policy camera's RGB frame through a `FrameEditor`; everything else is the simulator's."""

    def __init__(self, env: gym.Env, editor: FramesEditor, camera: str = POLICY_CAMERA):
        super().__init__(env)
        self.editor = editor
        self.camera = camera
        self._seed = 0
        self._rng = np.random.default_rng()
        self._cabinet_ids: tuple[int, ...] = ()

    def _edit(self, obs: dict, info: dict) -> tuple[dict, dict]:
        frame = obs["image"][self.camera]["rgb"]
        masks = None
        if needs_masks(self.editor.settings):
            masks = cabinet_mask(obs["image"][self.camera]["Segmentation"], self._cabinet_ids)[None]
        edited = self.editor.edit(frame[None], [self._seed], masks)[0]
        return _with_camera_rgb(obs, self.camera, edited), {**info, "unedited_rgb": frame, "edit_seed": self._seed}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        seed = check_reset_seed(seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._seed = episode_seed(seed, self._rng)
        obs, info = self.env.reset(seed=seed, options=options)
        self._cabinet_ids = self.env.unwrapped.cabinet_ids()  # fixed until the next reset rebuilds the scene
        return self._edit(obs, info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        obs, info = self._edit(obs, info)
        return obs, reward, terminated, truncated, info


def load_editor(
    style: str,
    *,
    preset: str | None = None,
    specialist: str | Path | None = None,
    base: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    settings: EditSettings | None = None,
    cpu_threads: int | None = None,
) -> FrameEditor:
    """The specialist of `style` (from the style registry, or the `specialist` folder) as a FrameEditor.

    `cpu_threads`: intra-op threads of its work on a CPU; None keeps the specialist's default (one thread for
    small models, whose threads thrash on a busy machine)."""
    import torch

    from sim2real_edit.acceleration import HALF_DTYPES, InferenceOptions
    from sim2real_edit.components import TINY_TRAINED_BASE, is_tiny_base
    from sim2real_edit.specialist import CONFIG_NAME, EditSpecialist, SpecialistFormatError
    from sim2real_edit.styles import StyleRegistry, preset_specialist_dir

    from .tiny_base import ensure_tiny_base

    settings = settings or EditSettings()
    chosen = StyleRegistry.load().get(style)  # unknown styles list the known ones
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or ("float16" if device.startswith("cuda") else "float32")
    if dtype not in (*HALF_DTYPES, "float32"):
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {(*HALF_DTYPES, 'float32')}")
    torch_dtype = HALF_DTYPES.get(dtype, torch.float32)
    if preset == "tiny" and specialist is None:
        trained = preset_specialist_dir(chosen.name, "tiny")
        specialist = trained if (trained / CONFIG_NAME).is_file() else None
    if specialist is None and preset == "tiny":  # no trained tiny specialist: the untrained one
        if (base or TINY_TRAINED_BASE) == TINY_TRAINED_BASE:
            ensure_tiny_base()
        model = EditSpecialist.from_pretrained(base=base or TINY_TRAINED_BASE, device=device, dtype=torch_dtype)
        model.config.style, model.config.instruction = chosen.name, chosen.instruction
        exemplars = chosen.exemplars()
    else:
        folder = Path(specialist) if specialist is not None else chosen.trained_specialist_dir()
        recorded_base = EditSpecialist.read_config(folder).base
        if preset == "tiny" and (base or recorded_base) == TINY_TRAINED_BASE:
            ensure_tiny_base()
        if base is None and preset != "tiny" and is_tiny_base(recorded_base):
            raise SpecialistFormatError(
                f"{folder} holds a tiny-preset demo specialist (trained on the tiny base {recorded_base!r}), "
                f"which a full-size env does not load. Train the real one: `python scripts/collect_frames.py "
                f"--out frames/ && python scripts/train_specialist.py --style {chosen.name} --frames frames/ "
                f"--output {folder} --overwrite`; or make the env with preset='tiny'; or pass "
                f"base={recorded_base!r} to load the demo anyway"
            )
        model = EditSpecialist.from_pretrained(base=base, specialist=folder, device=device, dtype=torch_dtype)
        exemplars = model.exemplars(folder) or chosen.exemplars()
    if cpu_threads is not None:
        model.cpu_threads = cpu_threads
    if settings.fast:
        model.optimize(InferenceOptions.recommended(device, dtype=dtype if dtype in HALF_DTYPES else None))
    style_image = exemplars[settings.exemplar % len(exemplars)]
    return FrameEditor(model, style_image, settings, instruction=model.config.instruction or chosen.instruction)


PRESETS = (None, "full", "tiny")


def _check_preset(preset: str | None) -> None:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose 'tiny' (CPU stand-in and tiny specialist) or leave "
                         "it out (SIMPLER with the style's trained specialist)")


@dataclass(frozen=True)
class EditOptions:
    """Which specialist edits the policy camera's frames, and how: what `make_edited_drawer` and
    `make_edited_vector_env` share. Their keyword arguments of these names fill it in."""

    style: str = "wood"
    preset: str | None = None  # "tiny": the CPU stand-in and the tiny specialist; None/"full": SIMPLER
    specialist: str | Path | None = None  # a trained specialist folder; None: the style registry's
    base: str | None = None  # the base model under the specialist; None: the one it was trained on
    device: str | None = None  # None: CUDA if available
    dtype: str | None = None  # None: float16 on CUDA, float32 on CPU
    cpu_threads: int | None = None  # intra-op threads on a CPU; None: the specialist's default
    camera: str = POLICY_CAMERA
    # EditSettings overrides; None: the preset's value
    num_steps: int | None = None
    guidance: tuple[float, float, float] | None = None
    short_side: int | None = None
    composite: bool | None = None
    feather: int | None = None
    crop: bool | None = None
    crop_margin: float | None = None

    def __post_init__(self) -> None:
        _check_preset(self.preset)

    @classmethod
    def split(cls, options: EditOptions | None, kwargs: dict[str, Any]) -> tuple[EditOptions, dict[str, Any]]:
        """`options` (or the defaults) updated by the keyword arguments that name its fields, and the other
        keyword arguments (the simulator's). None keeps an optional field as `options` has it."""
        optional = {field.name for field in fields(cls) if field.default is None}
        names = {field.name for field in fields(cls)}
        chosen = {name: value for name, value in kwargs.items()
                  if name in names and not (value is None and name in optional)}
        rest = {name: value for name, value in kwargs.items() if name not in names}
        return replace(options or cls(), **chosen), rest

    @property
    def backend(self) -> str:
        return preset_backend(self.preset)

    def settings(self) -> EditSettings:
        """The preset's edit settings with this object's overrides."""
        values: dict[str, Any] = {"num_steps": 4, "short_side": 64} if self.preset == "tiny" else {}
        overrides = {name: getattr(self, name) for name in _SETTINGS_OVERRIDES}
        values.update({name: value for name, value in overrides.items() if value is not None})
        return EditSettings(**values)

    def editor(self, prebuilt: FramesEditor | None = None) -> FramesEditor:
        """`prebuilt` when given (these options must then not choose a specialist or settings, which it would
        ignore), else the specialist these options choose."""
        if prebuilt is None:
            return self.load_editor()
        ignored = [name for name in _SPECIALIST_CHOICES + _SETTINGS_OVERRIDES if getattr(self, name) is not None]
        if ignored:
            raise ValueError(f"a prebuilt editor= brings its own specialist and settings, so {', '.join(ignored)} "
                             "would be ignored: set them on the editor, or leave editor= out")
        if not isinstance(prebuilt, FramesEditor) or not isinstance(prebuilt.settings, EditSettings):
            raise TypeError(f"editor= must have `settings` (an EditSettings) and `edit(frames, seeds, masks)` "
                            f"(envs.edited.FramesEditor), got {type(prebuilt).__name__}")
        return prebuilt

    def load_editor(self) -> FrameEditor:
        return load_editor(self.style, preset=self.preset, specialist=self.specialist, base=self.base,
                           device=self.device, dtype=self.dtype, settings=self.settings(),
                           cpu_threads=self.cpu_threads)


_SPECIALIST_CHOICES = ("specialist", "base", "device", "dtype", "cpu_threads")
_SETTINGS_OVERRIDES = ("num_steps", "guidance", "short_side", "composite", "feather", "crop", "crop_margin")


def make_edited_drawer(
    *,
    task: str | None = None,
    pose: str | None = None,
    options: EditOptions | None = None,
    editor: FramesEditor | None = None,
    **kwargs: Any,
) -> gym.Env:
    """The entry point of `gym.make("EditedDrawer-v0", ...)`.

    `kwargs` naming `EditOptions` fields set those; the rest go to SIMPLER (e.g. `shader_dir="ibl"`) or the
    stand-in. `preset="tiny"` runs the CPU stand-in with the tiny preset's specialist of the style (trained by
    `scripts/build_miniature.py` or `train_specialist.py --preset tiny`; untrained on the tiny base if none);
    otherwise SIMPLER with the style's trained specialist. `editor`: a prebuilt editor used instead of a
    specialist (any `FramesEditor`); it gets the cabinet masks when its settings composite or crop.
    """
    options, backend_kwargs = EditOptions.split(options, kwargs)
    chosen_editor = options.editor(editor)
    env = DrawerTrialEnv(options.backend, task=task, pose=pose, **backend_kwargs)
    return EditObservation(env, chosen_editor, options.camera)


# Gymnasium 1.x names the vector wrapper base VectorWrapper; 0.29 (which SIMPLER pins) VectorEnvWrapper.
_VectorWrapper = getattr(gym.vector, "VectorWrapper", None) or gym.vector.VectorEnvWrapper


class EditedVectorEnv(_VectorWrapper):
    """N drawer envs stepping in subprocesses (Gymnasium's AsyncVectorEnv) whose policy frames are edited
    together in one batched specialist call per step. Each env's edit equals the single-env wrapper's
    for the same reset seed. `editor=None` passes frames through unedited (the same interface).

    Episodes that end are reset by the vector env as Gymnasium does; a new episode gets a new edit seed.
    `set_next_trials([...])` chooses the trial each env runs at its next reset. `skip_edits(mask)` names envs
    whose frames the caller ignores until the next `reset()` (an evaluation batch's finished episodes): their
    frames come back as rendered, and the edit is spent on the others only.
    """

    def __init__(self, vector_env: gym.vector.VectorEnv, editor: FramesEditor | None, camera: str = POLICY_CAMERA):
        super().__init__(vector_env)
        self.editor = editor
        self.camera = camera
        self._rng = np.random.default_rng()
        self._seeds = [0] * self.num_envs
        self._cabinet_ids: list[tuple[int, ...]] | None = None  # per env, read again after any reset
        # Gymnasium 1.x resets an ended env on the *next* step (its last frame still belongs to the old
        # episode); 0.29 resets within the same step. The edit seed must change exactly with the episode.
        self._resets_on_next_step = str(vector_env.metadata.get("autoreset_mode", "")).endswith("NEXT_STEP")
        self._ended = np.zeros(self.num_envs, bool)
        self._skipped = np.zeros(self.num_envs, bool)

    def skip_edits(self, mask) -> None:
        """Until the next `reset()`, the frames of the envs where `mask` is true are not edited."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.num_envs,):
            raise ValueError(f"skip_edits takes one flag per env ({self.num_envs}), got shape {mask.shape}")
        self._skipped = mask.copy()

    def _edit(self, obs: dict, info: dict) -> tuple[dict, dict]:
        if self.editor is None:
            return obs, info
        frames = obs["image"][self.camera]["rgb"]
        active = np.flatnonzero(~self._skipped)
        masks = None
        if needs_masks(self.editor.settings):
            if self._cabinet_ids is None:
                self._cabinet_ids = list(self.env.call("cabinet_ids"))
            segmentations = obs["image"][self.camera]["Segmentation"]
            masks = np.stack([cabinet_mask(segmentations[i], self._cabinet_ids[i]) for i in active])
        if len(active) == self.num_envs:
            edited = self.editor.edit(frames, self._seeds, masks)
        else:  # finished episodes keep their rendered frames
            edited = np.array(frames, copy=True)
            if len(active):
                edited[active] = self.editor.edit(frames[active], [self._seeds[i] for i in active], masks)
        info = {**info, "unedited_rgb": frames, "edit_seed": np.array(self._seeds)}
        return _with_camera_rgb(obs, self.camera, edited), info

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            seeds = [check_reset_seed(int(seed) + i) for i in range(self.num_envs)]  # Gymnasium's convention
            self._rng = np.random.default_rng(seed)
        else:
            seeds = [check_reset_seed(s) for s in (seed if isinstance(seed, (list, tuple, np.ndarray)) else [seed])]
            if len(seeds) != self.num_envs or None in seeds:
                raise ValueError(f"reset(seed=...) takes one seed or a list of {self.num_envs} (one per env), got "
                                 f"{seed!r}")
            self._rng = np.random.default_rng(seeds)
        self._seeds = [episode_seed(s, self._rng) for s in seeds]
        self._ended[:] = False
        self._skipped[:] = False
        self._cabinet_ids = None
        obs, info = self.env.reset(seed=seeds if seed is not None else None, options=options)
        return self._edit(obs, info)

    def step(self, actions: np.ndarray):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        ended = np.logical_or(terminated, truncated)
        reset_now = self._ended if self._resets_on_next_step else ended
        self._ended = ended
        for i in np.flatnonzero(reset_now):
            self._seeds[i] = episode_seed(None, self._rng)
        if reset_now.any():
            self._cabinet_ids = None
        obs, info = self._edit(obs, info)
        return obs, reward, terminated, truncated, info

    def set_next_trials(self, trials: list) -> None:
        self.env.set_attr("next_trial", list(trials))

    def call(self, name: str, *args, **kwargs):  # Gymnasium 1.x's VectorWrapper does not forward it
        return self.env.call(name, *args, **kwargs)


def make_edited_vector_env(
    num_envs: int = 1,
    *,
    options: EditOptions | None = None,
    vectorization_mode: str = "async",
    edit: bool = True,
    editor: FramesEditor | None = None,
    task: str | None = None,
    pose: str | None = None,
    **kwargs: Any,
) -> EditedVectorEnv:
    """N edited drawer envs: simulators in subprocesses ("async") or in this process ("sync"), edits
    batched here. `kwargs` and `editor` as in `make_edited_drawer`. `edit=False` gives the unedited simulator
    with the same interface (a baseline domain)."""
    options, backend_kwargs = EditOptions.split(options, kwargs)
    if editor is not None and not edit:
        raise ValueError("edit=False runs the unedited simulator, so editor= would be ignored: leave one of them out")
    if vectorization_mode not in ("async", "sync"):
        raise ValueError(f"vectorization_mode must be 'async' or 'sync', got {vectorization_mode!r}")
    if not is_int(num_envs, minimum=1):
        raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
    fns = [_TrialEnvFactory(options.backend, task, pose, backend_kwargs) for _ in range(num_envs)]
    # "spawn": a forked child would inherit this process's Vulkan/CUDA state (SAPIEN hangs on it).
    vector = (gym.vector.AsyncVectorEnv(fns, context="spawn") if vectorization_mode == "async"
              else gym.vector.SyncVectorEnv(fns))
    chosen_editor = options.editor(editor) if edit else None
    return EditedVectorEnv(vector, chosen_editor, options.camera)


@dataclass
class _TrialEnvFactory:
    """A picklable env constructor for subprocess vector envs."""

    backend: str
    task: str | None
    pose: str | None
    kwargs: dict

    def __call__(self) -> DrawerTrialEnv:
        return DrawerTrialEnv(self.backend, task=self.task, pose=self.pose, **self.kwargs)
