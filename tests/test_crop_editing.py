"""Crop editing (edit the cabinet's box at the model's resolution, composite it back) and prebuilt editors in
the edited envs: on the stand-in with a tiny random specialist built in code, nothing loaded from disk."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.edited import EditOptions, EditSettings, FrameEditor, composite
from envs.trial_env import DrawerTrialEnv
from sim2real_edit.crops import crop_box
from sim2real_edit.frames import edit_size
from sim2real_edit.specialist import EditSpecialist

CAMERA = "overhead_camera"
SHORT_SIDE = 32
TRIAL = {"task": "OpenTopDrawer", "pose": "b1"}


@pytest.fixture(scope="module")
def specialist():
    return EditSpecialist.tiny(0, style="wood", instruction="make the cupboard out of wood")


@pytest.fixture(scope="module")
def style_image():
    return np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def frame_editor(specialist, style_image, **settings) -> FrameEditor:
    return FrameEditor(specialist, style_image, EditSettings(num_steps=2, short_side=SHORT_SIDE, **settings),
                       instruction="make the cupboard out of wood")


@pytest.fixture(scope="module")
def rendered():
    """Frames and exact cabinet masks of two stand-in trials after a few steps (the drawer part-way open)."""
    frames, masks = [], []
    for task, pose, seed in (("OpenTopDrawer", "b1", 3), ("CloseMiddleDrawer", "a1", 4)):
        env = DrawerTrialEnv("standin", task=task, pose=pose)
        obs, _ = env.reset(seed=seed)
        for _ in range(2):
            obs, *_ = env.step(np.array([0.3, 0.0, -0.2, 0.0, 0.0, 0.0, 0.0]))
        frames.append(obs["image"][CAMERA]["rgb"])
        masks.append(env.unwrapped._env.cabinet_mask())
        env.close()
    return np.stack(frames), np.stack(masks)


def crop_edited_as_a_whole_frame(specialist, style_image, frame, mask, seed, feather=3):
    """The definition crop editing must meet: the box's image edited as a whole frame at the same size and
    seed (FrameEditor, no compositing), pasted back into the frame, composited with the exact mask."""
    full_size = edit_size(*frame.shape[:2], SHORT_SIDE)
    rows, cols = crop_box(mask, full_size[1] / full_size[0], EditSettings().crop_margin)
    crop = frame[rows, cols]
    assert edit_size(*crop.shape[:2], SHORT_SIDE) == full_size  # the crop is edited at the frame's edit size
    pasted = frame.copy()
    pasted[rows, cols] = frame_editor(specialist, style_image, composite=False).edit(crop[None], [seed])[0]
    return composite(frame[None], pasted[None], mask[None], feather)[0]


def box_extent(box: tuple[slice, slice]) -> tuple[int, int]:
    rows, cols = box
    return rows.stop - rows.start, cols.stop - cols.start


@pytest.mark.parametrize("margin", [0.0, 0.1])
@pytest.mark.parametrize("frame_shape, aspect", [((512, 640), 1.25), ((48, 64), 40 / 32)])
def test_crop_box_holds_the_mask_keeps_the_aspect_and_stays_inside_the_frame(frame_shape, aspect, margin):
    height, width = frame_shape
    rng = np.random.default_rng(1)
    cases = [  # (top, bottom, left, right) of a rectangular mask, many at the frame's edges and corners
        (0, height // 4, 0, width // 5), (height - height // 6, height, width - width // 3, width),
        (height // 3, height // 2, 0, 2), (0, 1, width // 2, width // 2 + 1), (height - 3, height, 0, width // 2),
        *[tuple(sorted(rng.integers(0, height + 1, 2))) + tuple(sorted(rng.integers(0, width + 1, 2)))
          for _ in range(30)],
    ]
    checked_aspect = 0
    for top, bottom, left, right in cases:
        if bottom == top or right == left:
            continue
        mask = np.zeros(frame_shape, bool)
        mask[top:bottom, left:right] = True
        rows, cols = crop_box(mask, aspect, margin)
        assert 0 <= rows.start < rows.stop <= height and 0 <= cols.start < cols.stop <= width
        assert rows.start <= top and bottom <= rows.stop and cols.start <= left and right <= cols.stop
        box_height, box_width = box_extent((rows, cols))
        if box_height < height and box_width < width:  # not capped by the frame: the aspect holds to a pixel
            assert abs(box_width - box_height * aspect) <= 1
            checked_aspect += 1
            # the margin is there wherever the frame leaves room for it
            grown = 1 + 2 * margin
            assert box_height >= round(grown * (bottom - top)) and box_width >= round(grown * (right - left)) - 1
    assert checked_aspect >= 10


def test_crop_box_of_an_empty_mask_is_none():
    assert crop_box(np.zeros((16, 20), bool), 1.25, 0.1) is None


def test_crop_edit_equals_a_whole_frame_edit_of_the_crop_composited_back(specialist, style_image, rendered):
    frames, masks = rendered
    editor = frame_editor(specialist, style_image, crop=True)
    for i, seed in enumerate((7, 8)):
        # one frame at a time: the same specialist call as the reference, so the same bytes
        edited = editor.edit(frames[i:i + 1], [seed], masks[i:i + 1])[0]
        expected = crop_edited_as_a_whole_frame(specialist, style_image, frames[i], masks[i], seed)
        np.testing.assert_array_equal(edited, expected)
        assert (edited[masks[i]] != frames[i][masks[i]]).any()
    # a batch edits all crops in one call: batched convolutions may round a few pixels the other way
    batched = editor.edit(frames, [7, 8], masks)
    for i, seed in enumerate((7, 8)):
        expected = crop_edited_as_a_whole_frame(specialist, style_image, frames[i], masks[i], seed)
        diff = np.abs(batched[i].astype(int) - expected.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_crop_edit_keeps_every_pixel_outside_the_mask_and_differs_from_a_whole_frame_edit(
        specialist, style_image, rendered):
    frames, masks = rendered
    cropped = frame_editor(specialist, style_image, crop=True).edit(frames, [7, 8], masks)
    whole = frame_editor(specialist, style_image).edit(frames, [7, 8], masks)
    np.testing.assert_array_equal(cropped[~masks], frames[~masks])
    assert not np.array_equal(cropped[masks], whole[masks])  # the model saw the cabinet at a higher resolution


def test_an_empty_mask_leaves_its_frame_unedited(specialist, style_image, rendered):
    frames, masks = rendered
    masks = masks.copy()
    masks[0] = False
    editor = frame_editor(specialist, style_image, crop=True)
    edited = editor.edit(frames, [7, 8], masks)
    np.testing.assert_array_equal(edited[0], frames[0])
    assert (edited[1][masks[1]] != frames[1][masks[1]]).any()
    np.testing.assert_array_equal(editor.edit(frames, [7, 8], np.zeros_like(masks)), frames)


def test_crop_needs_composite_and_masks(specialist, style_image, rendered):
    with pytest.raises(ValueError, match="crop=True needs composite=True"):
        EditSettings(crop=True, composite=False)
    with pytest.raises(ValueError, match="crop=True needs composite=True"):
        EditOptions(preset="tiny", crop=True, composite=False).settings()
    with pytest.raises(ValueError, match="crop_margin"):
        EditSettings(crop=True, crop_margin=-0.1)
    frames, masks = rendered
    editor = frame_editor(specialist, style_image, crop=True)
    with pytest.raises(ValueError, match="need the cabinet masks"):
        editor.edit(frames, [7, 8])
    with pytest.raises(ValueError, match=r"masks must have shape \(2, 512, 640\)"):
        editor.edit(frames, [7, 8], masks[:1])


def test_crop_options_reach_the_settings():
    options, rest = EditOptions.split(None, {"preset": "tiny", "crop": True, "crop_margin": 0.25, "appearance": "real"})
    settings = options.settings()
    assert (settings.crop, settings.crop_margin, settings.composite) == (True, 0.25, True)
    assert rest == {"appearance": "real"}
    assert EditOptions(preset="tiny").settings().crop is False


def test_single_env_with_crop_keeps_every_pixel_outside_the_mask(specialist, style_image, monkeypatch):
    monkeypatch.setattr(EditOptions, "load_editor", lambda self: pytest.fail("a prebuilt editor loads nothing"))
    env = gym.make("EditedDrawer-v0", preset="tiny", editor=frame_editor(specialist, style_image, crop=True),
                   **TRIAL)
    plain = DrawerTrialEnv("standin", **TRIAL)
    obs, info = env.reset(seed=5)
    plain_obs, _ = plain.reset(seed=5)
    for _ in range(3):
        rgb, rendered_rgb = obs["image"][CAMERA]["rgb"], plain_obs["image"][CAMERA]["rgb"]
        mask = plain.unwrapped._env.cabinet_mask()
        np.testing.assert_array_equal(info["unedited_rgb"], rendered_rgb)
        np.testing.assert_array_equal(rgb[~mask], rendered_rgb[~mask])
        assert (rgb[mask] != rendered_rgb[mask]).any()
        action = np.array([0.3, 0.0, -0.2, 0.0, 0.0, 0.0, 0.0])
        obs, *_, info = env.step(action)
        plain_obs, *_ = plain.step(action)


def test_vector_crop_edits_equal_single_env_crop_edits(specialist, style_image):
    editor = frame_editor(specialist, style_image, crop=True)
    seeds = [21, 22]
    actions = np.tile([0.2, 0.1, -0.1, 0, 0, 0, 1.0], (2, 1))
    vec = envs.make_edited_vector_env(num_envs=2, preset="tiny", editor=editor, vectorization_mode="sync", **TRIAL)
    try:
        vec.reset(seed=seeds)
        obs, *_, info = vec.step(actions)
    finally:
        vec.close()
    batched, unedited = obs["image"][CAMERA]["rgb"], info["unedited_rgb"]
    for i, seed in enumerate(seeds):
        single = gym.make("EditedDrawer-v0", preset="tiny", editor=editor, **TRIAL)
        single.reset(seed=seed)
        single_obs, *_ = single.step(actions[i])
        mask = single.unwrapped._env.cabinet_mask()
        np.testing.assert_array_equal(batched[i][~mask], unedited[i][~mask])
        assert (batched[i][mask] != unedited[i][mask]).any()
        # the vector env edits both crops in one call: a few pixels may round the other way
        diff = np.abs(batched[i].astype(int) - single_obs["image"][CAMERA]["rgb"].astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


class InvertInsideMask:
    """A non-learned editor: inverts the cabinet's pixels. Records the masks it was given."""

    def __init__(self, settings: EditSettings):
        self.settings = settings
        self.masks_seen: list[np.ndarray | None] = []

    def edit(self, frames: np.ndarray, seeds: list[int], masks: np.ndarray | None = None) -> np.ndarray:
        self.masks_seen.append(masks)
        edited = frames.copy()
        if masks is not None:
            edited[masks] = 255 - frames[masks]
        return edited


