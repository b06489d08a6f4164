"""Synthetic QPs with a known structure, for tests, benchmarks and quick experiments.

Each is a deterministic function of its seed (numpy's ``default_rng``), so a test and
a benchmark that name the same seed solve the same problem.
"""
from __future__ import annotations

import numpy as np

from .qp import QP


def random_qp(seed: int = 0, n: int = 20, m_ineq: int = 10, m_eq: int = 5) -> QP:
    """Strictly convex, with inequalities, equalities and the box −1 ≤ x ≤ 1, feasible by
    construction: every constraint holds at a point x₀ inside the box (the inequalities
    with slack U(0, 1))."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    x0 = rng.uniform(-0.5, 0.5, n)
    G, A = rng.standard_normal((m_ineq, n)), rng.standard_normal((m_eq, n))
    return QP(P=M @ M.T / n + 0.1 * np.eye(n), q=rng.standard_normal(n), G=G,
              h=G @ x0 + rng.uniform(0, 1, m_ineq), A=A, b=A @ x0, lb=-np.ones(n), ub=np.ones(n),
              name=f"random{n}")


def cut_qp(seed: int = 2, n: int = 10, m: int = 8) -> QP:
    """Strictly convex, with m random inequalities cut through the unconstrained optimum
    (each at a margin U(−1, 1) from it), so roughly half are active (seed 2: 4 of 8)."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    P = M @ M.T / n + 0.5 * np.eye(n)
    x_free = rng.standard_normal(n)
    G = rng.standard_normal((m, n))
    h = G @ x_free - rng.uniform(-1.0, 1.0, m)
    return QP(P=P, q=-P @ x_free, G=G, h=h, name=f"cut{n}_{seed}")
