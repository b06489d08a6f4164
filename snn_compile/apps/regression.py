"""Ridge, kernel ridge and LASSO regression as QPs, with scikit-learn's objectives.

- ridge (scikit-learn ``Ridge``): min ‖y − Xw − b‖² + α‖w‖². With an intercept
  the data are centred first (b = ȳ − x̄ᵀw), leaving the unconstrained QP
  min ½wᵀ(XᵀX + αI)w − (Xᵀy)ᵀw: the network has primal neurons only.
- kernel ridge (``KernelRidge``): dual coefficients a = (K + αI)⁻¹y, the
  minimiser of ½aᵀ(K + αI)a − yᵀa; predictions k(x, X)·a.
- LASSO (``Lasso``): min (1/2n)‖y − Xw − b‖² + α‖w‖₁. The ℓ₁ norm becomes linear
  with the split w = u − v, u, v ≥ 0 (the non-negativity is the neurons' clamp):

      min ½[u; v]ᵀ (1/n)[[XᵀX, −XᵀX], [−XᵀX, XᵀX]] [u; v] + [α − Xᵀy/n; α + Xᵀy/n]ᵀ[u; v]

  At the optimum at most one of uⱼ, vⱼ is nonzero (both positive would lower
  the cost by shrinking both), so ‖w‖₁ = Σ(u + v).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..qp import QP
from ..solution import Solution
from ._common import AppQP, as_matrix, positive, same_rows
from .svm import Kernel, kernel_function, resolve_gamma


@dataclass
class LinearPredictor:
    coef: np.ndarray
    intercept: float

    def predict(self, X) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.coef + self.intercept


@dataclass
class KernelPredictor:
    X_train: np.ndarray
    dual_coef: np.ndarray
    kernel: Callable

    def predict(self, X) -> np.ndarray:
        return self.kernel(np.asarray(X, dtype=np.float64), self.X_train) @ self.dual_coef


def _centred(X, y, fit_intercept: bool):
    X, y = as_matrix(X, "X"), as_matrix(y, "y", ndim=1)
    same_rows(X, y)
    if not fit_intercept:
        return X, y, np.zeros(X.shape[1]), 0.0
    x_mean, y_mean = X.mean(axis=0), float(y.mean())
    return X - x_mean, y - y_mean, x_mean, y_mean


def ridge(X, y, *, alpha: float = 1.0, fit_intercept: bool = True) -> AppQP:
    """scikit-learn ``Ridge``'s problem; decode gives a ``LinearPredictor``."""
    alpha = positive(alpha, "alpha")
    Xc, yc, x_mean, y_mean = _centred(X, y, fit_intercept)
    d = Xc.shape[1]
    qp = QP(P=Xc.T @ Xc + alpha * np.eye(d), q=-Xc.T @ yc, r=0.5 * float(yc @ yc), name="ridge")

    def decode(solution: Solution) -> LinearPredictor:
        w = solution.x.copy()
        return LinearPredictor(w, y_mean - float(x_mean @ w))

    return AppQP(qp, decode)


def kernel_ridge(X, y, *, alpha: float = 1.0, kernel: Kernel = "rbf", gamma=None) -> AppQP:
    """scikit-learn ``KernelRidge``'s problem (no intercept, like it); decode gives a
    ``KernelPredictor``. ``gamma=None`` is KernelRidge's default 1/features."""
    alpha = positive(alpha, "alpha")
    X, y = as_matrix(X, "X"), as_matrix(y, "y", ndim=1)
    same_rows(X, y)
    k = kernel_function(kernel, resolve_gamma("auto" if gamma is None else gamma, X)
                        if kernel == "rbf" else 1.0)
    K = k(X, X)
    P = 0.5 * (K + K.T) + alpha * np.eye(X.shape[0])
    qp = QP(P=P, q=-y, name=f"kernel-ridge-{kernel if isinstance(kernel, str) else 'custom'}")

    def decode(solution: Solution) -> KernelPredictor:
        return KernelPredictor(X, solution.x.copy(), k)

    return AppQP(qp, decode)


def lasso(X, y, *, alpha: float = 1.0, fit_intercept: bool = True) -> AppQP:
    """scikit-learn ``Lasso``'s problem as a QP in (u, v) ≥ 0; decode gives a ``LinearPredictor``."""
    alpha = positive(alpha, "alpha")
    Xc, yc, x_mean, y_mean = _centred(X, y, fit_intercept)
    n, d = Xc.shape
    gram, corr = Xc.T @ Xc / n, Xc.T @ yc / n
    P = np.block([[gram, -gram], [-gram, gram]])
    q = np.concatenate([alpha - corr, alpha + corr])
    names = [f"u[{j}]" for j in range(d)] + [f"v[{j}]" for j in range(d)]
    qp = QP(P=P, q=q, r=0.5 * float(yc @ yc) / n, lb=np.zeros(2 * d), name="lasso", var_names=names)

    def decode(solution: Solution) -> LinearPredictor:
        w = solution.x[:d] - solution.x[d:]
        return LinearPredictor(w, y_mean - float(x_mean @ w))

    return AppQP(qp, decode)
