"""Exponential backoff with jitter: the one way the runtime waits before trying again, whether
it restarts a failed actor or retries a store that fails."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential restart delay: `min * factor**(n-1)` for the n-th restart within the intensity
    window, capped at `max`, stretched by up to `jitter` (a fraction) at random so that many
    actors failing together do not restart in lockstep."""

    min: float = 0.01
    max: float = 5.0
    factor: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not (0 <= self.min <= self.max) or self.factor < 1 or not (0 <= self.jitter <= 1):
            raise ValueError(f"invalid backoff {self}: need 0 <= min <= max, factor >= 1, "
                             "0 <= jitter <= 1")

    def delay(self, restart: int, rng: random.Random) -> float:
        base = min(self.max, self.min * self.factor ** max(0, restart - 1))
        return base * (1 + self.jitter * rng.random())


# Between attempts while the store fails (the writer's batches, a restart's load).
STORE_RETRY = Backoff(min=0.05, max=5.0)
