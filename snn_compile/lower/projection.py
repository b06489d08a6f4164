"""Family A: the drift–spike projection network (the seed algorithm, ``snn_opt``).

All constraints are rows C x ≤ h (G; A and −A; finite bounds, see ``common``),
normalised to unit length: ĉᵢ = cᵢ/‖cᵢ‖, and ĝᵢ(x) = (cᵢᵀx − hᵢ)/‖cᵢ‖ is the
signed distance to row i's hyperplane. The exact projection onto it is
x ← x − ĝᵢ(x)·ĉᵢ (= x − gᵢ(x)·cᵢ/‖cᵢ‖², the seed's adaptive step). Normalising
makes the graded payload a geometric distance and makes "largest voltage first"
the seed's "most violated by normalised distance".

One iteration is "drift, then project the drifted point":

    y = x − η(P x + q);      x ← y − Σ projections of the violated rows of y

Populations and schedule (``sweeps`` = k network steps per iteration, default 1):

    schedule = [[cons, x]] × (k − 1) + [[cons, x, grad, payload]]

* ``grad`` (aux, n): decay 0, bias −ηq, weights −ηP from x with delay 0; it
  updates only at the iteration's last step, after x, so it holds −η∇f(x) of
  the finished iterate and emits it exactly once per iteration.
* ``x`` (primal, n integrators): decay 1; grad → x with delay 1 (the drift,
  arriving at the first step of the next iteration) and −ĉᵢ from each
  constraint neuron with delay 0 (``cons`` updates first in every step).
* ``cons`` (constraint, one per row): decay 0, bias −ĥ, weights Ĉ from x *and*
  from grad, both with delay 1, so at an iteration's first step its voltage is
  ĝ(x + grad) = ĝ(y), the distance at the drifted point, and at later steps the
  distance at the latest x. Threshold 0; a firing row emits the graded payload
  ``excess`` = its violation distance, which x subtracts along ĉᵢ.
* ``payload`` (aux, one per row): decay 0, updates at the iteration's last step
  and sums the row's payloads of the iteration (delays 0..k−1 from ``cons``):
  the total distance aᵢ projected along row i. It only feeds the readout.

Why not the obvious ``[x, cons]`` with x carrying its own drift (recurrent
I − ηP, bias −ηq): constraint neurons reading x of the same step can only act on
x one step later, so the next gradient would be taken at the *unprojected* point
and the readout would be the drifted, infeasible iterate. A population that
updates only in some steps cannot feed a delay-0 projection into one that
updates in others (IR rule), hence ``grad`` reaching x and cons with delay 1.
With k = 1 every step is one full iteration.

``sequential`` (default False) chooses how the violated rows project:
False — all at once (Jacobi style, ``max_spikes_per_step`` unset); with k > 1 the
simultaneous projection is repeated k times. True — only the most violated row
per step (``max_spikes_per_step = 1``), i.e. the seed's inner "project the most
violated row until none is" loop, capped at k projections per iteration.

Readout: x = state of ``x``; row multiplier wᵢ = aᵢ/(η‖cᵢ‖), because at a fixed
point x = x − η∇f(x) − Σᵢ aᵢĉᵢ ⇔ ∇f(x) + Σᵢ wᵢcᵢ = 0. Rows map to z,
y = w_up − w_lo and z_box = ±w of the bound rows (``common``). Read after a whole
number of iterations (steps a multiple of k).

Accuracy — not exact; tests/test_lower_projection.py measures it:

* A row active alone ends exactly on its hyperplane: with orthogonal active rows
  the fixed point is the KKT point (hand example: exact in two iterations).
* Simultaneous, non-orthogonal active rows over-project each other: the fixed
  point solves P x + q + C_Sᵀw = 0, C_S x + η·offdiag(C_S C_Sᵀ)·w = h_S, an O(η)
  offset (measured ‖x − x*‖ = 0.35·η on a 5-variable QP, exactly linear in η);
  with large η a row inactive at x* can fire at the far drifted point and push
  x off (P = I, rows (1, 1) and (1, 0), s = 1: error 2.1; s = 0.1: exact).
* Sequential with too few projections per iteration cannot hold several active
  rows: k = 1 on the same QP ends in a period-11 limit cycle, 7× worse than
  simultaneous; k = 3 is 10× better than simultaneous there, but with an
  equality pair among the active rows it can cycle too (the pair ping-pongs:
  at most one of its two rows fires per projection). Bounds are rows, never
  clamps, so a bound can be violated by the same O(η).

Step size η = s/λmax(P) with s ∈ (0, 2) (``step_scale``, default 1), λmax by
power iteration; accuracy improves linearly with smaller s at the price of more
iterations (contraction 1 − s·λmin/λmax per iteration). For P = 0 (an LP) there
is no curvature scale, so η = s/λmax(ĈᵀĈ); override either with ``eta``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..ir import Network, Population, Projection, Readout, ReadoutTerm
from ..qp import QP
from .common import (dual_readout_terms, power_iteration_lambda_max, provenance,
                     readout_sizes, stack_constraint_rows)

FAMILY = "projection"


def projection_step_size(qp: QP, step_scale: float = 1.0, C_unit: Optional[sp.csr_matrix] = None) -> float:
    """η = s/λmax(P), or s/λmax(ĈᵀĈ) when P = 0 (see module docstring)."""
    lam = power_iteration_lambda_max(qp.P)
    if lam <= 0.0 and C_unit is not None and C_unit.shape[0]:
        lam = power_iteration_lambda_max(lambda v: C_unit.T @ (C_unit @ v), qp.n)
    return step_scale / lam if lam > 0.0 else step_scale


def lower_projection(qp: QP, *, step_scale: float = 1.0, eta: Optional[float] = None,
                     sweeps: int = 1, sequential: bool = False, scaling=None) -> Network:
    """The projection network of ``qp`` (or of ``scaling.apply(qp)`` when given)."""
    if not 0.0 < step_scale < 2.0:
        raise InputError("must lie in (0, 2) (η = s/λmax(P))", field="step_scale")
    if int(sweeps) != sweeps or sweeps < 1:
        raise InputError("must be an integer ≥ 1 (projection steps per iteration)", field="sweeps")
    sweeps = int(sweeps)
    source, qp = qp, (qp if scaling is None else scaling.apply(qp))
    rows = stack_constraint_rows(qp)
    n, m = qp.n, rows.m
    # An all-zero row (0 ≤ hᵢ) has no direction to project along; norm 1 keeps
    # its (zero) weights finite and its voltage −hᵢ.
    norms = np.sqrt(rows.row_norms_sq())
    norms[norms == 0] = 1.0
    C_unit = sp.csr_matrix(sp.diags(1.0 / norms) @ rows.C)
    if eta is None:
        eta = projection_step_size(qp, step_scale, C_unit)
    elif not (np.isfinite(eta) and eta > 0):
        raise InputError("must be a positive number", field="eta")
    eta = float(eta)

    identity = lambda k: sp.identity(k, format="csr")  # noqa: E731
    populations = [
        Population("cons", m, role="constraint", decay=0.0, bias=-rows.h / norms, threshold=0.0,
                   spike="graded", payload="excess", reset="none",
                   max_spikes_per_step=1 if sequential else None, record=True),
        Population("x", n, role="primal", decay=1.0, threshold=-np.inf, spike="graded", payload="state"),
        Population("grad", n, role="aux", decay=0.0, bias=-eta * qp.q, threshold=-np.inf,
                   spike="graded", payload="state"),
        Population("payload", m, role="aux", decay=0.0, threshold=-np.inf, spike="graded",
                   payload="state"),
    ]
    projections = [
        Projection("x", "grad", -eta * sp.csr_matrix(qp.P), delay=0, name="gradient_step"),
        Projection("grad", "x", identity(n), delay=1, name="drift"),
        Projection("x", "cons", C_unit, delay=1, name="distance"),
        Projection("grad", "cons", C_unit, delay=1, name="distance_drift"),
        Projection("cons", "x", sp.csr_matrix(-C_unit.T), delay=0, name="projection"),
    ]
    # payload sums each row's projection distances over the iteration's steps
    projections += [Projection("cons", "payload", identity(m), delay=d, name=f"payload_{d}")
                    for d in range(sweeps)]
    schedule = [["cons", "x"]] * (sweeps - 1) + [["cons", "x", "grad", "payload"]]

    terms = [ReadoutTerm("x", "x", "state")]
    terms += dual_readout_terms(rows, "payload", "state", 1.0 / (eta * norms))
    params = {"eta": eta, "step_scale": step_scale, "sweeps": sweeps, "sequential": bool(sequential),
              "steps_per_iteration": sweeps, "rows": m,
              "row_kinds": {k: rows.kinds.count(k) for k in ("ineq", "eq_up", "eq_lo", "lb", "ub")}}
    return Network(populations=populations, projections=projections, schedule=schedule,
                   readout=Readout(terms=terms, sizes=readout_sizes(qp)),
                   provenance=provenance(source, FAMILY, params, scaling))