@pytest.mark.parametrize("settings", [EditSettings(), EditSettings(crop=True)], ids=["composite", "crop"])
def test_a_prebuilt_editor_is_used_with_the_exact_masks_and_nothing_is_loaded(settings, monkeypatch):
    monkeypatch.setattr(EditOptions, "load_editor", lambda self: pytest.fail("a prebuilt editor loads nothing"))
    editor = InvertInsideMask(settings)
    env = gym.make("EditedDrawer-v0", preset="tiny", editor=editor, **TRIAL)
    obs, info = env.reset(seed=2)
    mask = env.unwrapped._env.cabinet_mask()
    rgb, rendered_rgb = obs["image"][CAMERA]["rgb"], info["unedited_rgb"]
    assert len(editor.masks_seen) == 1
    np.testing.assert_array_equal(editor.masks_seen[0], mask[None])
    np.testing.assert_array_equal(rgb[mask], 255 - rendered_rgb[mask])
    np.testing.assert_array_equal(rgb[~mask], rendered_rgb[~mask])

    vec = envs.make_edited_vector_env(num_envs=2, preset="tiny", editor=editor, vectorization_mode="sync", **TRIAL)
    try:
        obs, info = vec.reset(seed=[2, 3])
    finally:
        vec.close()
    assert editor.masks_seen[-1].shape == (2, 512, 640) and editor.masks_seen[-1].any(axis=(1, 2)).all()
    np.testing.assert_array_equal(obs["image"][CAMERA]["rgb"][0], rgb)


def test_a_prebuilt_editor_without_masks_gets_none():
    editor = InvertInsideMask(EditSettings(composite=False))
    env = gym.make("EditedDrawer-v0", preset="tiny", editor=editor, **TRIAL)
    obs, info = env.reset(seed=2)
    assert editor.masks_seen == [None]
    np.testing.assert_array_equal(obs["image"][CAMERA]["rgb"], info["unedited_rgb"])


def test_a_prebuilt_editor_refuses_options_it_would_ignore():
    editor = InvertInsideMask(EditSettings())
    with pytest.raises(ValueError, match="num_steps, crop would be ignored"):
        gym.make("EditedDrawer-v0", preset="tiny", editor=editor, num_steps=3, crop=True, **TRIAL)
    with pytest.raises(ValueError, match="edit=False"):
        envs.make_edited_vector_env(num_envs=1, preset="tiny", editor=editor, edit=False, **TRIAL)
    with pytest.raises(TypeError, match="FramesEditor"):
        gym.make("EditedDrawer-v0", preset="tiny", editor=object(), **TRIAL)
