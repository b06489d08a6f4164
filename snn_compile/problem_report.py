"""What ``snn-compile inspect`` reports about a QP, as a plain dict."""
from __future__ import annotations

import math

import numpy as np

from .classical import reference_solution
from .qp import QP, symmetric_extreme_eigenvalues


def inspect_problem(qp: QP, *, solve: bool = True) -> dict:
    nnz = qp.nnz()
    n, m = qp.n, qp.m_ineq + qp.m_eq
    lam_min, lam_max = symmetric_extreme_eigenvalues(qp.P)
    singular = lam_min <= 1e-9 * max(1.0, abs(lam_max))
    report = {
        "name": qp.name,
        "variables": n,
        "inequalities": qp.m_ineq,
        "equalities": qp.m_eq,
        "finite bounds": int(np.isfinite(qp.lb).sum() + np.isfinite(qp.ub).sum()),
        "nnz P/G/A": f"{nnz['P']}/{nnz['G']}/{nnz['A']}",
        "density P": round(nnz["P"] / max(1, n * n), 6),
        "density [G;A]": round((nnz["G"] + nnz["A"]) / max(1, m * n), 6),
        "lambda_max(P)": float(f"{lam_max:.6g}"),
        "lambda_min(P)": float(f"{lam_min:.6g}"),
        "PSD": "yes (positive definite)" if not singular else "yes (singular: positive semidefinite)",
        "condition(P)": "inf (singular)" if singular else float(f"{lam_max / lam_min:.6g}"),
    }
    if solve:
        sol = reference_solution(qp)
        report["classical solver"] = sol.solver
        report["classical status"] = sol.status.value
        report["optimal objective"] = sol.obj if math.isfinite(sol.obj) else None
        report["active inequalities"] = int(np.sum(sol.z > 1e-7)) if qp.m_ineq else 0
        report["residuals (p/d/gap)"] = (f"{sol.primal_residual:.1e}/{sol.dual_residual:.1e}/"
                                         f"{sol.duality_gap:.1e}")
    return report
