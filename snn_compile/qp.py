"""The convex quadratic program every stage of the compiler talks about.

    minimise    ½ xᵀP x + qᵀx + r
    subject to  G x ≤ h,   A x = b,   lb ≤ x ≤ ub

A ``QP`` is validated on construction (shapes, finite numbers, symmetric and
positive semidefinite P, lb ≤ ub, non-empty) and is immutable by convention:
passes build new ``QP`` objects instead of editing one in place.

Matrices may be dense ``numpy`` arrays or ``scipy.sparse`` matrices; sparse
inputs are kept sparse (CSR) so that nothing downstream needs n×n memory for a
sparse problem. Absent constraint blocks are stored as 0-row matrices, absent
bounds as ±inf, so callers never test for ``None``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .errors import InputError

Matrix = Union[np.ndarray, sp.spmatrix, sp.sparray]

#: Above this many variables the PSD check uses Lanczos instead of a dense
#: eigendecomposition (O(n³) time and n² memory).
DENSE_EIG_LIMIT = 600

#: P is accepted as positive semidefinite when λmin ≥ −PSD_REL_TOL·max(1, λmax).
#: 1e-5 admits round-off in published problems (Maros–Meszaros VALUES has
#: λmin ≈ −1.27e-5 against λmax ≈ 10.8) and refuses genuinely indefinite P.
PSD_REL_TOL = 1e-5

#: Relative tolerance of the symmetry check, ``|P − Pᵀ| ≤ SYM_REL_TOL·max|P|``.
SYM_REL_TOL = 1e-10


def _as_matrix(value, name: str, shape: tuple[int, int]) -> Matrix:
    if sp.issparse(value):
        mat = sp.csr_matrix(value, dtype=np.float64)
        mat.sum_duplicates()
        mat.eliminate_zeros()
    else:
        try:
            mat = np.array(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"not a numeric matrix ({exc})", field=name) from None
        if mat.ndim == 1 and shape[0] == 1:
            mat = mat.reshape(1, -1)
        if mat.ndim == 0 and mat.size == 0:
            mat = mat.reshape(shape)
        if mat.ndim != 2:
            raise InputError(f"expected a 2-D matrix of shape {shape}, got {mat.ndim}-D", field=name)
    if mat.shape != shape:
        raise InputError(f"expected shape {shape[0]}×{shape[1]}, got {mat.shape[0]}×{mat.shape[1]}",
                         field=name)
    data = mat.data if sp.issparse(mat) else mat
    if not np.all(np.isfinite(data)):
        raise InputError("contains NaN or infinite entries", field=name)
    return mat


def _as_vector(value, name: str, length: int, *, default: float | None = None,
               allow: str = "finite") -> np.ndarray:
    if value is None:
        if default is None:
            raise InputError("is required", field=name)
        return np.full(length, default, dtype=np.float64)
    try:
        vec = np.array(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"not a numeric vector ({exc})", field=name) from None
    if vec.shape != (length,):
        raise InputError(f"expected length {length}, got {vec.size}", field=name)
    if np.any(np.isnan(vec)):
        raise InputError("contains NaN", field=name)
    if allow == "finite" and not np.all(np.isfinite(vec)):
        raise InputError("contains infinite entries", field=name)
    if allow == "lower" and np.any(vec == np.inf):
        raise InputError("lower bound +inf makes the problem infeasible", field=name)
    if allow == "upper" and np.any(vec == -np.inf):
        raise InputError("upper bound -inf makes the problem infeasible", field=name)
    return vec


def _names(value, name: str, length: int) -> Optional[tuple[str, ...]]:
    if value is None:
        return None
    names = tuple(str(v) for v in value)
    if len(names) != length:
        raise InputError(f"expected {length} names, got {len(names)}", field=name)
    return names


def matvec(M: Matrix, v: np.ndarray) -> np.ndarray:
    """``M @ v`` for dense or sparse M, always a 1-D float array."""
    return np.asarray(M @ v, dtype=np.float64).reshape(-1)


def rmatvec(M: Matrix, v: np.ndarray) -> np.ndarray:
    """``Mᵀ @ v`` without forming the transpose of a dense M."""
    return np.asarray(M.T @ v, dtype=np.float64).reshape(-1)


def to_sparse(M: Matrix) -> sp.csr_matrix:
    return M if isinstance(M, sp.csr_matrix) else sp.csr_matrix(M)


def symmetric_extreme_eigenvalues(P: Matrix, *, tol: float = 1e-8) -> tuple[float, float]:
    """(λmin, λmax) of a symmetric matrix, dense for small, Lanczos for large.

    For large P, λmax comes from Lanczos on P and λmin from Lanczos on
    λmax·I − P (whose largest eigenvalue is λmax − λmin): Lanczos converges far
    faster to the top of a spectrum than to its bottom.
    """
    n = P.shape[0]
    if n == 0:
        return 0.0, 0.0
    if n <= DENSE_EIG_LIMIT:
        dense = P.toarray() if sp.issparse(P) else np.asarray(P)
        ev = np.linalg.eigvalsh(dense)
        return float(ev[0]), float(ev[-1])
    op = spla.aslinearoperator(to_sparse(P))
    v0 = np.ones(n) / np.sqrt(n)
    lam_max = _top_eigenvalue(op, v0, tol)
    shift = max(lam_max, 0.0) + 1.0
    shifted = spla.LinearOperator((n, n), matvec=lambda v: shift * v - op.matvec(v), dtype=np.float64)
    return float(shift - _top_eigenvalue(shifted, v0, tol)), float(lam_max)


def _top_eigenvalue(op, v0, tol) -> float:
    try:
        vals = spla.eigsh(op, k=1, which="LA", v0=v0, tol=tol, maxiter=5000,
                          return_eigenvectors=False)
    except spla.ArpackNoConvergence as exc:  # best Ritz value so far is still informative
        vals = exc.eigenvalues if len(exc.eigenvalues) else [np.nan]
    return float(vals[0])


@dataclass(frozen=True, eq=False)
class QP:
    """min ½xᵀPx + qᵀx + r  s.t.  Gx ≤ h, Ax = b, lb ≤ x ≤ ub (P ⪰ 0)."""

    P: Matrix
    q: np.ndarray
    G: Matrix = None
    h: np.ndarray = None
    A: Matrix = None
    b: np.ndarray = None
    lb: np.ndarray = None
    ub: np.ndarray = None
    r: float = 0.0
    name: str = "qp"
    var_names: Optional[Sequence[str]] = None
    ineq_names: Optional[Sequence[str]] = None
    eq_names: Optional[Sequence[str]] = None
    check_psd: bool = field(default=True, repr=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        q = np.array(self.q, dtype=np.float64).reshape(-1) if self.q is not None else None
        if q is None or q.size == 0:
            raise InputError("the problem is empty: q must have at least one entry", field="q")
        n = q.size
        set_("q", _as_vector(q, "q", n))
        set_("P", _as_matrix(sp.csr_matrix((n, n)) if self.P is None else self.P, "P", (n, n)))
        m_in = 0 if self.G is None else (self.G.shape[0] if hasattr(self.G, "shape") else len(self.G))
        m_eq = 0 if self.A is None else (self.A.shape[0] if hasattr(self.A, "shape") else len(self.A))
        if (self.G is None) != (self.h is None) and not (self.G is None and np.size(self.h) == 0):
            raise InputError("G and h must be given together", field="G" if self.G is None else "h")
        if (self.A is None) != (self.b is None) and not (self.A is None and np.size(self.b) == 0):
            raise InputError("A and b must be given together", field="A" if self.A is None else "b")
        set_("G", _as_matrix(sp.csr_matrix((0, n)) if self.G is None else self.G, "G", (m_in, n)))
        set_("A", _as_matrix(sp.csr_matrix((0, n)) if self.A is None else self.A, "A", (m_eq, n)))
        set_("h", _as_vector(np.zeros(0) if self.h is None else self.h, "h", m_in))
        set_("b", _as_vector(np.zeros(0) if self.b is None else self.b, "b", m_eq))
        set_("lb", _as_vector(self.lb, "lb", n, default=-np.inf, allow="lower"))
        set_("ub", _as_vector(self.ub, "ub", n, default=np.inf, allow="upper"))
        try:
            r = float(self.r)
        except (TypeError, ValueError):
            raise InputError("must be a number", field="r") from None
        if not np.isfinite(r):
            raise InputError("must be finite", field="r")
        set_("r", r)
        set_("var_names", _names(self.var_names, "var_names", n))
        set_("ineq_names", _names(self.ineq_names, "ineq_names", m_in))
        set_("eq_names", _names(self.eq_names, "eq_names", m_eq))
        bad = np.flatnonzero(self.lb > self.ub)
        if bad.size:
            i = int(bad[0])
            raise InputError(f"lb > ub for variable {self.var_label(i)} "
                             f"({self.lb[i]:g} > {self.ub[i]:g}); {bad.size} such variable(s)", field="lb")
        self._check_symmetric()
        if self.check_psd:
            self._check_psd()

    # ------------------------------------------------------------------ checks
    def _check_symmetric(self):
        P = self.P
        scale = max(1.0, float(abs(P).max()) if (P.nnz if sp.issparse(P) else P.size) else 0.0)
        diff = (P - P.T)
        worst = float(abs(diff).max()) if (diff.nnz if sp.issparse(diff) else diff.size) else 0.0
        if worst > SYM_REL_TOL * scale:
            raise InputError(f"P is not symmetric (max |P − Pᵀ| = {worst:.3g})", field="P")

    def _check_psd(self):
        lam_min, lam_max = symmetric_extreme_eigenvalues(self.P)
        if lam_min < -PSD_REL_TOL * max(1.0, abs(lam_max)):
            raise InputError(f"P is not positive semidefinite (smallest eigenvalue {lam_min:.3g}, "
                             f"largest {lam_max:.3g}); the problem is not convex", field="P")

    # ------------------------------------------------------------------ sizes
    @property
    def n(self) -> int:
        return self.q.size

    @property
    def m_ineq(self) -> int:
        return self.h.size

    @property
    def m_eq(self) -> int:
        return self.b.size

    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self.P) or sp.issparse(self.G) or sp.issparse(self.A)

    @property
    def has_bounds(self) -> bool:
        return bool(np.any(np.isfinite(self.lb)) or np.any(np.isfinite(self.ub)))

    def nnz(self) -> dict[str, int]:
        count = lambda M: int(M.nnz) if sp.issparse(M) else int(np.count_nonzero(M))  # noqa: E731
        return {"P": count(self.P), "G": count(self.G), "A": count(self.A)}

    def var_label(self, i: int) -> str:
        return self.var_names[i] if self.var_names else f"x[{i}]"

    # ------------------------------------------------------------------ values
    def objective(self, x: np.ndarray) -> float:
        x = np.asarray(x, dtype=np.float64)
        return float(0.5 * x @ matvec(self.P, x) + self.q @ x + self.r)

    def gradient(self, x: np.ndarray) -> np.ndarray:
        return matvec(self.P, x) + self.q

    def primal_residual(self, x: np.ndarray) -> float:
        """qpbenchmark r_p: the largest violation of any constraint (∞-norm)."""
        x = np.asarray(x, dtype=np.float64)
        parts = [0.0]
        if self.m_eq:
            parts.append(np.max(np.abs(matvec(self.A, x) - self.b)))
        if self.m_ineq:
            parts.append(np.max(matvec(self.G, x) - self.h))
        with np.errstate(invalid="ignore"):
            parts.append(np.max(self.lb - x))
            parts.append(np.max(x - self.ub))
        return float(max(0.0, *parts))

    def dual_residual(self, x, y, z, z_box) -> float:
        """qpbenchmark r_d = ‖Px + q + Aᵀy + Gᵀz + z_box‖∞."""
        g = self.gradient(np.asarray(x, dtype=np.float64)) + np.asarray(z_box, dtype=np.float64)
        if self.m_eq:
            g += rmatvec(self.A, np.asarray(y, dtype=np.float64))
        if self.m_ineq:
            g += rmatvec(self.G, np.asarray(z, dtype=np.float64))
        return float(np.max(np.abs(g))) if g.size else 0.0

    def duality_gap(self, x, y, z, z_box) -> float:
        """qpbenchmark r_g = |xᵀPx + qᵀx + bᵀy + hᵀz + lbᵀz_box⁻ + ubᵀz_box⁺|.

        Infinite bounds contribute nothing (their multiplier must be zero).
        """
        x = np.asarray(x, dtype=np.float64)
        z_box = np.asarray(z_box, dtype=np.float64)
        gap = x @ matvec(self.P, x) + self.q @ x
        if self.m_eq:
            gap += self.b @ np.asarray(y, dtype=np.float64)
        if self.m_ineq:
            gap += self.h @ np.asarray(z, dtype=np.float64)
        lower, upper = np.minimum(z_box, 0.0), np.maximum(z_box, 0.0)
        fin_lb, fin_ub = np.isfinite(self.lb), np.isfinite(self.ub)
        gap += self.lb[fin_lb] @ lower[fin_lb] + self.ub[fin_ub] @ upper[fin_ub]
        return float(abs(gap))

    def residuals(self, x, y=None, z=None, z_box=None) -> dict[str, float]:
        """The three qpbenchmark residuals; missing duals count as zero."""
        y = np.zeros(self.m_eq) if y is None else y
        z = np.zeros(self.m_ineq) if z is None else z
        z_box = np.zeros(self.n) if z_box is None else z_box
        return {"primal_residual": self.primal_residual(x),
                "dual_residual": self.dual_residual(x, y, z, z_box),
                "duality_gap": self.duality_gap(x, y, z, z_box)}

    # ------------------------------------------------------------------ identity
    def content_hash(self) -> str:
        """SHA-256 over the numbers (not the names): the provenance of an IR."""
        digest = hashlib.sha256()
        for M in (self.P, self.G, self.A):
            S = to_sparse(M).tocsr()
            S.sort_indices()
            for arr in (np.asarray(S.shape, dtype=np.int64), S.indptr.astype(np.int64),
                        S.indices.astype(np.int64), S.data):
                digest.update(np.ascontiguousarray(arr).tobytes())
        for v in (self.q, self.h, self.b, self.lb, self.ub, np.array([self.r])):
            digest.update(np.ascontiguousarray(v).tobytes())
        return digest.hexdigest()

    def replace(self, **changes) -> "QP":
        """A new QP with some fields replaced (validated again)."""
        fields = {k: getattr(self, k) for k in ("P", "q", "G", "h", "A", "b", "lb", "ub", "r", "name",
                                                 "var_names", "ineq_names", "eq_names", "check_psd")}
        fields.update(changes)
        return QP(**fields)

    def with_vectors(self, **vectors) -> "QP":
        """A new QP with some of q, h, b, lb, ub replaced and the same matrices.

        Only the new vectors are validated: the matrices were checked when this
        QP was built, and re-checking P (symmetry) on every receding-horizon
        update would cost more than the update itself.
        """
        sizes = {"q": self.n, "h": self.m_ineq, "b": self.m_eq, "lb": self.n, "ub": self.n}
        allow = {"q": "finite", "h": "finite", "b": "finite", "lb": "lower", "ub": "upper"}
        unknown = set(vectors) - set(sizes)
        if unknown:
            raise InputError(f"only {sorted(sizes)} can change without recompiling", field=sorted(unknown)[0])
        new = object.__new__(QP)
        new.__dict__.update(self.__dict__)
        for key, value in vectors.items():
            object.__setattr__(new, key, _as_vector(value, key, sizes[key], allow=allow[key]))
        bad = np.flatnonzero(new.lb > new.ub)
        if bad.size:
            raise InputError(f"lb > ub for variable {new.var_label(int(bad[0]))}", field="lb")
        return new

    def summary(self) -> str:
        nnz = self.nnz()
        return (f"{self.name}: n={self.n}, m_ineq={self.m_ineq}, m_eq={self.m_eq}, "
                f"finite bounds={int(np.isfinite(self.lb).sum() + np.isfinite(self.ub).sum())}, "
                f"nnz(P)={nnz['P']}, nnz(G)={nnz['G']}, nnz(A)={nnz['A']}")
