"""Ruiz equilibration and cost scaling of a QP, as a pure, invertible pass.

The KKT matrix K = [[P, Cᵀ], [C, 0]] with C = [G; A] is scaled symmetrically
by diag(D, E) so that its row and column ∞-norms approach 1, then the cost is
divided by roughly its size (OSQP, Stellato et al. 2020, §5.1). With x = D·x̃:

    P̃ = c·D P D,  q̃ = c·D q,  r̃ = c·r,  G̃ = E_in G D,  h̃ = E_in h,
    Ã = E_eq A D,  b̃ = E_eq b,  l̃b = lb / d,  ũb = ub / d.

The box stays a box (it is not folded into C as OSQP does); that is only
possible because D is a positive diagonal, which maps a box onto a box.
Duals map back as λ = E·λ̃ / c and z_box = z̃_box / (d·c), from the scaled
stationarity condition P̃x̃ + q̃ + C̃ᵀλ̃ + z̃_box = c·D·(Px + q + Cᵀλ + z_box).

Every step is O(nnz) and a sparse problem stays sparse.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..qp import QP, Matrix

#: OSQP's limits on a norm used for scaling: norms below MIN_SCALING (zero rows
#: and columns, or round-off) count as 1 so they are left alone instead of being
#: blown up; norms above MAX_SCALING are capped so one pass cannot overreact.
MIN_SCALING = 1e-4
MAX_SCALING = 1e4

#: Stop early once every (nonzero) KKT row/column ∞-norm is this close to 1:
#: further passes would change the scaling by less than this fraction.
CONVERGED_TOL = 1e-3


# ---------------------------------------------------------------- matrix helpers
def _col_inf_norms(M: Matrix) -> np.ndarray:
    if M.shape[0] == 0:
        return np.zeros(M.shape[1])
    if sp.issparse(M):
        return abs(M).max(axis=0).toarray().ravel()
    return np.abs(M).max(axis=0)


def _row_inf_norms(M: Matrix) -> np.ndarray:
    if M.shape[1] == 0 or M.shape[0] == 0:
        return np.zeros(M.shape[0])
    if sp.issparse(M):
        return abs(M).max(axis=1).toarray().ravel()
    return np.abs(M).max(axis=1)


def _scale_rows_cols(M: Matrix, row_scale: np.ndarray, col_scale: np.ndarray) -> Matrix:
    """diag(row_scale)·M·diag(col_scale), in M's format, always a new array."""
    if sp.issparse(M):
        M = sp.csr_matrix(M)
        rows = np.repeat(np.arange(M.shape[0]), np.diff(M.indptr))
        data = M.data * row_scale[rows] * col_scale[M.indices]
        return sp.csr_matrix((data, M.indices.copy(), M.indptr.copy()), shape=M.shape)
    return row_scale[:, None] * np.asarray(M) * col_scale[None, :]


def _limit(norms):
    """OSQP's limit_scaling: tiny norms become 1, huge ones are capped (arrays or scalars)."""
    return np.where(norms < MIN_SCALING, 1.0, np.minimum(norms, MAX_SCALING))


def _kkt_norms(P: Matrix, C_blocks: list[Matrix]) -> tuple[np.ndarray, list[np.ndarray]]:
    """∞-norms of the KKT columns (x part) and rows (one array per C block).

    K is symmetric, so these are also its row norms: the whole of its spectrum
    of ∞-norms.
    """
    col = _col_inf_norms(P)
    for C in C_blocks:
        col = np.maximum(col, _col_inf_norms(C))
    return col, [_row_inf_norms(C) for C in C_blocks]


def _norm_ratio(col: np.ndarray, rows: list[np.ndarray]) -> float:
    """Condition proxy: largest over smallest nonzero KKT row/column ∞-norm."""
    norms = np.concatenate([col, *rows])
    norms = norms[norms > 0]
    return float(norms.max() / norms.min()) if norms.size else 1.0


