"""D3PO training: the loss formula, exact resume, the output folder, and proof on CPU that training learns."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sim2real_edit.d3po import TrainConfig, d3po_loss, tiny_config, train
from sim2real_edit.feedback import Feedback, FeedbackConfig
from sim2real_edit.frames import TrainingFrames
from sim2real_edit.specialist import EditSpecialist
from sim2real_edit.training_curves import PANELS, read_log, save_training_curves, training_figure

STYLE_COLOUR = (200, 140, 30)


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    """The style registry resolves its folders under tmp_path, so nothing is written outside it."""
    monkeypatch.setenv("SIM2REAL_EDIT_HOME", str(tmp_path / "home"))


def cabinet_frames(count: int, size: int, seed: int = 0) -> TrainingFrames:
    """Noisy grey frames with a bright cabinet rectangle at a random column, and its exact mask."""
    rng = np.random.default_rng(seed)
    frames = 90 + rng.integers(0, 40, size=(count, size, size, 3)).astype(np.uint8)
    masks = np.zeros((count, size, size), bool)
    for mask, column in zip(masks, rng.integers(size // 16, 5 * size // 16, size=count)):
        mask[size // 8 : 7 * size // 8, column : column + size // 2] = True
    frames[masks] = (200, 200, 205)
    return TrainingFrames(frames, masks, np.ones(count, bool), [f"{i:04d}" for i in range(count)])


def solid_style(colour: tuple[int, int, int], size: int = 32) -> np.ndarray:
    return np.full((size, size, 3), colour, np.uint8)


def analytic_feedback() -> Feedback:
    """Image gradients for depth and mean colour for the embedding; the style image is all material."""
    return Feedback.analytic(FeedbackConfig(style_mask="full"))


# ---------------------------------------------------------------------------------------------- the loss


def test_d3po_loss_equals_the_formula_and_clamped_ratios_get_no_gradient():
    beta, clamp = 0.1, 0.1
    low, high = math.log(1 - clamp), math.log(1 + clamp)
    # log pi - log pi_ref of (winner, other) per pair: inside the trust region, winner above / other below
    # it, both outside, and the winner's ratio below it (clamped to 1 - c).
    log_ratio_w = [0.05, 0.30, 0.50, -0.40]
    log_ratio_l = [-0.02, 0.01, -0.60, 0.03]
    ref_w = torch.tensor([-1.0, -2.0, 0.5, -0.3])
    ref_l = torch.tensor([-1.5, 0.2, -0.7, -2.0])
    log_prob_w = (ref_w + torch.tensor(log_ratio_w)).requires_grad_(True)
    log_prob_l = (ref_l + torch.tensor(log_ratio_l)).requires_grad_(True)

    loss = d3po_loss(log_prob_w, ref_w, log_prob_l, ref_l, beta=beta, ratio_clamp=clamp)

    def clipped(x: float) -> float:
        return min(max(x, low), high)

    expected = [
        -math.log(1 / (1 + math.exp(-(beta * clipped(w) - beta * clipped(lo)))))
        for w, lo in zip(log_ratio_w, log_ratio_l)
    ]
    torch.testing.assert_close(loss, torch.tensor(expected), rtol=1e-6, atol=1e-7)

    loss.sum().backward()
    for i, (w, lo) in enumerate(zip(log_ratio_w, log_ratio_l)):
        z = beta * clipped(w) - beta * clipped(lo)
        slope = beta * (1 - 1 / (1 + math.exp(-z)))  # -d/dz log sigmoid(z) = 1 - sigmoid(z)
        expected_w = 0.0 if clipped(w) != w else -slope
        expected_l = 0.0 if clipped(lo) != lo else slope
        assert log_prob_w.grad[i].item() == pytest.approx(expected_w, abs=1e-7)
        assert log_prob_l.grad[i].item() == pytest.approx(expected_l, abs=1e-7)
    # the clamped entries really are clamped, so the zeros above come from the clamp and not from the data
    assert log_prob_w.grad[1] == 0 and log_prob_w.grad[2] == 0 and log_prob_l.grad[2] == 0
    assert log_prob_w.grad[3] == 0 and log_prob_w.grad[0] < 0 and log_prob_l.grad[0] > 0


def test_d3po_loss_stays_finite_when_a_ratio_is_beyond_float_range():
    """A policy far from the reference has log-ratios beyond exp's float32 range (~88); clamped, they must
    give the clamp's value and a zero gradient, not inf/NaN that would poison the weights."""
    log_prob_w = torch.tensor([100.0, -150.0, 0.02], requires_grad=True)
    log_prob_l = torch.tensor([0.0, 0.0, 500.0], requires_grad=True)
    zeros = torch.zeros(3)
    loss = d3po_loss(log_prob_w, zeros, log_prob_l, zeros, beta=0.1, ratio_clamp=0.1)
    loss.sum().backward()
    expected = [-F.logsigmoid(torch.tensor(0.1 * math.log(1.1))), -F.logsigmoid(torch.tensor(0.1 * math.log(0.9))),
                -F.logsigmoid(torch.tensor(0.1 * 0.02 - 0.1 * math.log(1.1)))]
    torch.testing.assert_close(loss, torch.stack(expected))
    assert torch.isfinite(log_prob_w.grad).all() and torch.isfinite(log_prob_l.grad).all()
    assert log_prob_w.grad[0] == 0 and log_prob_w.grad[1] == 0 and log_prob_l.grad[2] == 0
    assert log_prob_w.grad[2] < 0
    # A clamp of 1 or more has no lower bound: the loss keeps growing instead of becoming inf.
    far_below = d3po_loss(torch.tensor([-300.0]), torch.zeros(1), torch.zeros(1), torch.zeros(1), 0.1, 2.0)
    torch.testing.assert_close(far_below, -F.logsigmoid(torch.tensor([-30.0])))


