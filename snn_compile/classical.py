"""A reference answer from a classical interior-point / ADMM solver.

Every network result is judged against this (objective error, active set), so
it is solved tightly. Clarabel (interior point) is the default; OSQP is the
fallback when Clarabel is missing.
"""
from __future__ import annotations

import numpy as np

from .errors import SnnCompileError
from .qp import QP
from .solution import Solution, Status
from .conversions import to_qpsolvers_problem

#: Tight tolerances: the published Maros–Meszaros optima carry 8 digits.
_SOLVER_SETTINGS = {
    "clarabel": dict(tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10, max_iter=500),
    "osqp": dict(eps_abs=1e-9, eps_rel=1e-9, max_iter=200000, polishing=True),
}


def available_classical_solvers() -> list[str]:
    import qpsolvers
    return [s for s in _SOLVER_SETTINGS if s in qpsolvers.available_solvers]


def reference_solution(qp: QP, solver: str | None = None) -> Solution:
    """Solve ``qp`` classically; returns x and the duals with qpsolvers' signs."""
    import qpsolvers

    solvers = available_classical_solvers()
    if solver is None:
        if not solvers:
            raise SnnCompileError("no classical QP solver installed (pip install clarabel)")
        solver = solvers[0]
    problem = to_qpsolvers_problem(qp)
    result = qpsolvers.solve_problem(problem, solver=solver, **_SOLVER_SETTINGS.get(solver, {}))
    if not result.found or result.x is None:
        return Solution.evaluate(qp, np.full(qp.n, np.nan), status=Status.FAILED, solver=solver)
    # qpsolvers returns empty arrays (not None) for blocks the problem lacks.
    sized = lambda v, size: v if v is not None and np.size(v) == size else np.zeros(size)  # noqa: E731
    return Solution.evaluate(qp, result.x, sized(result.y, qp.m_eq), sized(result.z, qp.m_ineq),
                             sized(result.z_box, qp.n),
                             status=Status.SOLVED_CLASSICAL, solver=solver)
