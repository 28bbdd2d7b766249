"""Uniform random samples of a stream (reservoir sampling): one pass, memory of k items, reproducible for a
seeded generator and a fixed order (a manifest's order is fixed), so a re-run samples the same."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def reservoir(items: Iterable[T], k: int, rng: random.Random) -> list[T]:
    out: list[T] = []
    for n, item in enumerate(items):
        if n < k:
            out.append(item)
        else:
            j = rng.randrange(n + 1)
            if j < k:
                out[j] = item
    return out
