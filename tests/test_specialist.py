"""The editing specialist: equivalence with InstructPix2Pix, guidance, log-probs, persistence, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler
from PIL import Image

from sim2real_edit import (
    EditSpecialist,
    GuidanceScales,
    ImageFormatError,
    SpecialistFormatError,
    WeightsNotFoundError,
)
from sim2real_edit.components import tiny_base_components
from sim2real_edit.samplers import make_sampler

INSTRUCTION = "make the cupboard out of wood"


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def style() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)


def perturb_trainable(model: EditSpecialist, seed: int = 0, scale: float = 0.05) -> None:
    """Gives every trained tensor (LoRA, conv_in, style attention) random non-zero values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.trainable_parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)


def test_untrained_specialist_matches_instruct_pix2pix_pipeline(frames, style):
    base = tiny_base_components(0)
    pipe = base.instruct_pix2pix_pipeline()
    expected_latents = pipe(
        INSTRUCTION,
        image=Image.fromarray(frames[0]),
        num_inference_steps=6,
        guidance_scale=7.5,
        image_guidance_scale=1.5,
        generator=torch.Generator().manual_seed(7),
        output_type="latent",
    ).images

    model = EditSpecialist.tiny(0)
    cond = model.condition(frames[:1], style, INSTRUCTION)
    latents, _ = model.sample(cond, seed=7, num_steps=6, guidance=(7.5, 1.5, 3.0))
    torch.testing.assert_close(latents, expected_latents, rtol=1e-4, atol=1e-4)

    expected_images = pipe.vae.decode(expected_latents / pipe.vae.config.scaling_factor).sample
    expected_uint8 = ((expected_images / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1) * 255).round().byte().numpy()
    edited = model.edit(frames[:1], style, INSTRUCTION, num_steps=6, seed=7)
    assert np.abs(edited.astype(int) - expected_uint8.astype(int)).max() <= 1


class RecordingUNet(torch.nn.Module):
    """UNet stand-in: returns a known constant per guidance branch and records what it was given."""

    def __init__(self, real_unet, branch_values):
        super().__init__()
        self.conv_in = real_unet.conv_in
        self.branch_values = branch_values
        self.calls = []

    @property
    def dtype(self):
        return torch.float32

    @property
    def device(self):
        return torch.device("cpu")

    def forward(self, sample, timestep, encoder_hidden_states):
        self.calls.append((sample.clone(), encoder_hidden_states.clone()))
        batch = sample.shape[0] // 4
        out = torch.cat([torch.full((batch, 4, *sample.shape[2:]), v) for v in self.branch_values])
        return type("Out", (), {"sample": out})()


def test_guidance_combines_four_branches_by_the_formula(frames, style):
    model = EditSpecialist.tiny(0)
    perturb_trainable(model)  # style channels non-zero, so the branches' inputs can be told apart
    cond = model.condition(frames[:2], style, INSTRUCTION)
    values = (0.5, -1.25, 2.0, 3.5)  # e000, eI00, eIS0, eIST
    model.unet = RecordingUNet(model.unet, values)
    scales = GuidanceScales(text=7.5, image=1.5, style=3.0)
    sampler = make_sampler("euler_ancestral", model.scheduler_config, 4)
    eps = model.guided_noise(torch.zeros(2, 4, 4, 4), sampler, 0, cond, scales)
    e000, ei00, eis0, eist = values
    expected = e000 + 1.5 * (ei00 - e000) + 3.0 * (eis0 - ei00) + 7.5 * (eist - eis0)
    torch.testing.assert_close(eps, torch.full_like(eps, expected))

    sample, text = model.unet.calls[0]
    image_part, style_part = sample[:, 4:8].split(2), sample[:, 8:12].split(2)
    text_part = text.split(2)
    assert torch.all(image_part[0] == 0) and torch.all(style_part[0] == 0) and torch.all(style_part[1] == 0)
    for branch in (1, 2, 3):
        torch.testing.assert_close(image_part[branch], cond.image_latents)
    assert style_part[2].abs().sum() > 0 and style_part[3].abs().sum() > 0
    assert not torch.allclose(style_part[2], style_part[3])  # the style attention sees the branch's text
    for branch in (0, 1, 2):
        torch.testing.assert_close(text_part[branch], cond.empty_embeds)
    torch.testing.assert_close(text_part[3], cond.text_embeds)


