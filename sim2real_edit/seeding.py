"""Seeds derived from other seeds (and names): stable across runs, processes and machines."""

from __future__ import annotations

import numpy as np

SEED_MODULUS = 2**31 - 1  # derived seeds fit every consumer: numpy, torch and the simulators
MAX_RESET_SEED = 2**32 - 1  # what the simulators' random states accept (numpy RandomState)


def derive_seed(*entropy: int) -> int:
    """A seed in [0, SEED_MODULUS) that depends only on `entropy` (well mixed: nearby inputs give unrelated seeds)."""
    return int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1)[0] % SEED_MODULUS)


def check_reset_seed(seed: object) -> int | None:
    """An env reset's seed: None, or an integer in [0, 2**32 - 1] (as Gymnasium and SIMPLER need)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_RESET_SEED:
        raise ValueError(f"reset(seed=...) takes None or an integer in [0, {MAX_RESET_SEED}], got {seed!r}")
    return int(seed)
