"""Behaviour cloning of the CNN drawer policy (`policies.cnn`) from expert demonstrations, with checkpoints
saved along a training run so that the policies' skill is graded, as RT-1's published checkpoints are
(begin, 15%, converged). A family of policies is several runs that differ in seed and augmentation strength
(`augmentation_scaled`; the family itself is `miniature.policy_family.family_runs`).

Decided before any policy was trained, not tuned to results:

- augmentation: a random shift of up to ``max_shift`` pixels (edges repeated), brightness x U(1 - b, 1 + b)
  per image (b = ``brightness``, 0.1), Gaussian pixel noise of sigma ``pixel_noise`` (0.02 of the [0, 1]
  range, the same in the three channels);
- loss: squared error of the tcp motion (in units of the expert's step) plus the binary cross-entropies of
  the gripper (close or open) and of terminate;
- AdamW, a short linear warm-up, then cosine decay to zero at the last step.

Changed after trial runs, for the CPU budget only: the pixel noise was made the same in the three channels
(a third of the cost), and the run length was set to 1200 steps of 64 (trial runs: 1000 and 1500 steps).

Changed after measuring in the miniature real world only (issue 24, before any edited evaluation of the new
family): the checkpoint fractions were 1/27, 1/9, 1/3, 1; the first two checkpoints averaged 0.03 and 0.11
real-world success (they fail everywhere and carry no ranking signal), so they are now
``CHECKPOINT_FRACTIONS`` = 1/6, 1/3, 2/3, 1, graded between half-trained and converged.

Reproducible: the same demonstrations, settings and torch thread count give the same checkpoints.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from policies.cnn import CNNPolicy, CNNPolicyConfig

from .demonstrations import Demonstrations

CHECKPOINT_FRACTIONS: tuple[float, ...] = (1 / 6, 1 / 3, 2 / 3, 1.0)
LOG_SUFFIX = "training_log.jsonl"


@dataclass(frozen=True)
class TrainingSettings:
    """One behaviour-cloning run (see the module docstring)."""

    steps: int = 1200
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    max_shift: int = 2
    brightness: float = 0.1
    pixel_noise: float = 0.02
    checkpoint_fractions: tuple[float, ...] = CHECKPOINT_FRACTIONS
    name_prefix: str = "cnn-bc"
    seed: int = 0
    torch_threads: int = 1
    policy: CNNPolicyConfig = field(default_factory=CNNPolicyConfig)

    def checkpoint_steps(self) -> list[int]:
        """The optimizer steps after which a checkpoint is saved, ascending and distinct."""
        steps = sorted({max(1, round(self.steps * fraction)) for fraction in self.checkpoint_fractions})
        if len(steps) != len(self.checkpoint_fractions):
            raise ValueError(
                f"{self.steps} training steps are too few for {len(self.checkpoint_fractions)} distinct "
                f"checkpoints at fractions {self.checkpoint_fractions}; train for more steps"
            )
        return steps

    def checkpoint_name(self, step: int) -> str:
        return f"{self.name_prefix}-{step:05d}"

    def log_name(self) -> str:
        """The run's training log, beside its checkpoints (one per run: runs share a checkpoint folder)."""
        return f"{self.name_prefix}.{LOG_SUFFIX}"


def augmentation_scaled(settings: TrainingSettings, factor: float) -> TrainingSettings:
    """``settings`` with every augmentation strength (shift, brightness, pixel noise) times ``factor``; 0
    trains on the frames as recorded."""
    if factor < 0:
        raise ValueError(f"an augmentation factor is at least 0, got {factor}")
    return replace(
        settings,
        max_shift=round(settings.max_shift * factor),
        brightness=settings.brightness * factor,
        pixel_noise=settings.pixel_noise * factor,
    )


def augment(images: torch.Tensor, settings: TrainingSettings, generator: torch.Generator) -> torch.Tensor:
    """Random shift, brightness and pixel noise of a batch of (N, 3, h, w) float images in [0, 1]."""
    n, _, height, width = images.shape
    shift = settings.max_shift
    if shift > 0:
        padded = F.pad(images, (shift, shift, shift, shift), mode="replicate")
        offsets = torch.randint(0, 2 * shift + 1, (n, 2), generator=generator)
        images = torch.stack(
            [padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets.tolist())]
        )
    scale = 1.0 + settings.brightness * (2 * torch.rand(n, 1, 1, 1, generator=generator) - 1)
    noise = settings.pixel_noise * torch.randn((n, 1, height, width), generator=generator)  # grey: 1/3 the cost
    return (images * scale + noise).clamp(0.0, 1.0)


