"""The 22 Maros–Meszaros problems: .mat and QPS readers agree, optima are reached.

The whole module takes about 1.5 s (the 44 Clarabel solves about 0.7 s), so it runs in CI.
"""
import csv

import numpy as np
import pytest
import scipy.sparse as sp

from snn_compile.classical import reference_solution
from snn_compile.frontends import read_maros_mat, read_problem, read_qps

PROBLEMS = ("CVXQP1_S CVXQP3_S DUAL1 DUAL3 DUALC1 DUALC5 GENHS28 HS21 HS35 HS51 HS53 LOTSCHD "
            "PRIMALC2 QADLITTL QBEACONF QE226 QPCBLEND QPTEST QSC205 QSHARE1B S268 VALUES").split()
#: Problems whose QPS file lists the constraint rows in another order than the .mat file.
REORDERED = {"QADLITTL", "QBEACONF", "QE226", "QSC205", "QSHARE1B"}


def _read(folder, name, fmt):
    return read_problem(folder / "mat" / f"{name}.mat") if fmt == "mat" else \
        read_problem(folder / "qps" / f"{name}.QPS")


def _rows(M, rhs):
    """Rows [M | rhs] sorted lexicographically: a canonical form of a row set."""
    rows = np.hstack([sp.csr_matrix(M).toarray(), np.asarray(rhs).reshape(-1, 1)])
    return rows[np.lexsort(rows.T[::-1])]


def _close(x, y):
    # The .mat files carry conversion round-off: 1.4e-14 for 0 in QPCBLEND,
    # 41008.29999999999 for 41008.3 in PRIMALC2, 5765.760000000009 in DUALC1's q.
    return x.shape == y.shape and np.allclose(x, y, rtol=1e-13, atol=1e-12)


def test_the_data_folder_holds_the_22_problems(maros_meszaros):
    assert sorted(p.stem for p in (maros_meszaros / "mat").glob("*.mat")) == sorted(PROBLEMS)
    assert sorted(p.stem for p in (maros_meszaros / "qps").glob("*.QPS")) == sorted(PROBLEMS)


@pytest.mark.parametrize("name", PROBLEMS)
def test_mat_and_qps_files_give_the_same_qp(maros_meszaros, name):
    mat, qps = _read(maros_meszaros, name, "mat"), _read(maros_meszaros, name, "qps")
    assert mat.name == qps.name == name
    assert (mat.P != qps.P).nnz == 0
    assert _close(mat.q, qps.q)
    assert mat.r == qps.r
    assert np.array_equal(mat.lb, qps.lb) and np.array_equal(mat.ub, qps.ub)
    assert _close(_rows(mat.A, mat.b), _rows(qps.A, qps.b))
    assert _close(_rows(mat.G, mat.h), _rows(qps.G, qps.h))
    same_order = (_close(mat.A.toarray(), qps.A.toarray()) and _close(mat.b, qps.b)
                  and _close(mat.G.toarray(), qps.G.toarray()) and _close(mat.h, qps.h))
    assert same_order == (name not in REORDERED)
    assert len(qps.var_names) == qps.n and len(qps.ineq_names) == qps.m_ineq


@pytest.mark.parametrize("name", PROBLEMS)
def test_free_and_fixed_format_readings_agree(maros_meszaros, name):
    path = maros_meszaros / "qps" / f"{name}.QPS"
    free, fixed = read_qps(path, fixed=False), read_qps(path, fixed=True)
    assert free.content_hash() == fixed.content_hash()
    assert free.var_names == fixed.var_names and free.ineq_names == fixed.ineq_names


def test_sizes_match_the_published_table(maros_meszaros):
    with open(maros_meszaros / "sizes.csv") as f:
        table = {row["name"]: row for row in csv.DictReader(f)}
    for name in PROBLEMS:
        qp, row = read_maros_mat(maros_meszaros / "mat" / f"{name}.mat"), table[name]
        finite = int(np.isfinite(qp.lb).sum() + np.isfinite(qp.ub).sum())
        # every inequality row is one-sided here, so each gives one row of G
        assert (qp.n, qp.m_eq, qp.m_ineq, finite, qp.P.nnz) == (
            int(row["n"]), int(row["n_eq"]), int(row["n_ineq_rows"]),
            int(row["n_finite_bounds"]), int(row["nnz_P"])), name


@pytest.fixture(scope="module")
def optimal_values(maros_meszaros):
    with open(maros_meszaros / "optimal_values.csv") as f:
        return {row["name"]: float(row["optimal_objective"]) for row in csv.DictReader(f)}


@pytest.mark.parametrize("fmt", ["mat", "qps"])
@pytest.mark.parametrize("name", PROBLEMS)
def test_reference_solution_reaches_the_published_optimum(maros_meszaros, optimal_values, name, fmt):
    qp = _read(maros_meszaros, name, fmt)
    solution = reference_solution(qp)
    target = optimal_values[name]
    # S268's optimum is what is left after cancelling the constant 14463: absolute
    scale = 1.0 if name == "S268" else max(1.0, abs(target))
    assert abs(solution.obj - target) / scale < 1e-5, (solution.obj, target)
    assert solution.primal_residual < 1e-6
