"""The leading principal component by a sequence of convex QPs (shifted inverse iteration).

Maximising vᵀCv on the unit sphere is not a convex problem, so no single QP
gives the leading eigenvector of a covariance C. A sequence does. Pick a shift
σ ≥ λ_max(C) (here Gershgorin's bound max_i Σ_j |C_ij|, which needs no
eigensolver) so that P = σI − C is positive semidefinite, and solve

    v_{k+1}' = argmin ½ vᵀ(σI − C)v   subject to   v_kᵀ v = 1
    v_{k+1}  = v_{k+1}' / ‖v_{k+1}'‖

Its KKT conditions give v_{k+1}' ∝ (σI − C)⁻¹v_k: one step of inverse
iteration with shift σ, whose error shrinks by (σ − λ₁)/(σ − λ₂) per QP.

Limits, honestly:
- It is inverse iteration with a network as the linear solver. numpy's
  ``eigh`` is faster and exact; the point is a sequence of QPs on a chip.
- The rate depends on how tight Gershgorin's bound is: a loose σ (far above
  λ₁) or a small gap λ₁ − λ₂ means many outer iterations. σ close to λ₁ is
  fast outside and ill-conditioned inside (P nearly singular: more network
  steps per QP).
- Each QP is solved to the network's tolerance, so the final direction is as
  accurate as the last solve (errors do not accumulate: every step restarts
  from the current v_k).
- The normalisation between QPs runs on the host; one component only (later
  ones need deflation, C − λ₁v₁v₁ᵀ, with the same construction).
- The sign of an eigenvector is arbitrary; results are compared up to sign.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..errors import InputError
from ..qp import QP
from ..solution import Solution
from ._common import AppQP, as_matrix


def gershgorin_shift(C: np.ndarray) -> float:
    """An upper bound of λ_max(C) (a tiny margin keeps σI − C strictly definite)."""
    bound = float(np.max(np.sum(np.abs(C), axis=1)))
    return bound * (1.0 + 1e-6) + 1e-12


def inverse_iteration_qp(C, v, sigma: float) -> AppQP:
    """min ½vᵀ(σI − C)v s.t. v_kᵀv = 1; decode gives the normalised next iterate."""
    C = as_matrix(C, "C")
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    qp = QP(P=sigma * np.eye(C.shape[0]) - 0.5 * (C + C.T), q=np.zeros(v.size), A=v[None, :], b=[1.0],
            name="pca-inverse-iteration", eq_names=["previous_direction"])

    def decode(solution: Solution) -> np.ndarray:
        norm = np.linalg.norm(solution.x)
        if not np.isfinite(norm) or norm == 0:
            raise InputError("the QP solution is zero or not finite", field="solution")
        return solution.x / norm

    return AppQP(qp, decode)


@dataclass
class LeadingComponent:
    vector: np.ndarray
    eigenvalue: float                 # Rayleigh quotient vᵀCv
    sigma: float
    history: list = field(default_factory=list)      # Rayleigh quotient after each QP
    iterates: list = field(default_factory=list)     # the direction after each QP
    network_steps: list = field(default_factory=list)


def leading_component(X, solve: Callable[[QP], Solution], *, iterations: int = 30, tol: float = 1e-10,
                      sigma: Optional[float] = None, covariance: bool = False,
                      seed: int = 0) -> LeadingComponent:
    """The leading principal component of the data X (rows: samples), or of the matrix
    X itself with ``covariance=True``. Stops after ``iterations`` QPs or when the
    direction moves by less than ``tol`` (1 − |cos|)."""
    X = as_matrix(X, "X")
    if covariance:
        if X.shape[0] != X.shape[1]:
            raise InputError("a covariance matrix must be square", field="X")
        C = 0.5 * (X + X.T)
    else:
        C = np.cov(X, rowvar=False)
    sigma = gershgorin_shift(C) if sigma is None else float(sigma)
    v = np.random.default_rng(seed).standard_normal(C.shape[0])
    v /= np.linalg.norm(v)
    result = LeadingComponent(v, float(v @ C @ v), sigma)
    for _ in range(int(iterations)):
        qp, decode = inverse_iteration_qp(C, v, sigma)
        solution = solve(qp)
        v_next = decode(solution)
        result.network_steps.append(solution.steps)
        moved = 1.0 - abs(float(v_next @ v))
        v = v_next
        result.history.append(float(v @ C @ v))
        result.iterates.append(v)
        if moved < tol:
            break
    result.vector, result.eigenvalue = v, float(v @ C @ v)
    return result
