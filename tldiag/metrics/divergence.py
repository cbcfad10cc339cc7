"""Moment-based divergences between two samples, and linear CKA between two representations.

Conventions (all in float64):

* covariances are unbiased, ``C = (X - mean)ᵀ (X - mean) / (n - 1)`` (``np.cov(X, rowvar=False)``),
  as in Deep CORAL (Sun & Saenko 2016) and pytorch-fid;
* CORAL distance ``||C_s - C_t||²_F / (4 d²)`` with d the number of features (Sun & Saenko 2016,
  eq. 1);
* Fréchet distance between N(μ_s, C_s) and N(μ_t, C_t):
  ``||μ_s - μ_t||² + Tr(C_s + C_t - 2 (C_s C_t)^{1/2})`` (Dowson & Landau 1982; the FID formula of
  Heusel et al. 2017). The trace of the matrix square root is computed as Σ sqrt(λ) over the
  eigenvalues λ of the symmetric PSD matrix C_s^{1/2} C_t C_s^{1/2}, which has the same spectrum
  as C_s C_t and stays real and stable when the covariances are singular (d > n). When a sample has
  fewer rows than features it is computed exactly in sample space instead: with P = (X - mean) /
  sqrt(n - 1), so that C = Pᵀ P, those eigenvalues are the squared singular values of P_t P_sᵀ
  (an n_t x n_s matrix), so the trace is its nuclear norm (no d x d eigensolver, which LAPACK can fail
  to converge on for rank-deficient covariances);
* linear CKA (Kornblith et al. 2019, eq. for the linear kernel) between two representations of the
  *same* n inputs: ``||Yᵀ X||²_F / (||Xᵀ X||_F ||Yᵀ Y||_F)`` after centring every column; 1 for
  representations equal up to rotation and isotropic scaling, 0 for orthogonal ones.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import TldiagError
from ..validation import check_features, check_pair


def _cov(X: np.ndarray) -> np.ndarray:
    Xc = X - X.mean(axis=0)
    return Xc.T @ Xc / (len(X) - 1)


def coral_distance(X_source: np.ndarray, X_target: np.ndarray) -> float:
    """CORAL distance ``||C_s - C_t||²_F / (4 d²)`` between the feature covariances.

    Args:
        X_source: Source embeddings, shape (n_source, n_features).
        X_target: Target embeddings, shape (n_target, n_features).
    """
    X_source, X_target = check_pair(X_source, X_target)
    d = X_source.shape[1]
    diff = _cov(X_source) - _cov(X_target)
    return float((diff * diff).sum() / (4.0 * d * d))


def _sqrt_psd(C: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(C)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def _trace_sqrt_product(X_source: np.ndarray, X_target: np.ndarray) -> float:
    """Tr((C_s^{1/2} C_t C_s^{1/2})^{1/2}): in sample space when a sample has fewer rows than features (see the
    module docstring), else from the d x d covariances."""
    n = min(len(X_source), len(X_target))
    if n <= X_source.shape[1]:
        P_s = (X_source - X_source.mean(0)) / np.sqrt(len(X_source) - 1)
        P_t = (X_target - X_target.mean(0)) / np.sqrt(len(X_target) - 1)
        return float(torch.linalg.svdvals(torch.from_numpy(P_t @ P_s.T)).sum())
    C_s, C_t = torch.from_numpy(_cov(X_source)), torch.from_numpy(_cov(X_target))
    root = _sqrt_psd(C_s)
    M = root @ C_t @ root
    return float(torch.linalg.eigvalsh((M + M.T) / 2).clamp(min=0).sqrt().sum())


def frechet_distance(X_source: np.ndarray, X_target: np.ndarray) -> float:
    """Fréchet (2-Wasserstein) distance squared between Gaussians fitted to the two samples.

    Args:
        X_source: Source embeddings, shape (n_source, n_features).
        X_target: Target embeddings, shape (n_target, n_features).
    """
    X_source, X_target = check_pair(X_source, X_target)
    mu = X_source.mean(0) - X_target.mean(0)
    traces = sum(float(((X - X.mean(0)) ** 2).sum() / (len(X) - 1)) for X in (X_source, X_target))
    value = float(mu @ mu) + traces - 2 * _trace_sqrt_product(X_source, X_target)
    return max(value, 0.0)


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear centred kernel alignment between two representations of the same inputs.

    Args:
        X: First representation, shape (n_samples, n_features_x).
        Y: Second representation of the same samples in the same order, shape (n_samples, n_features_y).
    """
    X, Y = check_features(X, "X"), check_features(Y, "Y")
    if len(X) != len(Y):
        raise TldiagError(f"linear CKA compares two representations of the same inputs, so X and Y need the same "
                          f"number of rows, got {len(X)} and {len(Y)}. Pass features of the same images in the "
                          "same order (CKA does not apply to a source sample against a target sample).")
    X, Y = X - X.mean(0), Y - Y.mean(0)
    nx, ny = np.linalg.norm(X.T @ X), np.linalg.norm(Y.T @ Y)
    for name, norm in (("X", nx), ("Y", ny)):
        if norm == 0:
            raise TldiagError(f"{name} is constant across samples (every feature has zero variance), so CKA is "
                              "undefined; check that the layer is not dead for these inputs.")
    return float(np.linalg.norm(Y.T @ X) ** 2 / (nx * ny))


__all__ = ["coral_distance", "frechet_distance", "linear_cka"]
