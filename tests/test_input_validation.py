"""Nothing silent: every bad input is refused at the boundary (API, env, config file) with what is wrong and how
to fix it, instead of a wrong result or an error from deep inside numpy, torch or peft."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from envs.edited import EditSettings, FrameEditor
from sim2real_edit.d3po import TrainConfig, tiny_config, train
from sim2real_edit.feedback import Feedback, FeedbackConfig
from sim2real_edit.frames import TrainingFrames
from sim2real_edit.images import ImageFormatError
from sim2real_edit.specialist import CONFIG_NAME, EditSpecialist, SpecialistFormatError
from sim2real_edit.styles import StyleRegistry

pytestmark = pytest.mark.usefixtures("tiny_base")  # the tiny preset's base: the session's small build


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SIM2REAL_EDIT_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def editor() -> EditSpecialist:
    return EditSpecialist.tiny(0)


FRAMES = np.random.default_rng(0).integers(0, 255, size=(2, 32, 32, 3), dtype=np.uint8)
STYLE = np.full((32, 32, 3), (200, 140, 30), np.uint8)


def test_nan_images_and_style_images_are_refused_not_edited_as_zeros(editor):
    broken = FRAMES.astype(np.float32) / 255
    broken[0, 3, 4, 1] = np.nan
    with pytest.raises(ImageFormatError, match="(?s)`images`.*1 NaN or infinite"):
        editor.edit(broken, STYLE, num_steps=1)
    style = np.full((32, 32, 3), np.inf, np.float32)
    with pytest.raises(ImageFormatError, match="`style_images`.*NaN or infinite"):
        editor.edit(FRAMES, style, num_steps=1)


@pytest.mark.parametrize("guidance", [(math.nan, 1.5, 3.0), (7.5, math.inf, 3.0), (7.5, 1.5, -math.inf)])
def test_non_finite_guidance_is_refused_not_turned_into_a_black_image(editor, guidance):
    with pytest.raises(ValueError, match="finite"):
        editor.edit(FRAMES, STYLE, num_steps=1, guidance=guidance)


def test_ddim_eta_nan_and_zero_or_fractional_steps_are_refused(editor):
    with pytest.raises(ValueError, match="eta"):
        editor.edit(FRAMES, STYLE, num_steps=2, scheduler="ddim", eta=math.nan)
    with pytest.raises(ValueError, match="num_steps.*got 0"):  # not quietly the default 20 steps
        editor.edit(FRAMES, STYLE, num_steps=0)
    with pytest.raises(ValueError, match="num_steps.*got 1.5"):
        editor.edit(FRAMES, STYLE, num_steps=1.5)


def test_empty_batches_and_bad_seeds_are_refused_with_the_fix(editor):
    with pytest.raises(ImageFormatError, match="empty batch"):
        editor.edit(np.zeros((0, 32, 32, 3), np.uint8), STYLE, num_steps=1)
    for seed in (-1, 1.5, [0, -3], "7"):
        with pytest.raises(ValueError, match="seeds must be integers"):
            editor.edit(FRAMES, STYLE, num_steps=1, seed=seed)


def test_env_reset_seeds_styles_and_settings_are_checked_at_the_boundary():
    env = gym.make("EditedDrawer-v0", style="wood", preset="tiny", task="OpenTopDrawer", pose="b1", num_steps=1,
                   short_side=32)
    for seed in (-1, 1.5, 2**32, True):
        with pytest.raises(ValueError, match=r"reset\(seed=\.\.\.\) takes None or an integer"):
            env.reset(seed=seed)
    obs, _ = env.reset(seed=2**32 - 1)  # the largest seed the simulators take still works
    assert obs["image"]["overhead_camera"]["rgb"].dtype == np.uint8
    with pytest.raises(TypeError, match="Known styles: wood"):
        gym.make("EditedDrawer-v0", style=None, preset="tiny")
    with pytest.raises(ValueError, match="num_steps must be an integer >= 1, got 0"):
        gym.make("EditedDrawer-v0", style="wood", preset="tiny", num_steps=0)
    with pytest.raises(ValueError, match="guidance must be three finite numbers"):
        EditSettings(guidance=(7.5, math.nan, 3.0))
    with pytest.raises(ValueError, match="unknown preset 'small'"):
        gym.make("EditedDrawer-v0", style="wood", preset="small")
    with pytest.raises(ValueError, match="num_envs must be an integer >= 1"):
        envs.make_edited_vector_env(num_envs=0, style="wood", preset="tiny", vectorization_mode="sync")
    vec = envs.make_edited_vector_env(num_envs=2, style="wood", preset="tiny", vectorization_mode="sync", edit=False)
    with pytest.raises(ValueError, match="one per env"):
        vec.reset(seed=[0])
    vec.close()


@pytest.mark.parametrize("field, value", [("lora_rank", "8"), ("guidance", "strong"), ("num_steps", 0),
                                          ("scheduler", "dpm"), ("style_attention", {"num_heads": 2.5})])
def test_a_specialist_config_with_wrong_types_fails_when_read_naming_file_and_field(tmp_path, field, value):
    folder = tmp_path / "specialist"
    EditSpecialist.tiny(0).save_pretrained(folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    config[field] = value
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(SpecialistFormatError) as error:
        EditSpecialist.from_pretrained(specialist=folder)
    assert str(folder / CONFIG_NAME) in str(error.value) and field in str(error.value)


def test_training_config_fields_are_checked_when_made():
    with pytest.raises(ValueError) as error:
        TrainConfig(learning_rate=math.nan, num_denoising_steps=0, seed=-1, guidance=(7.5, 1.5, math.inf))
    for field in ("learning_rate", "num_denoising_steps", "seed", "guidance"):
        assert field in str(error.value)
    with pytest.raises(ValueError, match="eta"):
        TrainConfig(scheduler="ddim", eta=math.nan)


def test_gym_make_without_a_trained_specialist_gives_a_command_that_works():
    style = StyleRegistry.load().get("marble")
    with pytest.raises(FileNotFoundError) as error:
        gym.make("EditedDrawer-v0", style="marble")
    message = str(error.value)
    assert "collect_frames.py --out frames/" in message
    assert "train_specialist.py --style white_marble --frames frames/" in message  # fails without --frames
    assert "preset='tiny'" in message and "--preset tiny" in message  # the CPU way, without trained models
    assert str(style.specialist_dir) in message


def test_threads_default_to_one_for_small_models_on_a_cpu(editor, monkeypatch):
    """Contended intra-op threads make tiny CPU edits several times slower; torch's setting is restored."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    model = EditSpecialist.tiny(0)
    seen = []
    model.unet.register_forward_pre_hook(lambda module, args: seen.append(torch.get_num_threads()))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model.edit(FRAMES, STYLE, num_steps=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    assert seen and set(seen) == {1}


@pytest.mark.parametrize("shape", [(0, 0, 3), (32, 0, 3), (0, 32, 3)])
def test_an_empty_style_image_is_refused_not_edited(editor, shape):
    empty = np.zeros(shape, np.uint8)
    with pytest.raises(ImageFormatError, match=r"`style_images` holds empty images"):
        editor.edit(FRAMES, empty, num_steps=2)
    with pytest.raises(ImageFormatError, match=r"`style_image` holds empty images"):  # when an env is made
        FrameEditor(editor, empty)
    with pytest.raises(ImageFormatError, match=r"`images` holds empty images"):
        editor.edit(np.zeros((1, *shape), np.uint8), STYLE, num_steps=2)


def test_denoising_settings_with_no_stochastic_step_are_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"num_denoising_steps=1 with the euler_ancestral scheduler leaves no "
                                         r"denoising step to train: its last step lands on t=0"):
        TrainConfig(num_denoising_steps=1)
    # The rule is the sampler's: every Euler-ancestral step but the last adds noise, and a DDIM step with eta > 0
    # does, so these settings leave something to train.
    model = EditSpecialist.tiny(0)
    for scheduler, steps in (("euler_ancestral", 2), ("ddim", 2)):
        TrainConfig(scheduler=scheduler, num_denoising_steps=steps)
        sampler = model.make_sampler(scheduler, steps, 1.0)
        assert any(sampler.is_stochastic(index) for index in range(steps)), (scheduler, steps)
    assert not model.make_sampler("euler_ancestral", 1, 1.0).is_stochastic(0)
    # Whether one DDIM step adds noise depends on the base's scheduler (here its last alpha is 1: it does not);
    # the trainer checks the sampler it builds before the first step.
    assert not model.make_sampler("ddim", 1, 1.0).is_stochastic(0)
    config = tiny_config(output_dir=str(tmp_path / "run"), scheduler="ddim", num_denoising_steps=1, short_side=32,
                         samples_per_step=4, sample_batch_size=2, train_batch_size=2, optimizer_steps=1)
    frames = TrainingFrames(np.repeat(FRAMES, 2, axis=0), np.ones((4, 32, 32), bool), np.ones(4, bool),
                            ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="none of the 1 ddim denoising steps adds noise"):
        train(config, frames=frames, exemplars=[STYLE], model=model, progress=False,
              feedback=Feedback.analytic(FeedbackConfig(style_mask="full")))
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_the_script_refuses_one_euler_ancestral_step_before_it_trains(tmp_path, monkeypatch, capsys):
    import importlib.util
    from pathlib import Path

    from sim2real_edit import cli

    script = Path(__file__).resolve().parents[1] / "scripts" / "train_specialist.py"
    spec = importlib.util.spec_from_file_location("train_specialist", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    output = tmp_path / "out"
    with pytest.raises(SystemExit) as ended:
        cli.run_main(module.main, ["--style", "wood", "--preset", "tiny", "--denoising-steps", "1",
                                   "--output", str(output)])
    error = capsys.readouterr().err
    assert ended.value.code == 2 and len(error.strip().splitlines()) == 1
    assert "leaves no denoising step to train" in error and "Use at least 2 denoising steps" in error
    assert not output.exists()  # refused before the run wrote anything