def _learning_rate(settings: TrainingSettings, step: int) -> float:
    """Learning rate of optimizer step ``step`` (1-based)."""
    if step <= settings.warmup_steps:
        return settings.learning_rate * step / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(settings.steps - settings.warmup_steps, 1)
    return settings.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_behaviour_cloning(
    demonstrations: Demonstrations,
    settings: TrainingSettings,
    out_dir: str | Path,
    progress: bool = True,
    on_checkpoint: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Trains one policy on ``demonstrations`` and saves it at `TrainingSettings.checkpoint_steps` under
    ``out_dir/<name>``; returns the checkpoint folders, least trained first. ``out_dir/<log_name()>`` gets
    one line of losses per logged step; ``on_checkpoint`` is called with each folder once it is saved
    (e.g. to start measuring it while training goes on)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_steps = settings.checkpoint_steps()
    torch.set_num_threads(settings.torch_threads)
    policy = CNNPolicy.initialise(settings.policy, name=settings.name_prefix)
    network = policy.network.train()
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    generator = torch.Generator().manual_seed(settings.seed)
    images = torch.from_numpy(demonstrations.images)
    tasks = torch.from_numpy(demonstrations.tasks)
    proprio = torch.from_numpy(demonstrations.proprio)
    motion = torch.from_numpy(demonstrations.motion) / settings.policy.action_scale
    close = torch.from_numpy(demonstrations.close)
    terminate = torch.from_numpy(demonstrations.terminate)
    saved: list[Path] = []
    started, cpu_started = time.perf_counter(), time.process_time()
    log_path = out_dir / settings.log_name()
    with (
        log_path.open("w") as log,
        tqdm(total=settings.steps, desc="behaviour cloning", unit="step", disable=not progress) as bar,
    ):
        for step in range(1, settings.steps + 1):
            batch = torch.randint(0, len(tasks), (settings.batch_size,), generator=generator)
            # index_select: an order of magnitude faster than fancy indexing of a 4-D uint8 tensor.
            inputs = augment(images.index_select(0, batch).float().div_(255.0), settings, generator)
            predicted_motion, close_logit, terminate_logit = network(
                inputs, tasks.index_select(0, batch), proprio.index_select(0, batch)
            )
            motion_loss = F.mse_loss(predicted_motion, motion.index_select(0, batch))
            close_loss = F.binary_cross_entropy_with_logits(close_logit, close.index_select(0, batch))
            terminate_loss = F.binary_cross_entropy_with_logits(
                terminate_logit, terminate.index_select(0, batch)
            )
            loss = motion_loss + close_loss + terminate_loss
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(settings, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.update(1)
            if step % 10 == 0 or step in checkpoint_steps:
                record = {
                    "step": step,
                    "loss": loss.item(),
                    "motion": motion_loss.item(),
                    "close": close_loss.item(),
                    "terminate": terminate_loss.item(),
                    "lr": _learning_rate(settings, step),
                    "wall_s": round(time.perf_counter() - started, 2),
                    "cpu_s": round(time.process_time() - cpu_started, 2),
                }
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{record['loss']:.3f}")
            if step in checkpoint_steps:
                network.eval()
                folder = out_dir / settings.checkpoint_name(step)
                # Written whole under another name, then renamed: a folder that exists is a complete checkpoint.
                partial = out_dir / f".{folder.name}.partial"
                shutil.rmtree(partial, ignore_errors=True)
                shutil.rmtree(folder, ignore_errors=True)
                policy.save_pretrained(
                    partial,
                    metadata={
                        "training_step": step,
                        "training_steps": settings.steps,
                        "demonstration_steps": len(tasks),
                        "training": _json_settings(settings),
                    },
                )
                partial.rename(folder)
                saved.append(folder)
                if on_checkpoint is not None:
                    on_checkpoint(folder)
                network.train()
    return saved


def _json_settings(settings: TrainingSettings) -> dict:
    return json.loads(json.dumps(asdict(settings)))