def _independent_mean_std(model, name, eps, index, latents, num_steps):
    """Mean and std of a step taken from diffusers' own schedulers (not our sampler code)."""
    if name == "euler_ancestral":
        scheduler = EulerAncestralDiscreteScheduler.from_config(model.scheduler_config)
        scheduler.set_timesteps(num_steps)
        outs = []
        for seed in (1, 2):
            scheduler._step_index = index
            noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed))
            prev = scheduler.step(eps, scheduler.timesteps[index], latents,
                                  generator=torch.Generator().manual_seed(seed)).prev_sample
            outs.append((prev, noise))
        (p1, n1), (p2, n2) = outs
        std = ((p1 - p2) / (n1 - n2)).flatten()[0]
        return p1 - std * n1, std
    scheduler = DDIMScheduler.from_config(model.scheduler_config, clip_sample=False)
    scheduler.set_timesteps(num_steps)
    t = scheduler.timesteps[index]
    mean = scheduler.step(eps, t, latents, eta=1.0, variance_noise=torch.zeros_like(latents)).prev_sample
    plus = scheduler.step(eps, t, latents, eta=1.0, variance_noise=torch.ones_like(latents)).prev_sample
    return mean, (plus - mean).flatten()[0]


@pytest.mark.parametrize("scheduler", ["euler_ancestral", "ddim"])
def test_step_log_probs_equal_an_independent_gaussian_density(frames, style, scheduler):
    model = EditSpecialist.tiny(0)
    perturb_trainable(model)
    cond = model.condition(frames[:2], style, INSTRUCTION)
    steps = 5
    _, trajectory = model.sample(cond, seed=[3, 4], num_steps=steps, scheduler=scheduler, eta=1.0,
                                 return_trajectory=True)
    sampler = model.make_sampler(trajectory.scheduler, trajectory.num_steps, trajectory.eta)
    for index in range(steps):
        x_t, x_next = trajectory.latents[index], trajectory.latents[index + 1]
        with torch.no_grad():
            eps = model.guided_noise(x_t, sampler, index, cond, trajectory.guidance)
        mean, std = _independent_mean_std(model, scheduler, eps, index, x_t, steps)
        if float(std) == 0.0:
            assert not trajectory.stochastic[index]
            torch.testing.assert_close(x_next, mean, rtol=1e-5, atol=1e-5)
            continue
        expected = torch.distributions.Normal(mean.double(), float(std)).log_prob(x_next.double()).flatten(1).mean(1)
        torch.testing.assert_close(trajectory.log_probs[index].double(), expected, rtol=1e-5, atol=1e-4)
        with torch.no_grad():
            recomputed = model.step_log_prob(cond, x_t, x_next, sampler, index, trajectory.guidance)
        torch.testing.assert_close(recomputed.double(), expected, rtol=1e-5, atol=1e-4)
    if scheduler == "euler_ancestral":
        assert not trajectory.stochastic[-1]  # the last Euler-ancestral step lands without noise


def test_edit_of_an_image_does_not_depend_on_the_batch(frames, style):
    model = EditSpecialist.tiny(0)
    perturb_trainable(model)
    together = model.edit(frames, style, INSTRUCTION, num_steps=4, seed=[10, 11, 12])
    for i, seed in enumerate((10, 11, 12)):
        alone = model.edit(frames[i : i + 1], style, INSTRUCTION, num_steps=4, seed=seed)
        assert np.abs(alone.astype(int) - together[i : i + 1].astype(int)).max() <= 1
    assert not np.array_equal(together[0], model.edit(frames[:1], style, INSTRUCTION, num_steps=4, seed=99)[0])


def test_edit_returns_uint8_nhwc_and_accepts_pil_and_float(frames, style):
    model = EditSpecialist.tiny(0)
    from_uint8 = model.edit(frames[:1], style, num_steps=2, seed=0)
    assert from_uint8.shape == (1, 32, 32, 3) and from_uint8.dtype == np.uint8
    from_pil = model.edit(Image.fromarray(frames[0]), Image.fromarray(style), num_steps=2, seed=0)
    from_float = model.edit(frames[:1].astype(np.float32) / 255, style, num_steps=2, seed=0)
    np.testing.assert_array_equal(from_pil, from_uint8)
    np.testing.assert_array_equal(from_float, from_uint8)


def test_style_image_matters_only_after_training(frames, style):
    model = EditSpecialist.tiny(0)
    other_style = 255 - style
    a = model.edit(frames[:1], style, num_steps=3, seed=0)
    b = model.edit(frames[:1], other_style, num_steps=3, seed=0)
    np.testing.assert_array_equal(a, b)  # zero-initialised style channels: the style drops out
    perturb_trainable(model, scale=0.3)
    a = model.edit(frames[:1], style, num_steps=3, seed=0)
    b = model.edit(frames[:1], other_style, num_steps=3, seed=0)
    assert not np.array_equal(a, b)


