"""Bootstrap intervals of the statistics of Bau et al.'s interventions, over evaluation images.

Every statistic here (a class's balanced accuracy, a drop, a margin between two interventions, the
share of a class's samples removed) is a function of the *means* of per-image vectors measured on
one fixed set of images: true positives, true negatives and positives of each class for the
balanced accuracy, "the classifier sees class c" for a generator's samples. `MeanVectors` names
those vectors and hands a function of their means to `repro.stats.means_interval`, which
resamples the images (the same resamples for every vector of a call: a paired bootstrap, 1,000
resamples, seed 0, 95 % percentile interval).

Map from the paper to the code:
- (ours; the paper prints no interval) per-image vectors and the interval of a function of
  their means -> `MeanVectors`, `MeanVectors.interval`
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from repro import ReproError
from repro.stats import Interval, means_interval

__all__ = ["MeanVectors"]

Means = dict[str, np.ndarray]


class MeanVectors:
    """Per-image vectors by name (all over the same n images, in the same order)."""

    def __init__(self) -> None:
        self.vectors: dict[str, np.ndarray] = {}

    def add(self, name: str, vector: Any) -> None:
        """Keep `vector` (a tensor or an array of n numbers) under `name`."""
        if hasattr(vector, "detach"):
            vector = vector.detach().cpu().numpy()
        v = np.asarray(vector, dtype=np.float64).reshape(-1)
        if self.vectors and v.size != next(iter(self.vectors.values())).size:
            raise ReproError(f"MeanVectors: {name} has {v.size} values, the others differ")
        self.vectors[name] = v

    def mean(self, name: str) -> float:
        """The mean of one vector."""
        return float(self.vectors[name].mean())

    def estimate(self, func: Callable[[Means], np.ndarray], names: Sequence[str]) -> float:
        """`func` of the means of the vectors `names` (no resampling)."""
        return float(np.asarray(func({n: self.vectors[n].mean()[None] for n in names}))[0])

    def interval(self, func: Callable[[Means], np.ndarray], names: Sequence[str]) -> Interval:
        """The bootstrap interval of `func(means)`, where `means[name]` holds, for each resample,
        the mean of vector `name` (shape (B,)); only the vectors `names` are resampled."""
        missing = [n for n in names if n not in self.vectors]
        if missing:
            raise ReproError(f"MeanVectors: no vector {', '.join(missing)}")
        order = list(dict.fromkeys(names))

        def over_columns(m: np.ndarray) -> np.ndarray:
            return np.asarray(func({n: m[:, i] for i, n in enumerate(order)}))

        return means_interval([self.vectors[n] for n in order], over_columns)
