"""Post-hoc fixes for anisotropy, fit on the train split and applied to held-out vectors.

All three are scikit-learn transformers (``fit`` on train, ``transform`` on test):

* :class:`Centering`: subtract the train mean.
* :class:`Whitening`: BERT-whitening of Su et al. (2021): ``x -> (x - mu) U Lambda^{-1/2}``
  with ``Sigma = U Lambda U^T`` the train covariance; optionally keep the first ``k``
  columns. On its fit data the result has mean 0 and identity covariance.
* :class:`AllButTheTop`: Mu & Viswanath (2018): subtract the mean, then remove the
  projections on the top ``D`` principal directions.

Example
-------
>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(500, 4)) @ np.diag([5, 1, 1, 0.2]) + 3
>>> W = Whitening().fit(X).transform(X)
>>> np.allclose(np.cov(W, rowvar=False), np.eye(4), atol=1e-6)
True
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA

from .names import TRANSFORMS


class Centering(TransformerMixin, BaseEstimator):
    """Subtract the mean of the fit data."""

    def fit(self, X, y=None):
        self.mean_ = np.asarray(X, dtype=np.float64).mean(axis=0)
        return self

    def transform(self, X):
        return np.asarray(X, dtype=np.float64) - self.mean_


class Whitening(TransformerMixin, BaseEstimator):
    """BERT-whitening (Su et al., 2021); ``n_components`` keeps the top-k whitened directions.

    scikit-learn's ``PCA(whiten=True)`` computes exactly the paper's map
    ``(x - mu) U Lambda^{-1/2}``, so this wraps it. Directions with (numerically) zero
    variance, e.g. beyond ``n - 1`` when there are fewer points than dimensions, are
    dropped because they cannot be rescaled.
    """

    def __init__(self, n_components: int | None = None, eps: float = 1e-10):
        self.n_components = n_components
        self.eps = eps

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        k = min(X.shape[0] - 1, X.shape[1])
        if self.n_components is not None:
            k = min(k, self.n_components)
        pca = PCA(n_components=k, whiten=True, svd_solver="full").fit(X)
        var = pca.explained_variance_
        usable = int(np.sum(var > self.eps * var.max()))
        if usable < k:
            pca = PCA(n_components=usable, whiten=True, svd_solver="full").fit(X)
        self.pca_ = pca
        return self

    def transform(self, X):
        return self.pca_.transform(np.asarray(X, dtype=np.float64))


class AllButTheTop(TransformerMixin, BaseEstimator):
    """All-but-the-top (Mu & Viswanath, 2018): center, then remove the top ``n_remove`` principal directions.

    The authors' rule of thumb is ``n_remove`` about ``dim / 100``.
    """

    def __init__(self, n_remove: int = 3):
        self.n_remove = n_remove

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        self.directions_ = (
            PCA(n_components=self.n_remove, svd_solver="full").fit(X - self.mean_).components_
        )
        return self

    def transform(self, X):
        Z = np.asarray(X, dtype=np.float64) - self.mean_
        return Z - (Z @ self.directions_.T) @ self.directions_


_FACTORIES = {
    "none": None,
    "center": Centering,
    "whiten": Whitening,
    "abtt": AllButTheTop,
}


def fit_transform(
    transform, X_train: np.ndarray, X_test: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``transform`` on ``X_train``; return both splits transformed.

    ``transform`` is a name of :data:`helpers.names.TRANSFORMS` or an unfitted
    scikit-learn transformer such as ``Whitening(n_components=64)``.
    """
    if isinstance(transform, str):
        if transform not in _FACTORIES:
            raise ValueError(
                f"unknown transform {transform!r}; choose one of {', '.join(TRANSFORMS)}"
            )
        if _FACTORIES[transform] is None:
            return np.asarray(X_train), np.asarray(X_test)
        transform = _FACTORIES[transform]()
    fitted = transform.fit(X_train)
    return fitted.transform(X_train), fitted.transform(X_test)
