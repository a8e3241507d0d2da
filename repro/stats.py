"""Bootstrap confidence intervals over evaluation images, for accuracies and claims' margins.

A run evaluates every model on one fixed set of images, so an accuracy is the mean of a per-image
0/1 vector, and the same images are behind every accuracy of the run. The uncertainty that
matters at reduced scales is which images were drawn (200 images carry about +-3 points), so the
interval resamples images: B bootstrap resamples of the n images (with replacement, the same
resamples for every vector of one call, so differences between accuracies on the same images are
*paired*), the statistic on each, and the percentile interval (95 %, B = 1,000, seed 0: fixed,
so a rerun gives the same interval).

    correct = (pred == y)                                   # per image, in evaluation order
    rec.row(row_id, correct.float().mean(), correct=pack_bits(correct), ...)   # the notebook
    mean_interval(correct)                -> Interval(0.85, 0.80, 0.90)
    difference_interval(a, b)             -> mean(a) - mean(b), paired over the same images
    means_interval([a, b, c], func)       -> any function of the vectors' means (a margin, a ratio)
    auc_interval(clean_scores, adv_scores) -> the ROC AUC, clean and adversarial resampled apart

How runs carry the vectors (`repro.claims.Results.per_image`): a notebook stores a row's or a
metric's per-image correctness in its `info` as `correct=pack_bits(vector)` ("n:hex", one bit per
image, first image in the most significant bit). A value whose interval is shown on the site is
also recorded as two free metrics, `<name>.ci95_low` and `<name>.ci95_high` (`interval_metrics`).

Percentile intervals of a proportion are discrete and can be degenerate: at 0 % or 100 % accuracy
every resample gives the same value and the interval is a point. That is the bootstrap's answer,
not a bug; `Interval.straddles` then says the estimate is on one side of the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from repro import ReproError

if TYPE_CHECKING:
    import numpy as np

    from repro.claims import Results

__all__ = [
    "LEVEL",
    "RESAMPLES",
    "SEED",
    "Interval",
    "auc_interval",
    "claim_interval",
    "difference_interval",
    "interval_metrics",
    "interval_note",
    "mean_interval",
    "means_interval",
    "pack_bits",
    "t_interval",
    "unpack_bits",
]

RESAMPLES = 1000
LEVEL = 0.95
SEED = 0
_CHUNK = 1 << 22  # resample x image cells per chunk (bounds memory: 16 MB of counts)


@dataclass(frozen=True)
class Interval:
    """A statistic's `estimate` on the images as measured, and its bootstrap interval."""

    estimate: float
    low: float
    high: float
    level: float = LEVEL

    def straddles(self, threshold: float) -> bool:
        """True when `threshold` lies inside the interval (ends included): the data do not say
        on which side of it the true value is."""
        return self.low <= threshold <= self.high

    def format(self, scale: float = 1.0, digits: int = 3) -> str:
        """`0.850 [0.800, 0.900]`; `scale=100` for percentages."""
        e, lo, hi = (round(v * scale, digits) for v in (self.estimate, self.low, self.high))
        return f"{e:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"

    def __str__(self) -> str:
        return self.format()


def pack_bits(values: Any) -> str:
    """A 0/1 (or bool) vector as "n:hex": one bit per element, the first in the top bit.

    Accepts a tensor, an array or a sequence; anything non-zero is a 1. Compact enough to store
    10,000 images in 2.5 kB of `results.json`.
    """
    import numpy as np

    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    bits = np.asarray(values).reshape(-1) != 0
    n = bits.size
    packed = np.packbits(bits) if n else np.zeros(0, dtype=np.uint8)
    return f"{n}:{packed.tobytes().hex()}"


def unpack_bits(text: str) -> np.ndarray:
    """The bool vector of `pack_bits`; `ReproError` for a malformed string."""
    import numpy as np

    n_text, sep, hex_text = str(text).partition(":")
    try:
        if not sep:
            raise ValueError("no ':'")
        n = int(n_text)
        raw = np.frombuffer(bytes.fromhex(hex_text), dtype=np.uint8)
        if n < 0 or raw.size != (n + 7) // 8:
            raise ValueError(f"{raw.size} bytes for {n} bits")
    except ValueError as exc:
        raise ReproError(f"malformed per-image vector {str(text)[:40]!r}: {exc}") from None
    return np.unpackbits(raw)[:n].astype(bool)


