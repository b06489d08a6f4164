"""Small pure conversions between problem representations (qpsolvers style)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .qp import QP


def _csc(M):
    return sp.csc_matrix(M)


def to_qpsolvers_problem(qp: QP):
    """The same problem as a ``qpsolvers.Problem`` (sparse CSC matrices)."""
    from qpsolvers import Problem

    has_g, has_a = qp.m_ineq > 0, qp.m_eq > 0
    return Problem(
        P=_csc(qp.P), q=qp.q,
        G=_csc(qp.G) if has_g else None, h=qp.h if has_g else None,
        A=_csc(qp.A) if has_a else None, b=qp.b if has_a else None,
        lb=qp.lb if np.any(np.isfinite(qp.lb)) else None,
        ub=qp.ub if np.any(np.isfinite(qp.ub)) else None)


def from_qpsolvers_problem(problem, name: str = "qpsolvers") -> QP:
    """A ``QP`` from a ``qpsolvers.Problem`` (the constant term is zero there)."""
    return QP(P=problem.P, q=problem.q, G=problem.G, h=problem.h, A=problem.A, b=problem.b,
              lb=problem.lb, ub=problem.ub, name=name)


def box_as_inequalities(qp: QP) -> tuple[sp.csr_matrix, np.ndarray]:
    """The finite bounds as rows ``[−I; I] x ≤ [−lb; ub]`` (only finite ones).

    Needed by families that have no state clamp (projection, pure LIF), where a
    bound can only be enforced by a constraint neuron.
    """
    n = qp.n
    lo = np.flatnonzero(np.isfinite(qp.lb))
    hi = np.flatnonzero(np.isfinite(qp.ub))
    rows = np.concatenate([np.arange(lo.size), lo.size + np.arange(hi.size)])
    cols = np.concatenate([lo, hi])
    vals = np.concatenate([-np.ones(lo.size), np.ones(hi.size)])
    B = sp.csr_matrix((vals, (rows, cols)), shape=(lo.size + hi.size, n))
    return B, np.concatenate([-qp.lb[lo], qp.ub[hi]])


def split_two_sided_rows(C, lower: np.ndarray, upper: np.ndarray, *, eq_tol: float = 1e-10):
    """Rows l ≤ Cx ≤ u as equalities (u − l < eq_tol) and one-sided inequalities.

    Returns ``(A, b, G, h, eq_rows, ineq_rows)`` where ``ineq_rows`` gives, for
    every row of G, ``(source_row, sign)`` so that names and duals can be traced
    back. This is the split qpbenchmark applies to Maros–Meszaros data.
    """
    C = sp.csr_matrix(C)
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    is_eq = np.isfinite(lower) & np.isfinite(upper) & (upper - lower < eq_tol)
    eq = np.flatnonzero(is_eq)
    up = np.flatnonzero(~is_eq & np.isfinite(upper))
    lo = np.flatnonzero(~is_eq & np.isfinite(lower))
    A, b = C[eq], upper[eq]
    G = sp.vstack([C[up], -C[lo]], format="csr")
    h = np.concatenate([upper[up], -lower[lo]])
    ineq_rows = [(int(i), +1) for i in up] + [(int(i), -1) for i in lo]
    return A, b, G, h, eq.tolist(), ineq_rows