# ---------------------------------------------------------------- the scaling
@dataclass(frozen=True, eq=False)
class Scaling:
    """x = d·x̃ ; constraint rows scaled by e_ineq / e_eq ; cost multiplied by ``cost``."""

    d: np.ndarray
    e_ineq: np.ndarray
    e_eq: np.ndarray
    cost: float = 1.0

    def __post_init__(self):
        for name in ("d", "e_ineq", "e_eq"):
            vec = np.array(getattr(self, name), dtype=np.float64).reshape(-1)
            if not np.all(np.isfinite(vec) & (vec > 0)):
                raise InputError("scaling factors must be finite and positive", field=name)
            vec.flags.writeable = False  # frozen means frozen: callers get read-only views
            object.__setattr__(self, name, vec)
        cost = float(self.cost)
        if not (np.isfinite(cost) and cost > 0):
            raise InputError("cost scale must be finite and positive", field="cost")
        object.__setattr__(self, "cost", cost)

    @classmethod
    def identity(cls, qp: QP) -> "Scaling":
        return cls(np.ones(qp.n), np.ones(qp.m_ineq), np.ones(qp.m_eq), 1.0)

    @property
    def is_identity(self) -> bool:
        return self.cost == 1.0 and all(np.all(v == 1.0) for v in (self.d, self.e_ineq, self.e_eq))

    # ------------------------------------------------------------ problem
    def apply(self, qp: QP) -> QP:
        """The scaled problem (a new QP; ``qp`` is untouched)."""
        self._check_sizes(qp.n, qp.m_ineq, qp.m_eq)
        d, c = self.d, self.cost
        return qp.replace(
            P=_scale_rows_cols(qp.P, c * d, d), q=c * d * qp.q, r=c * qp.r,
            G=_scale_rows_cols(qp.G, self.e_ineq, d), h=self.e_ineq * qp.h,
            A=_scale_rows_cols(qp.A, self.e_eq, d), b=self.e_eq * qp.b,
            lb=qp.lb / d, ub=qp.ub / d,
            # D P D is congruent to P, so it has the same inertia and the PSD
            # check the input passed still holds. Redoing it would cost an
            # eigensolve and could refuse a problem (VALUES) whose round-off
            # negativity is relatively larger after scaling.
            check_psd=False)

    # ------------------------------------------------------------ vectors
    def unscale_primal(self, x_scaled) -> np.ndarray:
        return self.d * np.asarray(x_scaled, dtype=np.float64)

    def scale_primal(self, x) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) / self.d

    def unscale_duals(self, y_scaled, z_scaled, z_box_scaled):
        """(y, z, z_box) of the original problem from those of the scaled one."""
        c = self.cost
        return (self.e_eq * np.asarray(y_scaled, dtype=np.float64) / c,
                self.e_ineq * np.asarray(z_scaled, dtype=np.float64) / c,
                np.asarray(z_box_scaled, dtype=np.float64) / (self.d * c))

    def scale_duals(self, y, z, z_box):
        """Inverse of :meth:`unscale_duals`."""
        c = self.cost
        return (c * np.asarray(y, dtype=np.float64) / self.e_eq,
                c * np.asarray(z, dtype=np.float64) / self.e_ineq,
                c * self.d * np.asarray(z_box, dtype=np.float64))

    def unscale_objective(self, obj_scaled: float) -> float:
        """f(x) from f̃(x̃): the scaled objective is exactly c·f."""
        return float(obj_scaled) / self.cost

    # ------------------------------------------------------------ provenance
    def to_dict(self) -> dict[str, Any]:
        return {"d": self.d.tolist(), "e_ineq": self.e_ineq.tolist(),
                "e_eq": self.e_eq.tolist(), "cost": self.cost}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Scaling":
        return cls(np.asarray(data["d"], dtype=np.float64), np.asarray(data["e_ineq"], dtype=np.float64),
                   np.asarray(data["e_eq"], dtype=np.float64), float(data["cost"]))

    def _check_sizes(self, n: int, m_ineq: int, m_eq: int):
        got, want = (self.d.size, self.e_ineq.size, self.e_eq.size), (n, m_ineq, m_eq)
        if got != want:
            raise InputError(f"scaling sizes (n, m_ineq, m_eq) = {got} do not match the problem's {want}",
                             field="scaling")


# ---------------------------------------------------------------- the pass
def _col_one_norms(M: Matrix) -> np.ndarray:
    if sp.issparse(M):
        return np.asarray(abs(M).sum(axis=0)).ravel()
    return np.abs(M).sum(axis=0)


def _row_one_norms(M: Matrix) -> np.ndarray:
    if sp.issparse(M):
        return np.asarray(abs(M).sum(axis=1)).ravel()
    return np.abs(M).sum(axis=1)