def _vector(values: Any) -> np.ndarray:
    import numpy as np

    if isinstance(values, str):
        return unpack_bits(values).astype(np.float64)
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _counts(n: int, resamples: int, seed: int, per_chunk: int = 0) -> Iterator[np.ndarray]:
    """Multiplicities of each of n items in `resamples` bootstrap resamples, in chunks (b, n) of
    `per_chunk` resamples (0: as many as fit in `_CHUNK` cells)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    per_chunk = per_chunk or max(1, _CHUNK // max(n, 1))
    done = 0
    while done < resamples:
        b = min(per_chunk, resamples - done)
        index = rng.integers(0, n, size=(b, n))
        yield np.stack([np.bincount(row, minlength=n) for row in index]).astype(np.float64)
        done += b


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    import numpy as np

    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def means_interval(
    vectors: Sequence[Any],
    func: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = SEED,
) -> Interval:
    """Interval of `func(means)` where `means` holds the mean of each per-image vector.

    The vectors (tensors, arrays, or `pack_bits` strings) must cover the same n images in the
    same order: every resample weights the same images in all of them (a paired bootstrap).
    `func` maps an array of shape (B, k) (B resamples, k vectors) to shape (B,), e.g.
    `lambda m: m[:, 0] - m[:, 1] - 0.2` for a claim's margin; the default is the first mean.
    """
    import numpy as np

    data = [_vector(v) for v in vectors]
    if not data:
        raise ReproError("means_interval needs at least one per-image vector")
    n = data[0].size
    if n == 0 or any(d.size != n for d in data):
        sizes = ", ".join(str(d.size) for d in data)
        raise ReproError(f"per-image vectors must be non-empty and equally long, got {sizes}")
    if resamples < 1 or not 0 < level < 1:
        raise ReproError(f"need resamples >= 1 and 0 < level < 1, got {resamples}, {level}")
    func = func or (lambda m: m[:, 0])
    stacked = np.stack(data, axis=1)  # (n, k)
    estimate = float(np.asarray(func(stacked.mean(axis=0)[None, :])).reshape(-1)[0])
    values = [np.asarray(func(counts @ stacked / n), dtype=np.float64).reshape(-1)
              for counts in _counts(n, resamples, seed)]  # fmt: skip
    low, high = _percentiles(np.concatenate(values), level)
    return Interval(estimate, low, high, level)


def mean_interval(correct: Any, **kwargs: Any) -> Interval:
    """Interval of one accuracy (the mean of a per-image 0/1 vector)."""
    return means_interval([correct], **kwargs)


def difference_interval(a: Any, b: Any, **kwargs: Any) -> Interval:
    """Interval of mean(a) - mean(b) over the same images (paired)."""
    return means_interval([a, b], lambda m: m[:, 0] - m[:, 1], **kwargs)


def auc_interval(
    negatives: Any,
    positives: Any,
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = SEED,
) -> Interval:
    """ROC AUC (P(pos > neg) + P(tie) / 2) of scores, and its stratified bootstrap interval.

    Clean (negative) and adversarial (positive) scores are resampled separately, each set keeping
    its size. The AUC of a resample is c_pos . M . c_neg / (n_pos n_neg), with M the pairwise
    comparison matrix and c the resample's multiplicities, so no resample is sorted.
    """
    import numpy as np

    neg, pos = _vector(negatives), _vector(positives)
    if neg.size == 0 or pos.size == 0:
        raise ReproError("auc_interval needs at least one negative and one positive score")
    m = (pos[:, None] > neg[None, :]).astype(np.float64) + 0.5 * (pos[:, None] == neg[None, :])
    estimate = float(m.mean())
    if resamples < 1 or not 0 < level < 1:
        raise ReproError(f"need resamples >= 1 and 0 < level < 1, got {resamples}, {level}")
    chunk = max(1, _CHUNK // max(pos.size, neg.size))
    pos_counts = _counts(pos.size, resamples, seed, chunk)
    neg_counts = _counts(neg.size, resamples, seed + 1, chunk)
    values = [((cp @ m) * cn).sum(axis=1) / (pos.size * neg.size)
              for cp, cn in zip(pos_counts, neg_counts, strict=True)]  # fmt: skip
    low, high = _percentiles(np.concatenate(values), level)
    return Interval(estimate, low, high, level)


def interval_metrics(name: str, interval: Interval) -> dict[str, float]:
    """The free metrics that show `interval` beside the value `name`: `<name>.ci95_low/_high`."""
    tag = f"ci{round(interval.level * 100)}"
    return {f"{name}.{tag}_low": interval.low, f"{name}.{tag}_high": interval.high}


def claim_interval(
    results: Results,
    names: Sequence[str],
    func: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    first: int = 0,
) -> Interval | None:
    """`means_interval` of the per-image vectors recorded with the rows/metrics `names` (a
    claim's margin), or None when one of them has no vector or their lengths differ (old runs,
    tests without vectors). `first` > 0 keeps only the first images of each vector (to pair a
    value measured on a subset with the same images of a larger set)."""
    packed = [results.per_image(name) for name in names]
    if any(p is None for p in packed):
        return None
    vectors = [unpack_bits(p) for p in packed]  # type: ignore[arg-type]
    if first:
        if any(v.size < first for v in vectors):
            return None
        vectors = [v[:first] for v in vectors]
    if len({v.size for v in vectors}) != 1:
        return None
    return means_interval(vectors, func)


def interval_note(
    interval: Interval | None, threshold: float = 0.0, *, scale: float = 1.0, digits: int = 3
) -> str:
    """What a claim's detail says about its margin: `margin +0.180 [0.120, 0.240]`, with
    "straddles 0" when the interval contains the threshold; "no interval" without vectors."""
    if interval is None:
        return "no per-image vectors: no interval"
    text = f"margin {interval.format(scale, digits)}"
    if interval.straddles(threshold):
        text += f", interval straddles {threshold:g}"
    return text


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): Student's t interval of the mean of a few values — seeds, FID splits —
    where there are too few for the bootstrap of the per-image statistics above (at least 2)."""
    from scipy.stats import t

    n = len(values)
    if n < 2:
        raise ReproError(f"t_interval: need at least 2 values, got {n}")
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half
