"""Write a QP as a problem file (docs/problem-format.md, format version 1).

The examples ship the QP of one representative instance next to their
script, so ``snn-compile examples/<app>/problem.yaml`` runs it without Python.
Matrices are written dense (a list of rows) when at least ``dense_above`` of
their entries are nonzero and as sparse triplets otherwise; infinite bounds
are YAML's ``.inf``; a bound vector that is constant is written as one number.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import scipy.sparse as sp
import yaml

from ..qp import QP

#: Density from which a matrix is written as a list of rows.
DENSE_ABOVE = 0.3


class _Dumper(yaml.SafeDumper):
    """Lists of numbers or strings on one line (rows of a matrix stay readable)."""


def _represent_list(dumper, data):
    flow = all(not isinstance(v, (list, dict)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def _numbers(v) -> list:
    return [float(x) for x in np.asarray(v, dtype=np.float64).reshape(-1)]


def _matrix(M, dense_above: float):
    S = sp.coo_matrix(M)
    S.sum_duplicates()
    if S.shape[0] * S.shape[1] and S.nnz / (S.shape[0] * S.shape[1]) >= dense_above:
        return [_numbers(row) for row in S.toarray()]
    return {"shape": [int(S.shape[0]), int(S.shape[1])], "rows": S.row.tolist(), "cols": S.col.tolist(),
            "vals": _numbers(S.data)}


def _bound(v):
    v = np.asarray(v, dtype=np.float64)
    return float(v[0]) if v.size and np.all(v == v[0]) else _numbers(v)


def problem_dict(qp: QP, *, description: Optional[str] = None, metadata: Optional[dict] = None,
                 dense_above: float = DENSE_ABOVE) -> dict:
    """The problem-file mapping of ``qp`` (only the blocks it has)."""
    data = {"format": "snn-compile/qp", "version": 1, "name": qp.name}
    if description:
        data["description"] = description
    if metadata:
        data["metadata"] = metadata
    data["n"] = qp.n
    if (qp.P.nnz if sp.issparse(qp.P) else np.count_nonzero(qp.P)):
        data["P"] = _matrix(qp.P, dense_above)
    data["q"] = _numbers(qp.q)
    if qp.r:
        data["r"] = float(qp.r)
    if qp.m_ineq:
        data["G"], data["h"] = _matrix(qp.G, dense_above), _numbers(qp.h)
    if qp.m_eq:
        data["A"], data["b"] = _matrix(qp.A, dense_above), _numbers(qp.b)
    if np.any(np.isfinite(qp.lb)):
        data["lb"] = _bound(qp.lb)
    if np.any(np.isfinite(qp.ub)):
        data["ub"] = _bound(qp.ub)
    for key in ("var_names", "ineq_names", "eq_names"):
        if getattr(qp, key):
            data[key] = list(getattr(qp, key))
    return data


def write_problem(qp: QP, path, *, description: Optional[str] = None, metadata: Optional[dict] = None,
                  header: Optional[str] = None, dense_above: float = DENSE_ABOVE) -> Path:
    """Write ``qp`` to ``path`` (YAML); ``header`` becomes leading comment lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(problem_dict(qp, description=description, metadata=metadata, dense_above=dense_above),
                     Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    comment = "".join(f"# {line}\n" if line else "#\n" for line in (header or "").splitlines())
    path.write_text(comment + text, encoding="utf-8")
    return path