def test_d3po_loss_prefers_raising_the_winner():
    ref = torch.zeros(3)
    up = d3po_loss(torch.full((3,), 0.05), ref, torch.zeros(3), ref)
    down = d3po_loss(torch.full((3,), -0.05), ref, torch.zeros(3), ref)
    assert torch.all(up < math.log(2)) and torch.all(down > math.log(2))
    torch.testing.assert_close(d3po_loss(ref, ref, ref, ref), torch.full((3,), math.log(2)))


# ---------------------------------------------------------------------------------------------- runs


def small_config(output_dir: Path, **overrides) -> TrainConfig:
    values = {
        "output_dir": str(output_dir),
        "base": "tiny:0",  # the random tiny stack: these tests are about the loop's bookkeeping, not its quality
        "short_side": 32,
        "num_denoising_steps": 3,
        "samples_per_step": 4,
        "sample_batch_size": 2,
        "train_batch_size": 1,
        "optimizer_steps": 3,
        "learning_rate": 1e-3,
    }
    values.update(overrides)
    return tiny_config(**values)


@pytest.fixture(scope="module")
def run_inputs() -> dict:
    return {
        "frames": cabinet_frames(6, 32, seed=1),
        "exemplars": [solid_style(STYLE_COLOUR), solid_style((60, 90, 200))],
        "feedback": analytic_feedback(),
        "progress": False,
    }


def trainable_weights(folder: Path) -> dict[str, torch.Tensor]:
    model = EditSpecialist.from_pretrained(specialist=folder)
    return {k: v.detach().clone() for k, v in model.trainable_state_dict().items()}


def log_without_times(folder: Path) -> list[dict]:
    """The JSONL log without wall-clock times."""
    entries = read_log(folder)
    return [{k: v for k, v in entry.items() if not k.endswith("seconds")} for entry in entries]


class Killed(Exception):
    """Stands in for the process being killed right after a checkpoint was written."""


