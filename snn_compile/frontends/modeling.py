"""Problems built in Python: ``qpsolvers.Problem`` and ``cvxpy.Problem`` objects."""
from __future__ import annotations

import numpy as np

from ..conversions import from_qpsolvers_problem
from ..errors import InputError
from ..qp import QP

QPSOLVERS_SOURCE = "qpsolvers.Problem"
CVXPY_SOURCE = "cvxpy.Problem"


def from_qpsolvers(problem, *, name: str | None = None) -> QP:
    try:
        return from_qpsolvers_problem(problem, name=name or "qpsolvers")
    except InputError as err:
        raise err.located(source=QPSOLVERS_SOURCE) from None


def from_cvxpy(problem, *, name: str | None = None) -> QP:
    """The QP cvxpy hands to OSQP: ``min ½xᵀPx + qᵀx + r  s.t.  A x = b, F x ≤ g``.

    x is cvxpy's stacked variable vector: the problem's variables (named
    ``x[0]``, ``X[1, 2]``, …) plus any auxiliaries cvxpy introduced (``_aux[k]``).
    A Maximize problem becomes the minimisation of the negated objective.
    """
    import cvxpy as cp

    fail = lambda reason: InputError(reason, source=CVXPY_SOURCE, field="problem")  # noqa: E731
    if not problem.is_dcp():
        raise fail("does not follow the DCP rules, so cvxpy cannot prove it convex")
    if problem.is_mixed_integer():
        raise fail("has integer or boolean variables; a QP has continuous variables only")
    if not problem.is_qp():
        raise fail("is not a QP: the objective must be quadratic and every constraint affine "
                   "(no second-order-cone, semidefinite or exponential constraints)")
    unset = [param.name() for param in problem.parameters() if param.value is None]
    if unset:
        raise fail(f"parameter '{unset[0]}' has no value")
    try:
        data, _, inverse = problem.get_problem_data(cp.OSQP)
    except (cp.error.SolverError, cp.error.DCPError, cp.error.ParameterError, ValueError) as exc:
        raise fail(f"cvxpy could not reduce it to a QP ({exc})") from None
    offset = next(inv[cp.settings.OFFSET] for inv in reversed(inverse)
                  if isinstance(inv, dict) and cp.settings.OFFSET in inv)
    n = data["q"].size
    has = lambda key: data[key] is not None and data[key].shape[0] > 0  # noqa: E731
    qp_fields = dict(P=data["P"], q=data["q"], r=float(np.asarray(offset).reshape(-1)[0]),
                     A=data["A"] if has("A") else None, b=data["b"] if has("A") else None,
                     G=data["F"] if has("F") else None, h=data["G"] if has("F") else None,
                     lb=data.get("lower_bounds"), ub=data.get("upper_bounds"),
                     var_names=_variable_names(problem, data["param_prob"], n), name=name or "cvxpy")
    try:
        return QP(**qp_fields)
    except InputError as err:
        raise err.located(source=CVXPY_SOURCE) from None


def _variable_names(problem, param_prob, n: int) -> list[str]:
    names = [f"_aux[{k}]" for k in range(n)]
    originals = {var.id: var for var in problem.variables()}
    for var_id, col in param_prob.var_id_to_col.items():
        var = originals.get(var_id)
        if var is None:
            continue
        for k in range(var.size):
            if var.shape:  # cvxpy stacks variables column-major
                index = np.unravel_index(k, var.shape, order="F")
                names[col + k] = f"{var.name()}[{', '.join(str(int(i)) for i in index)}]"
            else:
                names[col] = var.name()
    return names
