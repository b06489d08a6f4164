"""Maros–Meszaros ``.mat`` files (the osqp_benchmarks / qpbenchmark layout).

The file holds ``min ½xᵀPx + qᵀx + r  s.t.  l ≤ A x ≤ u`` with
``A = [C; I]``: the last n rows carry the variable bounds. ±1e20 means ±∞.
Rows of C are split into ``A x = b`` and ``G x ≤ h`` exactly as qpbenchmark
does (see ``split_rows``); constraint rows are named ``c0, c1, …`` after their
0-based row in C.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..qp import QP
from ._common import MAX_DIM, build_qp, check_shape, existing_file, split_rows

#: Bounds beyond this magnitude are infinite. The files use ±1e20, but some
#: rows hold 1e20 shifted by a constant (PRIMALC2 has −9.999999999999998e19),
#: so the cut-off sits below 1e20, at qpbenchmark's 9e19.
MAT_INFINITY = 9e19

_REQUIRED = ("P", "q", "r", "A", "l", "u", "n", "m")


def read_maros_mat(path, *, name: str | None = None) -> QP:
    path = existing_file(path)
    source = str(path)
    data = _load(path, source)
    fail = lambda field, reason: InputError(reason, source=source, field=field)  # noqa: E731
    for key in _REQUIRED:
        if key not in data:
            raise fail(key, "missing from the .mat file")
    n, m = _count(data["n"], "n", fail), _count(data["m"], "m", fail)
    if m < n:
        raise fail("m", f"m = {m} is smaller than n = {n}: A must end with the n×n identity")
    A = sp.csr_matrix(data["A"], dtype=np.float64)
    if A.shape != (m, n):
        raise fail("A", f"expected shape {m}×{n}, got {A.shape[0]}×{A.shape[1]}")
    if (A[m - n:] != sp.eye(n, format="csr")).nnz:
        raise fail("A", "the last n rows must be the identity (they carry the variable bounds)")
    lower, upper = _bounds(data["l"], "l", m, fail), _bounds(data["u"], "u", m, fail)
    rows = split_rows(A[: m - n], lower[: m - n], upper[: m - n], [f"c{i}" for i in range(m - n)])
    r = np.asarray(data["r"], dtype=np.float64).reshape(-1)
    if r.size != 1:
        raise fail("r", f"expected a scalar, got {r.size} values")
    P = data["P"]
    return build_qp(source, P=sp.csr_matrix(P) if sp.issparse(P) else P,
                    q=np.asarray(data["q"], dtype=np.float64).reshape(-1), r=float(r[0]),
                    lb=lower[m - n:], ub=upper[m - n:], name=name or path.stem, **rows)


def _load(path: Path, source: str) -> dict:
    import scipy.io as sio

    # scipy's MAT parser raises assorted exception types on corrupt input, so
    # anything it raises is reported as an unreadable file.
    try:
        for var, shape, kind in sio.whosmat(str(path)):  # headers only: refuse before allocating
            check_shape(list(shape) or [1], source=source, field=var, dense=kind != "sparse")
        return sio.loadmat(str(path), mat_dtype=True)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"not a readable MATLAB .mat file ({type(exc).__name__}: {exc})",
                         source=source) from None


def _count(value, field, fail) -> int:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size != 1 or not np.isfinite(arr[0]) or arr[0] != int(arr[0]) or not 0 < arr[0] <= MAX_DIM:
        raise fail(field, f"must be a positive integer up to {MAX_DIM}")
    return int(arr[0])


def _bounds(value, field, m, fail) -> np.ndarray:
    vec = np.array(value, dtype=np.float64).reshape(-1)  # a copy: mat_dtype arrays may be shared
    if vec.size != m:
        raise fail(field, f"expected length {m}, got {vec.size}")
    vec[vec > MAT_INFINITY] = np.inf
    vec[vec < -MAT_INFINITY] = -np.inf
    return vec
