"""Family B: the primal–dual network (restarted accelerated PDHG), the default.

Neurons and what they hold (all in the preconditioned problem, K = [G̃; Ã],
c = [h̃; b̃]):

    x     n  primal integrators, clamped to the box [l̃b, ũb]
    v     m  dual integrators [z; y]; inequality rows clamped at ≥ 0 and firing
             only while positive, so the raster of v is the active set
    x_ag  n  weighted average of x  (x_ag ← (1−b)·x_ag + b·x)
    v_ag  m  weighted average of v

One network step is one iteration (schedule [x, v, x_ag, v_ag]):

    x⁺   = Π_box(x − τ(P̃((1−b)x_ag + b·x) + q̃ + Kᵀv))
    v⁺   = v + σ(K(2x⁺ − x) − c),  v⁺_G ≥ 0
    x_ag ← (1−b)x_ag + b·x⁺,   v_ag ← (1−b)v_ag + b·v⁺

with b = 2/(t+1), τ = 1/(b·L/s + ω·k/√s), σ = √s·ω/k (``apdhg`` gains,
docs/ir.md §2.1), L = ‖P̃‖₂ and k = ‖K‖₂ by power iteration, s = 0.95. The
fixed points are exactly the KKT points, so there is no O(step) offset and no
period-2 cycle. An ``AdaptiveRestart`` rule (docs/ir.md §4) restarts from the
better of the current and averaged iterates and balances the primal weight ω
(Lu & Yang's restarted accelerated PDHG for QP; PDLP's restart criteria).

Preconditioning (Ruiz + one Pock–Chambolle pass + cost scaling) happens on the
host before lowering and is undone by the readout's ``scaling`` map. On the 22
shared Maros–Meszaros problems this reaches all three residuals < 1e-3 on every
problem (benchmarks/bench_maros_meszaros.py prints the table).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from ..ir import (AdaptiveRestart, Gain, Network, Population, Projection, Readout, ReadoutTerm,
                  ScaledProblem)
from ..passes.precondition import Scaling, precondition as precondition_pass
from ..qp import QP, matvec, rmatvec
from .common import power_iteration_lambda_max, provenance, readout_sizes

#: Step-size safety factor: τ·σ·k² → s < 1 (the accelerated PDHG condition).
DEFAULT_STEP_FACTOR = 0.95
#: Steps between restart checks; 64 and 128 give the same success count.
DEFAULT_CHECK_EVERY = 64


def _selector(rows: np.ndarray, size: int) -> sp.csr_matrix:
    """Sparse 0/1 matrix picking ``rows`` out of a vector of length ``size``."""
    return sp.csr_matrix((np.ones(rows.size), (np.arange(rows.size), rows)), shape=(rows.size, size))


def lower_primal_dual(qp: QP, *, scaling: Scaling | None = None, precondition: bool = True,
                      step_factor: float = DEFAULT_STEP_FACTOR, check_every: int = DEFAULT_CHECK_EVERY,
                      restarts: bool = True, ruiz_iterations: int = 10) -> Network:
    report = None
    if scaling is None:
        if precondition:
            scaled, scaling, report = precondition_pass(qp, iterations=ruiz_iterations, pock_chambolle=True)
        else:
            scaling, scaled = Scaling.identity(qp), qp
    else:
        scaled = scaling.apply(qp)
    n, m_g, m_a = scaled.n, scaled.m_ineq, scaled.m_eq
    P = sp.csr_matrix(scaled.P)
    K = sp.vstack([sp.csr_matrix(scaled.G), sp.csr_matrix(scaled.A)], format="csr")
    c = np.concatenate([scaled.h, scaled.b])
    m = m_g + m_a

    L = power_iteration_lambda_max(P, iters=200, tol=1e-6)
    k = math.sqrt(power_iteration_lambda_max(lambda u: rmatvec(K, matvec(K, u)), n, iters=200, tol=1e-6)) \
        if K.nnz else 0.0
    k = max(k, 1e-12)   # no constraints: σ is irrelevant but must stay finite
    q_norm, c_norm = float(np.linalg.norm(scaled.q)), float(np.linalg.norm(c))
    omega0 = q_norm / c_norm if (q_norm > 1e-10 and c_norm > 1e-10) else 1.0

    x_init = np.clip(np.zeros(n), scaled.lb, scaled.ub)
    is_ineq = np.arange(m) < m_g
    # Every population emits its initial state before step 0: the first update's delayed
    # reads (gradient at x, x_ag's own decay) must see x_init, which is not 0 when 0 lies
    # outside the box, nor after a warm start.
    populations = [
        Population("x", n, role="primal", bias=-scaled.q, bias_gain="tau", v_min=scaled.lb,
                   v_max=scaled.ub, v_init=x_init, emit_initial_state=True),
        Population("v", m, role="constraint", bias=-c, bias_gain="sigma",
                   v_min=np.where(is_ineq, 0.0, -np.inf), threshold=np.where(is_ineq, 0.0, -np.inf),
                   record=True, emit_initial_state=True),
        Population("x_ag", n, role="aux", v_init=x_init, emit_initial_state=True),
        Population("v_ag", m, role="aux", emit_initial_state=True),
    ]
    terms = {"tau": "tau", "tau_b": "tau*b", "tau_1mb": "tau*(1-b)", "sigma": "sigma", "b": "b"}
    consts = {"L": L, "k": k, "s": float(step_factor)}
    gains = [Gain(name, 1.0, formula="apdhg", params={"term": term, **consts}) for name, term in terms.items()]
    gains.append(Gain("2sigma", 2.0, formula="apdhg", params={"term": "sigma", **consts}))
    identity_n, identity_m = sp.identity(n, format="csr"), sp.identity(m, format="csr")
    projections = [
        Projection("x", "x", -P, delay=1, gain="tau_b", name="gradient of x"),
        Projection("x_ag", "x", -P, delay=1, gain="tau_1mb", name="gradient of x_ag"),
        Projection("v", "x", -K.T.tocsr(), delay=1, gain="tau", name="duals into x"),
        Projection("x", "v", K, delay=0, gain="2sigma", name="constraints of x_new"),
        Projection("x", "v", -K, delay=1, gain="sigma", name="constraints of x_old"),
        Projection("x", "x_ag", identity_n, delay=0, gain="b", name="x into x_ag"),
        Projection("x_ag", "x_ag", -identity_n, delay=1, gain="b", name="x_ag decay"),
        Projection("v", "v_ag", identity_m, delay=0, gain="b", name="v into v_ag"),
        Projection("v_ag", "v_ag", -identity_m, delay=1, gain="b", name="v_ag decay"),
    ]
    controls = []
    if restarts:
        problem = ScaledProblem(P=P, q=scaled.q, G=sp.csr_matrix(scaled.G), h=scaled.h,
                                A=sp.csr_matrix(scaled.A), b=scaled.b, lb=scaled.lb, ub=scaled.ub)
        controls.append(AdaptiveRestart(check_every=check_every, problem=problem, primal="x",
                                        primal_average="x_ag", dual="v", dual_average="v_ag",
                                        primal_weight_init=omega0))
    rows = np.arange(m)
    readout = Readout(
        terms=[ReadoutTerm("x", "x"),
               ReadoutTerm("z", "v", matrix=_selector(rows[:m_g], m)),
               ReadoutTerm("y", "v", matrix=_selector(rows[m_g:], m)),
               # The clamp excess of the last x update is −τ·(box multiplier): read it as z̃_box.
               ReadoutTerm("z_box", "x", quantity="clamp_excess", divide_by_gain="tau")],
        sizes=readout_sizes(qp))
    params = {"step_factor": float(step_factor), "check_every": int(check_every), "restarts": restarts,
              "precondition": precondition, "ruiz_iterations": ruiz_iterations,
              "L": L, "k": k, "primal_weight_init": omega0}
    prov = provenance(qp, "primal-dual", params, scaling=scaling)
    if report is not None:
        prov["precondition_report"] = report
    return Network(populations, projections, gains=gains, schedule=[["x", "v", "x_ag", "v_ag"]],
                   controls=controls, readout=readout, provenance=prov)