def test_resumed_runs_give_the_weights_and_log_of_an_uninterrupted_run(tmp_path, run_inputs, monkeypatch):
    straight = train(small_config(tmp_path / "straight"), **run_inputs)
    assert [e["step"] for e in straight.log] == [0, 1, 2]

    # Killed while checkpointing step 1: step 0 is checkpointed, step 1 is logged but must be redone.
    from sim2real_edit import d3po

    save = d3po.Checkpoints.save

    def die_at_step_1(self, step, *args, **kwargs):
        if step == 1:
            raise Killed
        save(self, step, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(d3po.Checkpoints, "save", die_at_step_1)
        with pytest.raises(Killed):
            train(small_config(tmp_path / "killed"), **run_inputs)
    assert [entry["step"] for entry in log_without_times(tmp_path / "killed")] == [0, 1]
    resumed = train(small_config(tmp_path / "killed"), resume=True, **run_inputs)

    # A finished 1-step run extended to 3 steps.
    train(small_config(tmp_path / "extended", optimizer_steps=1), **run_inputs)
    extended = train(small_config(tmp_path / "extended"), resume=True, **run_inputs)

    expected = trainable_weights(tmp_path / "straight")
    assert any(not torch.equal(v, EditSpecialist.tiny(0).trainable_state_dict()[k]) for k, v in expected.items()
               if k.startswith("unet."))  # training moved the LoRA weights
    for name in ("killed", "extended"):
        weights = trainable_weights(tmp_path / name)
        assert weights.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(weights[key], value, rtol=0, atol=1e-6, msg=f"{name}: {key}")
        assert log_without_times(tmp_path / name) == log_without_times(tmp_path / "straight")
    for result in (resumed, extended):
        assert [e["step"] for e in result.log] == [0, 1, 2]


def test_existing_checkpoints_need_resume_and_the_same_config(tmp_path, run_inputs):
    train(small_config(tmp_path / "run", optimizer_steps=1), **run_inputs)
    with pytest.raises(FileExistsError, match="resume"):
        train(small_config(tmp_path / "run", optimizer_steps=1), **run_inputs)
    with pytest.raises(ValueError, match="another configuration"):
        train(small_config(tmp_path / "run", learning_rate=5e-3), resume=True, **run_inputs)


def test_final_folder_loads_as_a_specialist_with_model_card_and_log(tmp_path, run_inputs):
    folder = tmp_path / "wood"
    result = train(small_config(folder, optimizer_steps=2), **run_inputs)

    loaded = EditSpecialist.from_pretrained(specialist=folder)
    for key, value in result.model.trainable_state_dict().items():
        assert torch.equal(loaded.trainable_state_dict()[key], value.detach().cpu()), key
    assert loaded.config.style == "wood" and loaded.config.instruction == "make the cupboard out of wood"
    assert len(loaded.exemplars(folder)) == 2

    card = (folder / "README.md").read_text()
    assert "wood" in card and "Final scores" in card and "sha256" in card
    assert "training_curves.png" in card and (folder / "training_curves.png").is_file()
    log = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [0, 1]
    for key in ("loss", "structure", "semantic", "win_margin", "grad_norm"):
        assert all(math.isfinite(entry[key]) for entry in log), key

    frames = run_inputs["frames"].frames[:2]
    edits = loaded.edit(frames, run_inputs["exemplars"][0], num_steps=3, seed=5)
    expected = result.model.edit(frames, run_inputs["exemplars"][0], num_steps=3, seed=5)
    # The weights are equal (above); the in-memory model's LoRA tensors were re-allocated for training, which
    # can round one float differently: edits agree to within one grey level.
    assert np.abs(edits.astype(int) - expected.astype(int)).max() <= 1


# ------------------------------------------------------------------------------ proof that it learns

HELD_OUT_SEED = 1_000_000  # training draws its noise seeds at random from [0, 2**31); these are not reused
INSTRUCTION = "make the cupboard out of wood"


@pytest.mark.experiment
def test_d3po_repaints_the_cabinet_inside_its_mask_and_beats_identity_untrained_and_random_preferences(
        tmp_path, full_tiny_base_folder, monkeypatch, both_cores):
    """The miniature's recipe (`tiny_config`) at a test's size: D3PO on simulator frames with exact masks and the
    white-marble exemplars, scored on held-out frames and held-out noise seeds against what a skeptic tries
    first - the input returned, the untrained specialist, and a control trained the same way on coin-flip
    preferences. The trained specialist must beat all three on the judges' total (paired over seed rounds), move
    the cabinet's colour toward the exemplars', and put its change inside the mask rather than outside.

    It needs the full tiny base and about 4 minutes, so it is an `experiment` (`python -m pytest -m experiment`),
    not part of the default run: on the tests' small base (23 dB edits instead of 26.5) the same loop did not
    learn (seed 0: trained 0.480 against untrained 0.398), so the small base cannot stand in for it. Measured on
    the full base (2-core CPU): trained 0.310, identity 0.430, untrained 0.368, random preferences 0.394."""
    from envs.tiny_base import stand_in_frames
    from miniature.scorecard import identity_edit, score_edits, specialist_edit
    from sim2real_edit.styles import StyleRegistry

    monkeypatch.setenv("SIM2REAL_EDIT_TINY_BASE", str(full_tiny_base_folder))
    exemplars = StyleRegistry.load().get("white_marble").exemplars()
    frames, masks = stand_in_frames(24, seed=1)  # 64x80, the recipe's edit size
    training = TrainingFrames(frames, masks, np.ones(len(frames), bool), [f"{i:04d}" for i in range(len(frames))])
    held_frames, held_masks = stand_in_frames(8, seed=2)

    recipe = {"style": "white_marble", "short_side": frames.shape[1], "samples_per_step": 32, "seed": 0}
    trained = train(tiny_config(output_dir=str(tmp_path / "trained"), **recipe), frames=training,
                    exemplars=exemplars, progress=False)
    control = train(tiny_config(output_dir=str(tmp_path / "control"), preference="random", **recipe),
                    frames=training, exemplars=exemplars, progress=False)
    assert sum(entry["updated"] for entry in trained.log) >= 2, "the trust region stopped every update but one"

    feedback = Feedback.from_config(tiny_config().feedback)
    instruction, steps = trained.model.config.instruction, tiny_config().num_denoising_steps
    methods = {"identity": identity_edit,
               "untrained": specialist_edit(EditSpecialist.from_pretrained(base="tiny-trained"), instruction, steps),
               "random preferences": specialist_edit(control.model, instruction, steps),
               "trained": specialist_edit(trained.model, instruction, steps)}
    cards = {name: score_edits(name, edit, held_frames, held_masks, exemplars, feedback, rounds=4)
             for name, edit in methods.items()}
    table = "\n".join(f"{c.method:>18}: total {c.total:.4f} +- {c.total_spread:.4f}, outside {c.outside_change:.1f}, "
                      f"inside {c.inside_change:.1f}, colour distance {c.colour_distance:.1f}" for c in cards.values())
    best = cards["trained"]
    for name in ("identity", "untrained", "random preferences"):
        other = cards[name]
        assert best.total + 2 * best.total_spread < other.total - 2 * other.total_spread, f"vs {name}:\n{table}"
        assert best.wins_against(other) == 1.0, f"vs {name} on every round of seeds:\n{table}"
    assert best.colour_distance < cards["untrained"].colour_distance - 5, table
    # Confined to the mask: per pixel, training adds more change inside the mask than outside (1.9x measured),
    # and the change outside stays within 1.5x the untrained base's own reconstruction drift (1.3x measured).
    added_inside = best.inside_change - cards["untrained"].inside_change
    added_outside = best.outside_change - cards["untrained"].outside_change
    assert added_inside > 1.5 * max(added_outside, 0.0), table
    assert best.outside_change < 1.5 * cards["untrained"].outside_change, table


def test_training_curves_draw_every_logged_value_per_step(tmp_path):
    log = [
        {"step": 0, "structure": 0.05, "semantic": 1.6, "loss": 0.69, "mean_abs_log_ratio": 0.0,
         "clamped_fraction": 0.0, "grad_norm": 1.3},
        {"step": 1, "structure": 0.04, "semantic": 1.5, "loss": 0.68, "mean_abs_log_ratio": 0.2,
         "clamped_fraction": 0.1, "grad_norm": 0.9},
    ]
    figure = training_figure(log)
    drawn = {line.get_label(): list(line.get_ydata()) for ax in figure.axes for line in ax.get_lines()}
    for _, keys in PANELS:
        for key in keys:
            assert drawn[key] == [entry[key] for entry in log], key
    path = save_training_curves(log, tmp_path / "curves.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 400
    with pytest.raises(ValueError, match="empty"):
        training_figure([])
    with pytest.raises(FileNotFoundError, match="train_specialist"):
        read_log(tmp_path)
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in log))
    assert read_log(tmp_path) == log
