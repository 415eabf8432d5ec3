"""One seed derivation for the whole package: an independent 32-bit seed for every tuple of integers."""
from __future__ import annotations

import numpy as np


def derive_seed(*parts: int) -> int:
    """NumPy's SeedSequence hashing of the parts: streams for different tuples are independent."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])
