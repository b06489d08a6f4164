"""Non-negative matrix factorisation and collaborative filtering by alternating
non-negative least squares (ANLS), every half-step one QP solved by the network.

X (m×n) ≈ W H with W (m×r), H (r×n) ≥ 0. With W fixed, H's columns are
independent problems

    minimise_{h ≥ 0}  ½‖Mⱼ⊙(xⱼ − W h)‖² + ½λ‖h‖²

(Mⱼ: the observed entries of column j — all of them for plain NMF, the known
ratings for collaborative filtering). ``nnls_qp`` stacks all n of them into
one QP with a block-diagonal P (block j: Wᵀdiag(Mⱼ)W + λI); the non-negativity
is the neurons' clamp, so the network has primal neurons only. The W step is
the same problem for Xᵀ ≈ HᵀWᵀ. ANLS is the two-block coordinate descent of
Kim & Park; each QP is convex, the factorisation problem is not: results depend
on the initialisation, like every NMF.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..qp import QP
from ..solution import Solution
from ._common import AppQP, as_matrix


def nnls_qp(W, X, *, mask=None, ridge: float = 0.0) -> AppQP:
    """All columns of min_{H≥0} ½‖M⊙(X − WH)‖² + ½·ridge·‖H‖² as one QP; decode gives H (r×n)."""
    W, X = as_matrix(W, "W"), as_matrix(X, "X")
    if W.shape[0] != X.shape[0]:
        raise InputError(f"W has {W.shape[0]} rows but X has {X.shape[0]}", field="W")
    M = np.ones_like(X) if mask is None else np.asarray(mask, dtype=bool).astype(np.float64)
    if M.shape != X.shape:
        raise InputError(f"mask shape {M.shape} differs from X's {X.shape}", field="mask")
    if ridge < 0:
        raise InputError("must be ≥ 0", field="ridge")
    r, n = W.shape[1], X.shape[1]
    blocks = [W.T @ (M[:, j, None] * W) + ridge * np.eye(r) for j in range(n)]
    q = -(W.T @ (M * X)).T.reshape(-1)           # column j's block is −Wᵀ(Mⱼ⊙xⱼ)
    qp = QP(P=sp.block_diag(blocks, format="csr"), q=q, r=0.5 * float(np.sum(M * X * X)),
            lb=np.zeros(r * n), name="nnls")

    def decode(solution: Solution) -> np.ndarray:
        return np.maximum(solution.x.reshape(n, r).T, 0.0)

    return AppQP(qp, decode)


@dataclass
class Factorisation:
    W: np.ndarray
    H: np.ndarray
    errors: list = field(default_factory=list)     # relative error ‖M⊙(X − WH)‖/‖M⊙X‖ per iteration
    network_steps: list = field(default_factory=list)

    def reconstruct(self) -> np.ndarray:
        return self.W @ self.H


def nndsvd_init(X: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Boutsidis & Gallopoulos' NNDSVD start (deterministic, as scikit-learn's 'nndsvd')."""
    U, S, Vt = np.linalg.svd(X, full_matrices=False)
    W, H = np.zeros((X.shape[0], rank)), np.zeros((rank, X.shape[1]))
    W[:, 0], H[0] = np.sqrt(S[0]) * np.abs(U[:, 0]), np.sqrt(S[0]) * np.abs(Vt[0])
    for j in range(1, rank):
        x, y = U[:, j], Vt[j]
        xp, xn, yp, yn = np.maximum(x, 0), np.maximum(-x, 0), np.maximum(y, 0), np.maximum(-y, 0)
        pos = np.linalg.norm(xp) * np.linalg.norm(yp)
        neg = np.linalg.norm(xn) * np.linalg.norm(yn)
        u, v, s = (xp, yp, pos) if pos >= neg else (xn, yn, neg)
        nu, nv = np.linalg.norm(u), np.linalg.norm(v)
        if nu > 0 and nv > 0:
            W[:, j], H[j] = np.sqrt(S[j] * s) * u / nu, np.sqrt(S[j] * s) * v / nv
    return W, H


def anls(X, rank: int, solve: Callable[[QP], Solution], *, mask=None, iterations: int = 20,
         ridge: float = 0.0, init: Optional[tuple] = None, seed: int = 0) -> Factorisation:
    """Factorise X ≈ WH ≥ 0 by ``iterations`` rounds of (H step, W step).

    ``solve`` maps a QP to a Solution (the network: ``lambda qp: sc.solve(qp, tol=…)``,
    or ``snn_compile.classical.reference_solution``). Without a mask the start is
    NNDSVD; with one it is seeded random (missing entries make the SVD meaningless).
    """
    X = as_matrix(X, "X")
    if np.any(X < 0):
        raise InputError("NMF needs a non-negative matrix", field="X")
    if int(rank) < 1 or rank > min(X.shape):
        raise InputError(f"must lie in 1..{min(X.shape)}", field="rank")
    M = np.ones(X.shape, bool) if mask is None else np.asarray(mask, dtype=bool)
    if init is not None:
        W, H = (np.array(a, dtype=np.float64) for a in init)
    elif mask is None:
        W, H = nndsvd_init(X, rank)
    else:
        rng = np.random.default_rng(seed)
        scale = np.sqrt(X[M].mean() / rank)
        W, H = rng.uniform(0, 2 * scale, (X.shape[0], rank)), rng.uniform(0, 2 * scale, (rank, X.shape[1]))
    result = Factorisation(W, H)
    norm = np.linalg.norm(X[M])
    for _ in range(int(iterations)):
        qp, decode = nnls_qp(W, X, mask=M, ridge=ridge)
        solution = solve(qp)
        H = decode(solution)
        qp, decode = nnls_qp(H.T, X.T, mask=M.T, ridge=ridge)
        solution_w = solve(qp)
        W = decode(solution_w).T
        result.network_steps.append(solution.steps + solution_w.steps)
        result.errors.append(float(np.linalg.norm((X - W @ H)[M]) / norm))
    result.W, result.H = W, H
    return result


def low_rank_ratings(n_users: int = 40, n_items: int = 30, rank: int = 3, *, observed: float = 0.5,
                     noise: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded non-negative low-rank 'ratings' matrix and the mask of observed entries."""
    rng = np.random.default_rng(seed)
    ratings = rng.gamma(2.0, 0.5, (n_users, rank)) @ rng.gamma(2.0, 0.5, (rank, n_items))
    ratings = np.maximum(ratings + noise * rng.standard_normal(ratings.shape), 0.0)
    return ratings, rng.random(ratings.shape) < observed
