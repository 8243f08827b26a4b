"""One process of the two-process training test (launched by accelerate from test_distributed_training.py)."""

import os
import sys

import numpy as np
import torch

from sim2real_edit.d3po import tiny_config, train
from sim2real_edit.feedback import Feedback, FeedbackConfig, GradientDepth, MeanColourEmbedder
from sim2real_edit.frames import TrainingFrames


def main(output_dir: str) -> None:
    torch.set_num_threads(1)
    # argv[2]: how many processes the launcher must have started (a launcher that silently starts one
    # would make the comparison with the one-process run pass trivially).
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != int(sys.argv[2]):
        raise SystemExit(f"expected {sys.argv[2]} processes, the launcher started {world}")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    masks = np.zeros((8, 32, 32), bool)
    masks[:, 8:24, 8:24] = True
    feedback = Feedback(GradientDepth(), MeanColourEmbedder(), None, FeedbackConfig(style_mask="full"))
    config = tiny_config(output_dir=output_dir, optimizer_steps=2, samples_per_step=8, num_denoising_steps=3,
                         short_side=32, sample_batch_size=4, train_batch_size=4, learning_rate=1e-2)
    # No exemplars given: the style registry writes its procedural set on first use, which under a launcher
    # must happen once (main process first), not as a race where one process reads another's half file.
    train(config, frames=TrainingFrames(frames, masks, np.ones(8, bool), [str(i) for i in range(8)]),
          feedback=feedback, progress=False)


if __name__ == "__main__":
    main(sys.argv[1])
