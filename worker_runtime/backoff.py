"""Exponential, capped, jittered backoff (pure; the caller sleeps)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delay grows base * factor**n up to cap; "full jitter" spreads retries of many pods apart."""

    base: float = 0.1
    cap: float = 10.0
    factor: float = 2.0
    jitter: float = 0.5  # fraction of the delay that is randomised
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        raw = min(self.cap, self.base * self.factor**self.attempts)
        self.attempts += 1
        spread = raw * self.jitter
        return raw - spread + self.rng.random() * spread

    def reset(self) -> None:
        self.attempts = 0