def test_reference_policy_is_the_untrained_network(frames, style):
    untrained = EditSpecialist.tiny(0)
    model = EditSpecialist.tiny(0)
    model.prepare_for_training()
    perturb_trainable(model)
    cond = model.condition(frames[:1], style)
    sampler = make_sampler("euler_ancestral", model.scheduler_config, 4)
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0)) * sampler.init_noise_sigma
    scales = GuidanceScales()
    with torch.no_grad():
        expected = untrained.guided_noise(x, sampler, 1, untrained.condition(frames[:1], style), scales)
        trained = model.guided_noise(x, sampler, 1, cond, scales)
        with model.reference_policy():
            reference = model.guided_noise(x, sampler, 1, cond, scales)
        after = model.guided_noise(x, sampler, 1, cond, scales)
    torch.testing.assert_close(reference, expected)
    assert not torch.allclose(trained, expected)
    torch.testing.assert_close(after, trained)


def test_save_and_load_give_bit_identical_edits(tmp_path, frames, style):
    model = EditSpecialist.tiny(0, style="wood", instruction=INSTRUCTION)
    perturb_trainable(model)
    folder = model.save_pretrained(tmp_path / "wood", exemplars=[style])
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size < 2_000_000
    config = json.loads((folder / "specialist_config.json").read_text())
    assert config["style"] == "wood" and config["guidance"] == [7.5, 1.5, 3.0] and config["base"] == "tiny:0"

    loaded = EditSpecialist.from_pretrained(specialist=folder)
    np.testing.assert_array_equal(
        loaded.edit(frames, style, num_steps=3, seed=5), model.edit(frames, style, num_steps=3, seed=5)
    )
    np.testing.assert_array_equal(loaded.exemplars(folder)[0], style)
    assert not np.array_equal(
        EditSpecialist.tiny(0).edit(frames, style, num_steps=3, seed=5), model.edit(frames, style, num_steps=3, seed=5)
    )


def test_base_loads_from_a_local_diffusers_folder(tmp_path, frames, style):
    base = tiny_base_components(0)
    pipe = base.instruct_pix2pix_pipeline()
    pipe.save_pretrained(tmp_path / "ip2p")
    loaded = EditSpecialist.from_pretrained(base=str(tmp_path / "ip2p"))
    np.testing.assert_array_equal(
        loaded.edit(frames[:1], style, num_steps=3, seed=2),
        EditSpecialist.tiny(0).edit(frames[:1], style, num_steps=3, seed=2),
    )


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((1, 3, 32, 32), np.uint8), "channels-first"),
        (np.zeros((1, 32, 32, 4), np.uint8), r"\(N, H, W, 3\)"),
        (np.zeros((1, 32, 32, 3), np.int32), "dtype int32"),
        (np.full((1, 32, 32, 3), 2.0, np.float32), r"must lie in \[0, 1\]"),
        (np.zeros((1, 30, 32, 3), np.uint8), "multiples of 8"),
    ],
)
def test_bad_images_raise_errors_that_name_the_fix(images, message, style):
    model = EditSpecialist.tiny(0)
    with pytest.raises(ImageFormatError, match=message):
        model.edit(images, style, num_steps=1)


def test_mismatched_batches_and_unknown_scheduler_raise(frames, style):
    model = EditSpecialist.tiny(0)
    with pytest.raises(ImageFormatError, match="2 style images for 3 images"):
        model.edit(frames, np.stack([style, style]), num_steps=1)
    with pytest.raises(ValueError, match="2 seeds for 3 images"):
        model.edit(frames, style, num_steps=1, seed=[1, 2])
    with pytest.raises(ValueError, match="unknown scheduler 'heun'; choose one of euler_ancestral, ddim"):
        model.edit(frames, style, num_steps=1, scheduler="heun")


def test_missing_and_corrupt_specialist_folders_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_specialist.py"):
        EditSpecialist.from_pretrained(base="tiny", specialist=tmp_path / "nope")
    folder = EditSpecialist.tiny(0).save_pretrained(tmp_path / "s")
    (folder / "specialist_weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SpecialistFormatError, match="corrupt"):
        EditSpecialist.from_pretrained(specialist=folder)
    (folder / "specialist_weights.safetensors").unlink()
    with pytest.raises(SpecialistFormatError, match="lacks specialist_weights.safetensors"):
        EditSpecialist.from_pretrained(specialist=folder)
    wrong = EditSpecialist.tiny(0).save_pretrained(tmp_path / "wrong")
    config = json.loads((wrong / "specialist_config.json").read_text())
    config["lora_rank"] = 4
    (wrong / "specialist_config.json").write_text(json.dumps(config))
    with pytest.raises(SpecialistFormatError, match="has shape"):
        EditSpecialist.from_pretrained(specialist=wrong)


def test_weights_that_cannot_be_found_offline_name_the_hub_id_and_the_local_route(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="(?s)no-such-org/no-such-model.*local folder"):
        EditSpecialist.from_pretrained(base="no-such-org/no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match="no unet/ subfolder"):
        EditSpecialist.from_pretrained(base=str(tmp_path / "empty"))
