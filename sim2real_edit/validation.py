"""Checks of config values at the boundary (constructors, files, command lines), so that a bad value fails at
once with its name, not later deep inside torch, peft or numpy."""

from __future__ import annotations

import math
import numbers

import numpy as np


def is_int(value: object, minimum: int | None = None) -> bool:
    """An integer (Python or numpy, not bool), at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        return False
    return minimum is None or value >= minimum


def is_number(value: object) -> bool:
    """A finite real number (not bool, NaN or infinite)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def is_numbers(value: object, count: int) -> bool:
    """A tuple or list of `count` finite numbers."""
    return isinstance(value, (tuple, list)) and len(value) == count and all(is_number(v) for v in value)


class FieldChecks:
    """Collects every invalid field of one config, then raises one ValueError that names them all."""

    def __init__(self, owner: object):
        self.owner = owner
        self.problems: list[str] = []

    def require(self, name: str, valid: bool, expected: str) -> None:
        if not valid:
            self.problems.append(f"{name} must be {expected}, got {getattr(self.owner, name)!r}")

    def raise_if_invalid(self) -> None:
        if self.problems:
            raise ValueError(f"invalid {type(self.owner).__name__}: " + "; ".join(self.problems))
