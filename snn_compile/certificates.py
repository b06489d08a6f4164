"""Infeasibility and unboundedness certificates from a diverging run.

A primal–dual network on an infeasible problem does not settle: its duals grow
linearly along a Farkas direction; on an unbounded problem its primal state
grows along a recession direction. The difference of two late iterates is
therefore tested as a certificate (the same tests OSQP uses, Banjac et al.
2019), on the original problem. A certificate is a fact about the problem, so
a status of "infeasible_suspected" is never a guess from a slow run alone.
"""
from __future__ import annotations

import numpy as np

from .qp import QP, matvec, rmatvec

CERTIFICATE_TOL = 1e-5


def _support_of_box(qp: QP, dz_box: np.ndarray) -> float:
    """sup over lb ≤ x ≤ ub of −dz_boxᵀx... written as lbᵀ min(dz,0) + ubᵀ max(dz,0); −inf/inf terms
    make the certificate fail, so they return +inf."""
    lower, upper = np.minimum(dz_box, 0.0), np.maximum(dz_box, 0.0)
    if np.any((lower < 0) & ~np.isfinite(qp.lb)) or np.any((upper > 0) & ~np.isfinite(qp.ub)):
        return np.inf
    fin_lb, fin_ub = np.isfinite(qp.lb), np.isfinite(qp.ub)
    return float(qp.lb[fin_lb] @ lower[fin_lb] + qp.ub[fin_ub] @ upper[fin_ub])


def is_primal_infeasibility_certificate(qp: QP, dy, dz, dz_box, tol: float = CERTIFICATE_TOL) -> bool:
    """Farkas: Aᵀdy + Gᵀdz + dz_box ≈ 0, dz ≥ 0, and bᵀdy + hᵀdz + lbᵀdz_box⁻ + ubᵀdz_box⁺ < 0."""
    dy, dz, dz_box = (np.asarray(v, dtype=np.float64) for v in (dy, dz, dz_box))
    scale = max(np.max(np.abs(np.concatenate([dy, dz, dz_box])), initial=0.0), 1e-300)
    if scale <= 1e-12 or np.any(dz < -tol * scale):
        return False
    dy, dz, dz_box = dy / scale, np.maximum(dz / scale, 0.0), dz_box / scale
    stationarity = dz_box.copy()
    if qp.m_eq:
        stationarity += rmatvec(qp.A, dy)
    if qp.m_ineq:
        stationarity += rmatvec(qp.G, dz)
    value = qp.b @ dy + qp.h @ dz + _support_of_box(qp, dz_box)
    return bool(np.max(np.abs(stationarity), initial=0.0) <= tol and value < -tol)


def is_dual_infeasibility_certificate(qp: QP, dx, tol: float = CERTIFICATE_TOL) -> bool:
    """Unbounded below: Pdx ≈ 0, qᵀdx < 0, Adx ≈ 0, Gdx ≤ 0, dx in the box's recession cone."""
    dx = np.asarray(dx, dtype=np.float64)
    scale = np.max(np.abs(dx), initial=0.0)
    if scale <= 1e-12:
        return False
    dx = dx / scale
    cone_ok = (np.all(dx[np.isfinite(qp.ub)] <= tol) and np.all(dx[np.isfinite(qp.lb)] >= -tol))
    return bool(cone_ok
                and np.max(np.abs(matvec(qp.P, dx)), initial=0.0) <= tol
                and qp.q @ dx < -tol
                and (not qp.m_eq or np.max(np.abs(matvec(qp.A, dx))) <= tol)
                and (not qp.m_ineq or np.max(matvec(qp.G, dx)) <= tol))
