"""Reference backend against the seed library ``snn-opt`` (PyPI ``snn-opt==0.8.1``):
steps and wall time to a relative objective gap, on the same QP.

A QP counts as *reached* at tolerance ``tol`` at the first step whose iterate x (in the
user's variables) has relative objective gap |f(x) − f*| / max(1, |f*|) ≤ tol **and**
qpbenchmark primal residual (largest constraint violation) ≤ tol — an infeasible
point with a good objective does not count, for either solver.

* snn-opt solves min ½xᵀAx + bᵀx s.t. Cx + d ≤ 0 (plus *scalar* bounds), so
  equalities become two inequality rows and per-variable bounds become rows. One
  snn-opt *step* is one iteration (a gradient step and its projection sweep; the
  sweep's projection events are reported as well). Its trajectory comes from the
  recorded Python path; its wall time from the compiled kernel (``backend="c"``)
  run for exactly the steps it needed. Its projection events are serial (one
  winner-take-all constraint spike at a time), so a spiking implementation spends
  one network step per event as well: "iterations + events" is that step count.
* The reference runs the default ``primal-dual`` network. Its iterate is decoded by
  a stop callback at every step up to 2,000, every 10th step up to 20,000, every
  100th after (so step counts past 2,000 are rounded up); its wall time is a second
  run of exactly that many steps (stepping only; compile time is reported apart).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import scipy.sparse as sp

TOLERANCES = (1e-3, 1e-6)


@dataclass
class Reach:
    """When one solver got to each tolerance on one problem."""

    steps: dict = field(default_factory=dict)        # tol -> first step (None: never)
    events: dict = field(default_factory=dict)       # tol -> snn-opt projection events until then
    seconds: dict = field(default_factory=dict)      # tol -> wall time of that many steps
    best_gap: float = np.inf                          # smallest gap among feasible-enough iterates
    final_gap: float = np.inf
    final_residual: float = np.inf
    note: str = ""
    setup_s: float = 0.0


def _dense(M) -> np.ndarray:
    return M.toarray() if sp.issparse(M) else np.asarray(M, dtype=float)


def gap(obj, optimum: float):
    return np.abs(np.asarray(obj) - optimum) / max(1.0, abs(optimum))


def _check_step(step: int) -> bool:
    """Steps (1-based counts) at which the reference iterate is decoded."""
    return step <= 2000 or (step <= 20000 and step % 10 == 0) or step % 100 == 0


# ---------------------------------------------------------------- snn-opt
def to_snnopt(qp):
    """The QP as snn-opt's (A, b, C, d): equalities as two rows, bounds as rows."""
    import snn_opt
    rows, rhs = [], []
    if qp.m_ineq:
        rows.append(_dense(qp.G)); rhs.append(qp.h)
    if qp.m_eq:
        A = _dense(qp.A)
        rows += [A, -A]; rhs += [qp.b, -qp.b]
    eye = np.eye(qp.n)
    upper, lower = np.isfinite(qp.ub), np.isfinite(qp.lb)
    if upper.any():
        rows.append(eye[upper]); rhs.append(qp.ub[upper])
    if lower.any():
        rows.append(-eye[lower]); rhs.append(-qp.lb[lower])
    C = np.vstack(rows) if rows else np.zeros((0, qp.n))
    d = -np.concatenate(rhs) if rhs else np.zeros(0)
    return snn_opt.OptimizationProblem(A=_dense(qp.P), b=np.array(qp.q, dtype=float), C=C, d=d)


def snnopt_reach(qp, optimum: float, iterations: int) -> Reach:
    import snn_opt
    problem = to_snnopt(qp)
    no_stop = snn_opt.ConvergenceConfig(enable_early_stopping=False)
    out = Reach()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        result = snn_opt.SNNSolver(problem, snn_opt.SolverConfig(
            max_iterations=iterations, convergence=no_stop, record_spike_history=False)).solve(np.zeros(qp.n))
        out.setup_s = time.perf_counter() - started
    X = result.X[1:]                                   # row k = iterate after step k + 1
    gaps = gap([qp.objective(x) for x in X], optimum)
    residuals = np.array([qp.primal_residual(x) for x in X])
    for tol in TOLERANCES:
        hits = np.flatnonzero((gaps <= tol) & (residuals <= tol))
        out.steps[tol] = int(hits[0]) + 1 if hits.size else None
    feasible = residuals <= 1e-6
    out.best_gap = float(gaps[feasible].min()) if feasible.any() else np.inf   # of iterates with r_p ≤ 1e-6
    out.final_gap, out.final_residual = float(gaps[-1]), float(residuals[-1])
    out.note = f"{result.convergence_reason} after {result.iterations_used} it., " \
               f"{result.n_projections} projection events"
    for tol in TOLERANCES:
        k = out.steps.get(tol)
        if k is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            partial = snn_opt.SNNSolver(problem, snn_opt.SolverConfig(
                max_iterations=k, convergence=no_stop, record_spike_history=False)).solve(np.zeros(qp.n))
            out.events[tol] = int(partial.n_projections)
            config = snn_opt.SolverConfig(max_iterations=k, backend="c", convergence=no_stop)
            started = time.perf_counter()
            snn_opt.SNNSolver(problem, config).solve(np.zeros(qp.n))
            out.seconds[tol] = time.perf_counter() - started
    return out


# ---------------------------------------------------------------- reference
def reference_reach(qp, optimum: float, steps: int) -> Reach:
    import snn_compile as sc
    from snn_compile.backends.reference import ReferenceBackend
    from snn_compile.decode import decode_solution
    from snn_compile.solution import Status

    started = time.perf_counter()
    compiled = sc.compile(qp, target="reference", family="primal-dual")
    out = Reach(setup_s=time.perf_counter() - started)
    net = compiled.net
    first: dict[float, Optional[int]] = dict.fromkeys(TOLERANCES)
    best = [np.inf]

    def stop(step, ctx) -> bool:
        taken = step + 1
        if not _check_step(taken):
            return False
        sol = decode_solution(net, ctx.snapshot(), qp, status=Status.MAX_STEPS)
        g, r = float(gap(sol.obj, optimum)), sol.primal_residual
        if r <= 1e-6:
            best[0] = min(best[0], g)
        for tol in TOLERANCES:
            if first[tol] is None and g <= tol and r <= tol:
                first[tol] = taken
        out.final_gap, out.final_residual = g, r
        return first[TOLERANCES[-1]] is not None

    trace = ReferenceBackend().run(net, steps, stop=stop, check_every=1, record_every=0)
    out.steps, out.best_gap = first, best[0]
    out.note = f"{'stopped' if trace.stopped_early else 'budget'} at {trace.steps} steps"
    for tol, k in first.items():
        if k is not None:
            out.seconds[tol] = ReferenceBackend().run(net, k, record_every=0).wall_time
    return out
