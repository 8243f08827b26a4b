"""Seeds derived from other seeds (and names): stable across runs, processes and machines."""

from __future__ import annotations

import numpy as np

SEED_MODULUS = 2**31 - 1  # derived seeds fit every consumer: numpy, torch and the simulators


def derive_seed(*entropy: int) -> int:
    """A seed in [0, SEED_MODULUS) that depends only on `entropy` (well mixed: nearby inputs give unrelated seeds)."""
    return int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1)[0] % SEED_MODULUS)
