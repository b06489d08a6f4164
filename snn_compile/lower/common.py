"""Helpers shared by the lowering families: step sizes, provenance, and the
stacked constraint rows with the readout maps from row multipliers to the
QP's duals (y, z, z_box).

Families without a state clamp (projection, pure LIF) see every constraint as
one row ``cᵢᵀx ≤ hᵢ`` of

    C = [G; A; −A; −I_lo; I_hi],   h = [h; b; −b; −lb_lo; ub_hi]

(an equality is the pair a x ≤ b, −a x ≤ −b; a finite bound is a row of
``box_as_inequalities``). A nonnegative multiplier wᵢ per row maps back to the
QP's duals with qpsolvers' signs (stationarity Px + q + Aᵀy + Gᵀz + z_box = 0):
z = w_G, y = w_up − w_lo, z_box = w_hi − w_lo-bound.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import numpy as np
import scipy.sparse as sp

from ..conversions import box_as_inequalities
from ..ir import ReadoutTerm
from ..qp import QP, Matrix, matvec

_MatrixOrMatvec = Union[Matrix, Callable[[np.ndarray], np.ndarray]]


def power_iteration_lambda_max(M: _MatrixOrMatvec, n: Optional[int] = None, *, iters: int = 500,
                               tol: float = 1e-9, seed: int = 0) -> float:
    """Largest eigenvalue of a symmetric PSD operator by power iteration.

    ``M`` is a dense/sparse matrix or a matvec callable (then give ``n``).
    O(iters·nnz) time and O(n) memory: never a dense eigendecomposition, so
    it is safe for large sparse P. The Rayleigh quotient approaches λmax from
    below; callers that derive a step size keep a margin (s < 2).
    """
    if callable(M) and not hasattr(M, "shape"):
        apply = M
        if n is None:
            raise ValueError("n is required when M is a matvec callable")
    else:
        apply = lambda v: matvec(M, v)  # noqa: E731
        n = M.shape[0]
    if n == 0:
        return 0.0
    v = np.random.default_rng(seed).standard_normal(n)
    v /= np.linalg.norm(v)
    estimate = 0.0
    for _ in range(iters):
        w = apply(v)
        rayleigh = float(v @ w)
        norm = float(np.linalg.norm(w))
        if norm == 0.0:           # v in the null space: M = 0 as far as we can tell
            return 0.0
        v = w / norm
        if abs(rayleigh - estimate) <= tol * max(abs(rayleigh), 1e-300):
            return rayleigh
        estimate = rayleigh
    return estimate


def provenance(qp: QP, family: str, params: dict[str, Any], scaling=None,
               warnings: Optional[list[str]] = None) -> dict[str, Any]:
    """What every lowered network records about where it came from.

    ``qp`` is the user's problem (its hash identifies the source); ``scaling``
    (a ``Scaling`` or None) maps the readout back to it.
    """
    return {"qp_hash": qp.content_hash(), "family": family, "params": dict(params),
            "scaling": None if scaling is None else scaling.to_dict(),
            "n": qp.n, "m_ineq": qp.m_ineq, "m_eq": qp.m_eq,
            "warnings": list(warnings or [])}


def readout_sizes(qp: QP) -> dict[str, int]:
    return {"x": qp.n, "y": qp.m_eq, "z": qp.m_ineq, "z_box": qp.n}


@dataclass(frozen=True, eq=False)
class ConstraintRows:
    """All constraints of a QP as rows C x ≤ h, with maps row multipliers → duals."""

    C: sp.csr_matrix
    h: np.ndarray
    to_z: sp.csr_matrix       # m_ineq × m_rows
    to_y: sp.csr_matrix       # m_eq × m_rows
    to_z_box: sp.csr_matrix   # n × m_rows
    kinds: tuple              # per row: "ineq", "eq_up", "eq_lo", "lb", "ub"

    @property
    def m(self) -> int:
        return self.h.size

    def row_norms_sq(self) -> np.ndarray:
        return np.asarray(self.C.multiply(self.C).sum(axis=1)).reshape(-1)


def stack_constraint_rows(qp: QP) -> ConstraintRows:
    """[G; A; −A; −I_lo; I_hi] x ≤ [h; b; −b; −lb_lo; ub_hi], in that row order."""
    B, hb = box_as_inequalities(qp)
    n_lo = int(np.isfinite(qp.lb).sum())
    m_in, m_eq, m_box = qp.m_ineq, qp.m_eq, hb.size
    C = sp.vstack([sp.csr_matrix(qp.G), sp.csr_matrix(qp.A), -sp.csr_matrix(qp.A), B], format="csr")
    h = np.concatenate([qp.h, qp.b, -qp.b, hb])
    m = h.size

    def selector(rows_out: int, entries: list) -> sp.csr_matrix:
        """Sparse map with entries (output index, row index, sign)."""
        if not entries:
            return sp.csr_matrix((rows_out, m))
        out, row, sign = (np.array(a) for a in zip(*entries))
        return sp.csr_matrix((sign.astype(float), (out, row)), shape=(rows_out, m))

    lo_vars, hi_vars = np.flatnonzero(np.isfinite(qp.lb)), np.flatnonzero(np.isfinite(qp.ub))
    box0 = m_in + 2 * m_eq
    to_z = selector(m_in, [(i, i, 1.0) for i in range(m_in)])
    to_y = selector(m_eq, [(i, m_in + i, 1.0) for i in range(m_eq)]
                    + [(i, m_in + m_eq + i, -1.0) for i in range(m_eq)])
    to_z_box = selector(qp.n, [(int(j), box0 + k, -1.0) for k, j in enumerate(lo_vars)]
                        + [(int(j), box0 + n_lo + k, 1.0) for k, j in enumerate(hi_vars)])
    kinds = ("ineq",) * m_in + ("eq_up",) * m_eq + ("eq_lo",) * m_eq + ("lb",) * n_lo + \
            ("ub",) * (m_box - n_lo)
    return ConstraintRows(C=C, h=h, to_z=to_z, to_y=to_y, to_z_box=to_z_box, kinds=kinds)


def dual_readout_terms(rows: ConstraintRows, population: str, quantity: str,
                       row_scale: Union[float, np.ndarray]) -> list[ReadoutTerm]:
    """Readout terms y, z, z_box = (row map)·diag(row_scale)·Q(population)."""
    scale = sp.diags(np.broadcast_to(np.asarray(row_scale, float), (rows.m,)))
    terms = []
    for target, M in (("z", rows.to_z), ("y", rows.to_y), ("z_box", rows.to_z_box)):
        if M.shape[0] and rows.m:
            terms.append(ReadoutTerm(target, population, quantity, matrix=sp.csr_matrix(M @ scale)))
    return terms
