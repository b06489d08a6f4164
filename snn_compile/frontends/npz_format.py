"""``.npz`` archives with the QP fields as arrays (``np.savez(path, P=..., q=...)``).

Keys: ``q`` (required), ``P``, ``G``/``h``, ``A``/``b``, ``lb``, ``ub``, ``r`` and the
name lists ``var_names``, ``ineq_names``, ``eq_names`` (string arrays). A sparse
matrix ``M`` may be stored as ``M_data``, ``M_indices``, ``M_indptr``, ``M_shape``
(CSR unless ``M_format`` says ``csc`` or ``coo``, which uses ``M_row``/``M_col``).
Arrays are loaded with ``allow_pickle=False``, after their headers are checked.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..qp import QP
from ._common import NpzArchive, build_qp, existing_file

_MATRICES = ("P", "G", "A")
_SPARSE_PARTS = ("data", "indices", "indptr", "shape", "format", "row", "col")
_NAMES = ("var_names", "ineq_names", "eq_names")
_KEYS = {"q", "h", "b", "lb", "ub", "r", *_MATRICES, *_NAMES,
         *(f"{m}_{part}" for m in _MATRICES for part in _SPARSE_PARTS)}


def read_npz(path, *, name: str | None = None) -> QP:
    path = existing_file(path)
    source = str(path)
    with NpzArchive(path, source=source) as npz:
        unknown = sorted(npz.keys - _KEYS)
        if unknown:
            raise InputError(f"unknown array '{unknown[0]}'", source=source, field=unknown[0])
        if "q" not in npz.keys:
            raise InputError("is required: the linear cost, one entry per variable", source=source, field="q")
        vector = lambda key, length=None: (  # noqa: E731
            npz.array(key, key, expected=None if length is None else (length,)).reshape(-1)
            if key in npz.keys else None)
        q = vector("q")
        n = q.size
        h, b = vector("h"), vector("b")
        for mat, vec in (("G", "h"), ("A", "b")):
            if (mat in npz.keys or npz.is_scipy_sparse(f"{mat}_")) != (vec in npz.keys):
                missing = vec if vec not in npz.keys else mat
                raise InputError(f"{mat} and {vec} must be given together; '{missing}' is missing",
                                 source=source, field=missing)
        rows = {"P": n, "G": 0 if h is None else h.size, "A": 0 if b is None else b.size}
        matrices = {key: _matrix(npz, key, (rows[key], n)) for key in _MATRICES}
        r = vector("r")
        if r is not None and r.size != 1:
            raise InputError(f"must be a scalar, got {r.size} values", source=source, field="r")
        names = {key: npz.array(key, key, kinds="U").tolist() if key in npz.keys else None for key in _NAMES}
        return build_qp(source, q=q, h=h, b=b, lb=vector("lb", n), ub=vector("ub", n),
                        r=0.0 if r is None else float(r[0]), name=name or path.stem, **matrices, **names)


def _matrix(npz: NpzArchive, key: str, shape):
    if npz.is_scipy_sparse(f"{key}_"):
        if key in npz.keys:
            raise InputError("is stored both dense and sparse", source=npz.source, field=key)
        return npz.sparse(f"{key}_", key, expected=shape)
    if key not in npz.keys:
        return None
    array = npz.array(key, key, expected=None if shape[0] == 1 else shape)  # 1 row may be stored 1-D
    if array.ndim == 1 and shape[0] == 1:
        array = array.reshape(1, -1)
    if array.shape != shape:
        raise InputError(f"expected shape {shape[0]}×{shape[1]}, got {'×'.join(map(str, array.shape))}",
                         source=npz.source, field=key)
    return array
