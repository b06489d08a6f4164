"""Support-vector classification through the SVM dual QP.

For labels yᵢ ∈ {−1, +1}, a kernel k and the penalty C:

    minimise    ½ αᵀ(Y K Y)α − 1ᵀα         (Y = diag(y), K_ij = k(xᵢ, xⱼ))
    subject to  yᵀα = 0,   0 ≤ α ≤ C

The box is the clamp of the α neurons; the one equality is one dual neuron,
and its state *is* the classifier's bias: stationarity of the QP,
(YKYα)ᵢ − 1 + yᵢ·ν + z_boxᵢ = 0, says yᵢ·f(xᵢ) = 1 on every margin support
vector when f(x) = Σⱼ αⱼyⱼ k(xⱼ, x) + ν. So the intercept is read straight
from the network (``intercept="dual"``) instead of being averaged over the
support vectors afterwards (``intercept="kkt"``, libsvm's rule).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import numpy as np

from ..errors import InputError
from ..qp import QP
from ..solution import Solution
from ._common import AppQP, as_matrix, positive, same_rows

Kernel = Union[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]


def kernel_function(kernel: Kernel, gamma: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """k(X1, X2) as a matrix: 'linear', 'rbf' (exp(−γ‖a − b‖²)) or a callable."""
    if callable(kernel):
        return kernel
    if kernel == "linear":
        return lambda A, B: A @ B.T
    if kernel == "rbf":
        def rbf(A, B):
            sq = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T
            return np.exp(-gamma * np.maximum(sq, 0.0))
        return rbf
    raise InputError(f"unknown kernel {kernel!r} (known: 'linear', 'rbf', or a callable)", field="kernel")


def resolve_gamma(gamma, X: np.ndarray) -> float:
    """scikit-learn's conventions: 'scale' = 1/(features·Var X), 'auto' = 1/features."""
    if gamma == "scale":
        var = float(X.var())
        return 1.0 / (X.shape[1] * var) if var > 0 else 1.0
    if gamma == "auto":
        return 1.0 / X.shape[1]
    return positive(gamma, "gamma")


@dataclass
class SVMClassifier:
    """f(x) = Σ dual_coefᵢ k(svᵢ, x) + intercept; predict = classes[f > 0]."""

    support_vectors: np.ndarray
    dual_coef: np.ndarray          # αᵢ·yᵢ of the support vectors
    intercept: float
    classes: np.ndarray            # classes[0] ↔ −1, classes[1] ↔ +1 (scikit-learn's order)
    kernel: Callable
    support: np.ndarray            # indices of the support vectors in the training set
    alpha: np.ndarray              # all training multipliers

    def decision_function(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return self.kernel(X, self.support_vectors) @ self.dual_coef + self.intercept

    def predict(self, X) -> np.ndarray:
        return self.classes[(self.decision_function(X) > 0).astype(int)]

    def score(self, X, y) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y)))

    @property
    def coef(self) -> np.ndarray:
        """w of a linear kernel (f(x) = w·x + b); only meaningful for kernel='linear'."""
        return self.dual_coef @ self.support_vectors


def svm_dual(X, y, *, C: float = 1.0, kernel: Kernel = "linear", gamma="scale",
             intercept: str = "dual", support_tol: float = 1e-6) -> AppQP:
    """The dual QP of a two-class soft-margin SVM; decode gives an ``SVMClassifier``.

    ``intercept``: 'dual' reads b from the equality's multiplier (the network's
    dual neuron); 'kkt' averages yᵢ − ΣⱼαⱼyⱼKᵢⱼ over margin support vectors
    (0 < αᵢ < C). Multipliers below ``support_tol``·C are dropped from the
    support set.
    """
    X = as_matrix(X, "X")
    labels = np.asarray(y).reshape(-1)
    same_rows(X, labels)
    classes = np.unique(labels)
    if classes.size != 2:
        raise InputError(f"needs exactly two classes, got {classes.size}", field="y")
    if intercept not in ("dual", "kkt"):
        raise InputError("must be 'dual' or 'kkt'", field="intercept")
    C = positive(C, "C")
    signs = np.where(labels == classes[1], 1.0, -1.0)
    k = kernel_function(kernel, resolve_gamma(gamma, X) if kernel == "rbf" else 1.0)
    K = k(X, X)
    P = signs[:, None] * K * signs[None, :]
    P = 0.5 * (P + P.T)          # exact symmetry, whatever the kernel's rounding
    n = X.shape[0]
    qp = QP(P=P, q=-np.ones(n), A=signs[None, :], b=[0.0], lb=np.zeros(n), ub=np.full(n, C),
            name=f"svm-dual-{kernel if isinstance(kernel, str) else 'custom'}", eq_names=["bias"])

    def decode(solution: Solution) -> SVMClassifier:
        alpha = np.clip(solution.x, 0.0, C)
        if intercept == "dual":
            b = float(solution.y[0])
        else:
            g = K @ (alpha * signs)
            free = (alpha > support_tol * C) & (alpha < (1 - support_tol) * C)
            pick = free if free.any() else alpha > support_tol * C
            b = float(np.mean(signs[pick] - g[pick])) if pick.any() else 0.0
        support = np.flatnonzero(alpha > support_tol * C)
        return SVMClassifier(support_vectors=X[support], dual_coef=alpha[support] * signs[support],
                             intercept=b, classes=classes, kernel=k, support=support, alpha=alpha)

    return AppQP(qp, decode)