def precondition(qp: QP, *, iterations: int = 10, scale_cost: bool = True,
                 scale_bounds: bool = True, pock_chambolle: bool = False,
                 ) -> tuple[QP, Scaling, dict[str, Any]]:
    """Ruiz-equilibrate the KKT matrix of ``qp``, then scale its cost.

    Returns ``(scaled_qp, scaling, report)``; ``qp`` is not modified. With
    ``scale_bounds=False`` every variable with a finite bound keeps d_j = 1, so
    its box is passed through verbatim (for targets whose clamp levels are
    fixed in hardware); the remaining variables are still equilibrated.
    ``report`` (JSON-able) holds the passes run, the cost scale, the ranges of
    d and e, and the condition proxy "KKT ∞-norm ratio" (largest over smallest
    nonzero row/column ∞-norm) before, after equilibration, and after the cost
    scale. ``pock_chambolle=True`` adds one pass with 1-norms after Ruiz
    (Pock & Chambolle 2011, α = 1), which bounds the primal–dual operator norm
    and is what lets restarted PDHG solve the hardest Maros–Meszaros problems.
    """
    if iterations < 0:
        raise InputError("must be ≥ 0", field="iterations")
    P, blocks = qp.P, [qp.G, qp.A]
    free = np.ones(qp.n, bool) if scale_bounds else ~(np.isfinite(qp.lb) | np.isfinite(qp.ub))
    d = np.ones(qp.n)
    e = [np.ones(qp.m_ineq), np.ones(qp.m_eq)]

    col, rows = _kkt_norms(P, blocks)
    ratio_before = _norm_ratio(col, rows)
    done = 0
    for _ in range(iterations):
        # Converged already? Only free, nonzero columns and nonzero rows can move.
        moving = [col[free & (col >= MIN_SCALING)]] + [r[r >= MIN_SCALING] for r in rows]
        if all(np.all(np.abs(v - 1.0) <= CONVERGED_TOL) for v in moving):
            break
        d_step = np.where(free, 1.0 / np.sqrt(_limit(col)), 1.0)
        e_step = [1.0 / np.sqrt(_limit(r)) for r in rows]
        # Accumulated factors are clipped as well, so that many passes on a
        # degenerate problem cannot drive them to extremes.
        d = np.clip(d * d_step, MIN_SCALING, MAX_SCALING)
        e = [np.clip(ei * si, MIN_SCALING, MAX_SCALING) for ei, si in zip(e, e_step)]
        # Rescale from the originals (not incrementally) so the scaled data is
        # exactly diag(·)·M·diag(·) for the clipped factors, with no drift.
        P = _scale_rows_cols(qp.P, d, d)
        blocks = [_scale_rows_cols(M, ei, d) for M, ei in zip((qp.G, qp.A), e)]
        col, rows = _kkt_norms(P, blocks)
        done += 1

    if pock_chambolle:
        col1 = _col_one_norms(P) + sum(_col_one_norms(M) for M in blocks)
        d = np.clip(np.where(free, d / np.sqrt(_limit(col1)), d), MIN_SCALING, MAX_SCALING)
        e = [np.clip(ei / np.sqrt(_limit(_row_one_norms(M))), MIN_SCALING, MAX_SCALING)
             for ei, M in zip(e, blocks)]
        P = _scale_rows_cols(qp.P, d, d)
        blocks = [_scale_rows_cols(M, ei, d) for M, ei in zip((qp.G, qp.A), e)]
        col, rows = _kkt_norms(P, blocks)

    cost = 1.0
    if scale_cost:
        # OSQP: c = 1 / max(mean column norm of P̃, ‖q̃‖∞), each norm limited.
        mean_p = float(np.mean(_col_inf_norms(P)))
        q_norm = float(_limit(np.abs(d * qp.q).max()))
        cost = 1.0 / float(_limit(max(mean_p, q_norm)))

    scaling = Scaling(d, e[0], e[1], cost)
    scaled = scaling.apply(qp)
    col_after, rows_after = _kkt_norms(scaled.P, [scaled.G, scaled.A])
    report = {"iterations": done, "pock_chambolle": pock_chambolle, "cost_scale": cost,
              "kkt_norm_ratio_before": ratio_before,
              # Before the cost scale, which moves P against C and can undo some of the gain.
              "kkt_norm_ratio_equilibrated": _norm_ratio(col, rows),
              "kkt_norm_ratio_after": _norm_ratio(col_after, rows_after),
              "d_range": [float(d.min()), float(d.max())],
              "e_range": ([float(np.concatenate(e).min()), float(np.concatenate(e).max())]
                          if qp.m_ineq + qp.m_eq else [1.0, 1.0])}
    return scaled, scaling, report
