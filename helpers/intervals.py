"""Bootstrap intervals, so that small differences are reported with their uncertainty.

A held-out split of a hundred chunks moves an accuracy by several points when a handful
of chunks change; the book reports a 95% percentile-bootstrap interval beside every
accuracy or silhouette it compares (Efron & Tibshirani, 1993).

>>> iv = bootstrap_mean(np.r_[np.ones(45), np.zeros(5)])
>>> round(iv.mean, 2), iv.low < 0.9 < iv.high
(0.9, True)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

N_BOOT = 2000


@dataclass(frozen=True)
class Interval:
    """A mean (or mean difference) with its 95% bootstrap interval ``[low, high]``."""

    mean: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def row(self, name: str | None = None) -> dict[str, float]:
        """The interval as table columns: ``mean, low, high``, or ``name, name low, name high``.

        >>> Interval(0.5, 0.25, 0.75).row()
        {'mean': 0.5, '95% low': 0.25, '95% high': 0.75}
        >>> Interval(0.5, 0.25, 0.75).row("k-NN")
        {'k-NN': 0.5, 'k-NN low': 0.25, 'k-NN high': 0.75}
        """
        if name is None:
            return {"mean": self.mean, "95% low": self.low, "95% high": self.high}
        return {name: self.mean, f"{name} low": self.low, f"{name} high": self.high}

    def text(self, digits: int = 3) -> str:
        """``mean [low, high]`` with signs, for one table cell.

        >>> Interval(-0.0151, -0.0172, -0.0123).text()
        '-0.015 [-0.017, -0.012]'
        """
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def bootstrap_mean(values, *, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> Interval:
    """The mean of ``values`` and a percentile-bootstrap interval, resampling the values."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(values.mean()), float(low), float(high))


def paired_difference(after, before, **kw) -> Interval:
    """Mean of ``after - before`` over the same items (paired), with its interval.

    >>> paired_difference([1, 1, 1, 0], [0, 1, 1, 0]).mean
    0.25
    """
    return bootstrap_mean(np.asarray(after, float) - np.asarray(before, float), **kw)


def resampled_interval(
    statistic, n_items: int, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> Interval:
    """``statistic(all items)`` with a percentile interval from recomputing it on resamples.

    ``statistic`` takes an array of item indices (with repeats, in a resample) and returns
    a number. Where an item's contribution depends on the other items (a silhouette, the AUC
    over all pairs), the per-item values are not independent, and :func:`bootstrap_mean` of
    them would overstate the certainty; resampling the items and recomputing the whole
    statistic keeps that dependence in every replicate.

    >>> values = np.r_[np.ones(30), np.zeros(10)]
    >>> iv = resampled_interval(lambda rows: values[rows].mean(), len(values), n_boot=500)
    >>> round(iv.mean, 2), iv.low < 0.75 < iv.high
    (0.75, True)
    """
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        # A resample can lack what the statistic needs (an AUC, both classes): it gives
        # NaN and is left out.
        warnings.simplefilter("ignore")
        replicates = [statistic(rng.integers(0, n_items, n_items)) for _ in range(n_boot)]
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(replicates, [tail, 100 - tail])
    return Interval(float(statistic(np.arange(n_items))), float(low), float(high))


def paired_counts(after, before) -> tuple[int, int, float]:
    """Items right only ``after``, items right only ``before`` (0/1 outcomes of the same
    items), and the exact two-sided McNemar p-value of that split.

    Only the items that changed carry information about a change; with a handful of them a
    percentile bootstrap of the paired difference is too narrow, and this test is exact.

    >>> paired_counts([1, 1, 1, 1, 0, 1], [0, 0, 0, 0, 0, 1])
    (4, 0, 0.125)
    """
    from scipy.stats import binomtest

    a, b = np.asarray(after, bool), np.asarray(before, bool)
    gained, lost = int((a & ~b).sum()), int((~a & b).sum())
    p = 1.0 if gained + lost == 0 else float(binomtest(gained, gained + lost, 0.5).pvalue)
    return gained, lost, round(p, 10)


def cluster_interval(
    values, clusters, *, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95
) -> Interval:
    """The mean of ``values`` with a percentile interval that resamples whole ``clusters``.

    Items of one cluster are not independent (queries of one subtopic share their
    partners), so each replicate draws clusters with replacement and takes all their items.

    >>> iv = cluster_interval([1.0, 1.0, 0.0, 0.0], ["a", "a", "b", "b"], n_boot=200)
    >>> iv.mean, iv.low, iv.high
    (0.5, 0.0, 1.0)
    """
    values = np.asarray(values, dtype=np.float64)
    _, which = np.unique(np.asarray(clusters), return_inverse=True)
    sums, sizes = np.bincount(which, weights=values), np.bincount(which)
    draws = np.random.default_rng(seed).integers(0, len(sizes), size=(n_boot, len(sizes)))
    means = sums[draws].sum(axis=1) / sizes[draws].sum(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(values.mean()), float(low), float(high))
