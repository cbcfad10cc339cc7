"""Batched L2-regularised multinomial logistic regression in torch (GPU when present): the solver of the linear
probes and the data-efficiency experiment's linear arms.

:func:`lbfgs_logistic` fits ``S`` feature sets times ``G`` regularisation strengths at once by L-BFGS with a
per-problem Armijo line search. It minimises exactly scikit-learn's multinomial objective::

    mean_i cross_entropy(x_i W + b, y_i) + ||W||² / (2 C n)        (b is not penalised)

with the same stopping rule (largest absolute gradient entry <= ``tol``). When a feature set has more features than
fitting rows (n < d), :func:`standardize_and_reduce` moves it into the row space of the fitting features (an exact
reparametrisation: the L2 solution lies in that span), which makes wide layers cheap on small datasets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import TldiagError
from ..validation import check_features, metric_device


def solver_dtype(device: torch.device) -> torch.dtype:
    """float64 on the CPU (exact agreement with scikit-learn, and BLAS is fast there); float32 on GPUs."""
    return torch.float64 if device.type == "cpu" else torch.float32


def standardize_and_reduce(X_fit: torch.Tensor, X_eval: torch.Tensor, standardize: bool
                            ) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """Batched ``(S, n, d)`` fitting features and ``(S, m, d)`` evaluation features, standardised on the fitting
    part, moved into its row space when d > n, with a trailing column of ones (the intercept).

    Returns both and ``(mean, scale, basis)`` to transform other features the same way.
    """
    if standardize:
        mean = X_fit.mean(1, keepdim=True)
        scale = X_fit.std(1, unbiased=False, keepdim=True)
        scale = torch.where(scale < 10 * torch.finfo(X_fit.dtype).eps, torch.ones_like(scale), scale)
        X_fit = (X_fit - mean) / scale
    else:
        mean = scale = None
    basis = None
    S, n, d = X_fit.shape
    if d > n:  # exact: the L2-penalised solution lies in the row space of the fitting features
        # V = X' U / sigma from the eigenvectors of the n x n Gram matrix (cheaper than an SVD of X); directions
        # with no variance get a zero column, whose weight the penalty keeps at zero.
        evals, U = torch.linalg.eigh(torch.bmm(X_fit, X_fit.transpose(1, 2)))
        sigma = evals.clamp_min(0).sqrt()
        inv = torch.where(sigma > sigma.amax(1, keepdim=True) * n * torch.finfo(X_fit.dtype).eps, 1 / sigma,
                          torch.zeros_like(sigma))
        basis = torch.bmm(X_fit.transpose(1, 2), U) * inv[:, None, :]  # (S, d, n), orthonormal columns
        X_fit = U * (sigma * (inv > 0))[:, None, :]
    transform = (mean, scale, basis)
    return _with_ones(X_fit), apply_transform(X_eval, transform), transform


def _with_ones(X: torch.Tensor) -> torch.Tensor:
    return torch.cat([X, torch.ones(*X.shape[:-1], 1, dtype=X.dtype, device=X.device)], dim=-1)


def apply_transform(X: torch.Tensor, transform: tuple) -> torch.Tensor:
    """Batched ``(S, m, d)`` features as the fit of :func:`standardize_and_reduce` saw its own: scaled, in its
    basis, with the intercept column."""
    mean, scale, basis = transform
    if mean is not None:
        X = (X - mean) / scale
    if basis is not None:
        X = torch.bmm(X, basis)
    return _with_ones(X)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vecdot(a.flatten(2), b.flatten(2))


class _Objective:
    """The batched objective of :func:`lbfgs_logistic`: mean cross-entropy plus the L2 penalty (not on the
    intercept) of ``(S, G, D, K)`` coefficients, its gradient, the preconditioner and the L-BFGS direction."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, n_classes: int, precondition: bool):
        self.X, self.Xt = X, X.transpose(1, 2)
        self.S, self.n, self.D = X.shape
        self.K = n_classes
        self.y_idx = y[:, :, None, None]  # (S, n, 1, 1)
        self.penalised = torch.ones(self.D, 1, dtype=X.dtype, device=X.device)
        self.penalised[-1] = 0
        self.precondition = precondition
        # Preconditioner: H0 = gamma * M^-1 with M = Sigma / K + lam I, Sigma = X'X / n, the Hessian at the start
        # (uniform probabilities) up to the softmax's coupling of the classes. Applied through the eigenvectors of
        # Sigma, which every problem of a feature set shares.
        if precondition:
            evals, self.Q = torch.linalg.eigh(self.Xt @ X / self.n)  # (S, D), (S, D, D)
            self.curv = (evals.clamp_min(0) / self.K)[:, None, :]  # (S, 1, D)

    def loss_grad(self, theta: torch.Tensor, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        X, S, n, D, K, y_idx = self.X, self.S, self.n, self.D, self.K, self.y_idx
        G = theta.shape[1]
        Z = torch.bmm(X, theta.permute(0, 2, 1, 3).reshape(S, D, G * K)).view(S, n, G, K)
        zmax = Z.amax(3, keepdim=True)
        E = torch.exp(Z - zmax)
        total = E.sum(3, keepdim=True)
        nll = (zmax + total.log() - Z.gather(3, y_idx.expand(S, n, G, 1)))[..., 0].mean(1)  # (S, G)
        E /= total
        E.scatter_add_(3, y_idx.expand(S, n, G, 1), torch.full((1, 1, 1, 1), -1.0, dtype=X.dtype,
                                                                  device=X.device).expand(S, n, G, 1))
        grad = torch.bmm(self.Xt, E.view(S, n, G * K)).view(S, D, G, K).permute(0, 2, 1, 3) / n
        w = theta * self.penalised
        return nll + 0.5 * lam * (theta * w).sum((2, 3)), grad + lam[..., None, None] * w

    def inverse_m(self, v: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        if not self.precondition:
            return v
        S, D, K, Q = self.S, self.D, self.K, self.Q
        G = v.shape[1]
        w = torch.bmm(Q.transpose(1, 2), v.permute(0, 2, 1, 3).reshape(S, D, G * K)).view(S, D, G, K)
        w = w / (self.curv + lam[..., None]).permute(0, 2, 1)[..., None]
        return torch.bmm(Q, w.view(S, D, G * K)).view(S, D, G, K).permute(0, 2, 1, 3)

    def direction(self, g: torch.Tensor, S_: torch.Tensor, Y_: torch.Tensor, MY_: torch.Tensor, gamma: torch.Tensor,
                  lam: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """-H g with the L-BFGS inverse Hessian in compact form (Byrd, Nocedal & Schnabel 1994) and the initial
        matrix gamma M^-1: a few batched matrix products instead of the two-loop recursion's 4m small operations.
        Pairs rejected for lack of curvature (and slots not filled yet) are zeros, with 1 on the diagonal of R,
        which is the same as leaving them out. The history is a ring buffer; ``order`` lists its slots oldest
        first, and only the small k x k matrices and k-vectors are put in that order."""
        sh = g.shape
        B, k = sh[0] * sh[1], S_.shape[2]
        Mg = self.inverse_m(g, lam)
        gv, Mgv = g.reshape(B, -1, 1), Mg.reshape(B, -1, 1)
        Sm, Ym, MYm = S_.reshape(B, k, -1), Y_.reshape(B, k, -1), MY_.reshape(B, k, -1)
        SY = torch.bmm(Sm, Ym.transpose(1, 2))[:, order][:, :, order]
        diag = torch.diagonal(SY, dim1=1, dim2=2)
        empty = (diag <= 0).to(g.dtype)
        R = torch.triu(SY) + torch.diag_embed(empty)
        gam = gamma.reshape(B, 1, 1)
        a, b = torch.bmm(Sm, gv)[:, order], torch.bmm(MYm, gv)[:, order]
        YMY = torch.bmm(Ym, MYm.transpose(1, 2))[:, order][:, :, order]
        u = torch.linalg.solve_triangular(R, a, upper=True)
        v = (diag + empty)[..., None] * u + gam * (torch.bmm(YMY, u) - b)
        p = torch.linalg.solve_triangular(R.transpose(1, 2), v, upper=False)
        back = torch.argsort(order)
        u, p = u[:, back], p[:, back]
        Hg = gam * Mgv + torch.bmm(Sm.transpose(1, 2), p) - gam * torch.bmm(MYm.transpose(1, 2), u)
        return -Hg.view(sh)

    def line_search(self, theta: torch.Tensor, f: torch.Tensor, g: torch.Tensor, d: torch.Tensor, t: torch.Tensor,
                    gd: torch.Tensor, lam: torch.Tensor, done: torch.Tensor):
        """Backtracking (Armijo) along ``d`` from step ``t``, per problem; returns the accepted coefficients, loss
        and gradient, and which problems found a decrease (the finished ones count as accepted)."""
        accepted = done.clone()
        new_theta, new_f, new_g = theta, f, g
        for _ in range(40):
            cand = theta + t[..., None, None] * d
            fc, gc = self.loss_grad(cand, lam)
            ok = ~accepted & (fc <= f + 1e-4 * t * gd)
            if bool(ok.all()):
                new_theta, new_f, new_g = cand, fc, gc
            else:
                new_theta = torch.where(ok[..., None, None], cand, new_theta)
                new_f, new_g = torch.where(ok, fc, new_f), torch.where(ok[..., None, None], gc, new_g)
            accepted |= ok
            if bool(accepted.all()):
                break
            t = torch.where(accepted, t, t / 2)
        return new_theta, new_f, new_g, accepted


def lbfgs_logistic(X: torch.Tensor, y: torch.Tensor, lam: torch.Tensor, n_classes: int, *, max_iter: int, tol: float,
                   history: int = 10, precondition: bool = True) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Batched L2-regularised multinomial logistic regression by L-BFGS with a per-problem Armijo line search.

    Args:
        X: ``(S, n, D)`` features whose last column is ones (the intercept, not penalised).
        y: ``(S, n)`` class indices in ``0..n_classes-1``.
        lam: ``(S, G)`` penalty of each problem: G problems share the features of each of the S sets.
        n_classes: K.
        precondition: Start from M^-1 (below) instead of the identity. It cuts the iterations of narrow taps
            tenfold; in the row-space regime (d > n, nearly separable classes) the plain start is faster.

    Returns:
        ``theta`` of shape ``(S, G, D, K)``, ``converged`` of shape ``(S, G)`` and the iterations run.

    The iteration count is set by the slowest problem (weak regularisation on nearly separable classes), so
    one iteration must be cheap: a handful of kernels for all problems at once, and the grid columns whose
    problems have all converged leave the batch.
    """
    S, n, D = X.shape
    G0, K = lam.shape[1], n_classes
    obj = _Objective(X, y, n_classes, precondition)
    theta_out = torch.zeros(S, G0, D, K, dtype=X.dtype, device=X.device)
    grad_out = torch.full((S, G0), math.inf, dtype=X.dtype, device=X.device)
    cols = torch.arange(G0, device=X.device)
    theta = theta_out.clone()
    f, g = obj.loss_grad(theta, lam)
    S_hist, Y_hist, MY_hist = (torch.zeros(S, G0, history, D, K, dtype=X.dtype, device=X.device) for _ in range(3))
    gamma = torch.ones_like(f)
    gmax = g.abs().amax((2, 3))
    done = gmax <= tol
    it = 0
    while True:
        # columns of the grid whose problems have all finished leave the batch
        keep = ~done.all(0)
        if not bool(keep.all()):
            finished = cols[~keep]
            theta_out[:, finished], grad_out[:, finished] = theta[:, ~keep], gmax[:, ~keep]
            cols, theta, f, g, lam, gamma, done = (cols[keep], theta[:, keep], f[:, keep], g[:, keep], lam[:, keep],
                                                   gamma[:, keep], done[:, keep])
            S_hist, Y_hist, MY_hist = S_hist[:, keep], Y_hist[:, keep], MY_hist[:, keep]
        if len(cols) == 0 or it >= max_iter:
            break
        it += 1
        if it > 1:
            slot = (it - 1) % history  # the oldest pair's slot, overwritten next
            order = (torch.arange(history, device=X.device) + slot) % history
            d = obj.direction(g, S_hist, Y_hist, MY_hist, gamma, lam, order)
            t = torch.ones_like(f)
        else:
            d = -obj.inverse_m(g, lam)
            t = torch.ones_like(f) if precondition else torch.clamp(1 / g.abs().sum((2, 3)).clamp_min(1e-12), max=1.0)
        gd = _dot(g, d)
        uphill = gd >= 0  # numerically lost curvature: steepest descent for that problem
        if bool(uphill.any()):
            d = torch.where(uphill[..., None, None], -g, d)
            gd = torch.where(uphill, -_dot(g, g), gd)
        live = (~done).to(X.dtype)
        d, gd = d * live[..., None, None], gd * live
        new_theta, new_f, new_g, accepted = obj.line_search(theta, f, g, d, t, gd, lam, done)
        s, yv = new_theta - theta, new_g - g
        sy = _dot(s, yv)
        valid = sy > 1e-10 * _dot(s, s).clamp_min(1e-300)
        My = obj.inverse_m(yv, lam)
        gamma = torch.where(valid, sy / _dot(yv, My).clamp_min(1e-300), gamma)
        m = valid.to(X.dtype)[..., None, None]
        slot = (it - 1) % history
        S_hist[:, :, slot], Y_hist[:, :, slot], MY_hist[:, :, slot] = s * m, yv * m, My * m
        theta, f, g = new_theta, new_f, new_g
        gmax = g.abs().amax((2, 3))
        done = done | ~accepted | (gmax <= tol)  # no decrease possible: stalled at the optimum
    if len(cols):
        theta_out[:, cols], grad_out[:, cols] = theta, gmax
    return theta_out, grad_out <= tol, it


@dataclass(frozen=True)
class LogisticFit:
    """One fitted probe (from :func:`fit_logistic`); ``predict`` applies the same scaling as the fit."""

    theta: torch.Tensor = field(repr=False)
    transform: tuple = field(repr=False)
    classes: np.ndarray
    n_iter: int
    converged: bool

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        Xt = torch.as_tensor(check_features(X, "X"), dtype=self.theta.dtype, device=self.theta.device)
        return (apply_transform(Xt[None], self.transform)[0] @ self.theta).cpu().numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes[self.decision_function(X).argmax(1)]


def fit_logistic(X: np.ndarray, y: np.ndarray, *, C: float = 1.0, standardize: bool = False, max_iter: int = 1000,
                 tol: float = 1e-4, device: str | None = None) -> LogisticFit:
    """One multinomial logistic regression with scikit-learn's objective and stopping rule (see the module
    docstring): the solver of the probes, for checks against ``LogisticRegression(solver="lbfgs")``."""
    X = check_features(X, "X")
    classes, y_idx = np.unique(np.asarray(y), return_inverse=True)
    if len(y_idx) != len(X):
        raise TldiagError(f"X and y must be the same length, but X has {len(X)} rows and y has {len(y_idx)} labels.")
    if len(classes) < 2:
        raise TldiagError(f"y has a single class ({classes[0]!r}); a classifier needs at least two.")
    dev = metric_device(device)
    Xt = torch.as_tensor(X, dtype=solver_dtype(dev), device=dev)[None]
    X_fit, _, transform = standardize_and_reduce(Xt, Xt[:, :1], standardize)
    lam = torch.full((1, 1), 1.0 / (C * len(X)), dtype=Xt.dtype, device=dev)
    theta, converged, it = lbfgs_logistic(X_fit, torch.as_tensor(y_idx, device=dev)[None], lam, len(classes),
                                  max_iter=max_iter, tol=tol, precondition=transform[2] is None)
    return LogisticFit(theta[0, 0], transform, classes, it, bool(converged.all()))


__all__ = ["LogisticFit", "apply_transform", "fit_logistic", "lbfgs_logistic", "solver_dtype",
           "standardize_and_reduce"]
