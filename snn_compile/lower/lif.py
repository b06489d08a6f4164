"""Family C: the pure-LIF network (Mancoo, Keemink & Machens, NeurIPS 2020).

Only constraint neurons spike (binary, fixed size γ); x is decoded from their
filtered spike trains. With all constraints as rows C x ≤ h (``common``) and
x_free = −P⁻¹q the unconstrained optimum:

    x = x_free + D r,  D = −γ P⁻¹Cᵀ        (a spike of row i moves x by −γP⁻¹cᵢ)
    Vᵢ = cᵢᵀx,  threshold Tᵢ = hᵢ           (so Vᵢ − Tᵢ = cᵢᵀx − hᵢ, the constraint value)
    V̇ = −λV + λ C x_free + Ω s,   ṙ = −λr + s,   Ω = C D = −γ C P⁻¹Cᵀ

(theory §1C writes D = γP⁻¹Gᵀ for rows written the other way round; with rows
C x ≤ h the decoder must point against cᵢ, hence the minus sign.) Ωᵢᵢ =
−γ cᵢᵀP⁻¹cᵢ is a subtractive reset; the off-diagonal is lateral coupling.

Discretisation (one network step of length dt, δ = 1 − λ·dt), chosen so that
the voltage identity V = C(x_free + D r) holds *exactly* at every firing decision:

    filter   r ← δ r + s                                   (``r``: decay δ, input s, delay 0)
    neuron   V ← δ V + λdt·C x_free  (+ δ·Ω_off s of the previous step)
             fire the one neuron with the largest V − T above 0 (max_spikes_per_step=1,
             as the authors' code does without synaptic delay), then V ← V + Ωᵢᵢ.

The self term acts at once as the reset; the lateral term can only arrive one step
later (delay 1), so its weights are δ·Ω_off: it then enters exactly as if it had
been added before the decay. Initial state: r = 0, V = C x_free.

Readout: x = D·state(r) + x_free, and the row multiplier w = γ·state(r) (the filtered
spike count; at steady state γ·rate/λ, theory's "γ × filtered rate"). With these,
stationarity P x + q + Cᵀw = 0 holds exactly by construction; the O(γ) error is in
feasibility and complementarity (a neuron overshoots its threshold by at most one
step of drift and is pushed back by one spike of size γ‖cᵢ‖²_{P⁻¹}).

Measured (tests/test_lower_lif.py, last fifth of a run of ``steps_hint`` =
10/(λ·dt) steps): hand example ‖x − x*‖ = 0.71·γ on average (at most 1.41·γ,
one spike) at γ = 0.05, 0.01, 0.002, i.e. 0.035 / 0.0070 / 0.0014 against the
paper's 0.030 / 0.006 / 0.0012; a 5-variable QP with two coupled active rows
2.1·γ on average, at most 3.9·γ; duals within 2γ.

Equalities are the sandwich a x ≤ b + ε, −a x ≤ −b + ε with ε = half the row's
spike size (``equality_margin`` = 0.5 of it): with ε = 0 a spike of one side
always makes the other side fire on the next step, and the pair would monopolise
the one spike per step (the ping-pong of theory §1A). The sandwich leaves an
equality residual of at most ε = O(γ).

Cost: P⁻¹Cᵀ comes from one sparse LU (or dense Cholesky) factorisation and m
solves, never an explicit inverse; but D (n×m) and Ω (m×m) are dense in general:
this family is inherently dense. It needs P ≻ 0; a singular P gets a ridge
ε·I (``ridge``, default 1e-6·λmax(P)), recorded in the provenance with a warning:
the network then solves the ridged problem, and a spike moves x by up to γ/ridge
along P's null space (an LP is a poor fit for this family). Steps to settle scale as 1/(λ·dt);
the default dt = γ/10 keeps one spike per step enough for Σᵢwᵢ up to 10
(a saturated population has Σ r ≤ 1/(λdt), i.e. Σ w ≤ γ/(λdt)).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import InputError
from ..ir import Network, Population, Projection, Readout, ReadoutTerm
from ..qp import QP, matvec, symmetric_extreme_eigenvalues
from .common import dual_readout_terms, provenance, readout_sizes, stack_constraint_rows

FAMILY = "lif"

#: P counts as singular (and gets a ridge) when λmin ≤ SINGULAR_REL_TOL·λmax.
SINGULAR_REL_TOL = 1e-9


def _solver(P):
    """A function B ↦ P⁻¹B from one factorisation (no explicit inverse)."""
    if sp.issparse(P):
        lu = spla.splu(sp.csc_matrix(P))
        return lambda B: lu.solve(np.asarray(B, dtype=np.float64))
    factor = sla.cho_factor(np.asarray(P, dtype=np.float64))
    return lambda B: sla.cho_solve(factor, np.asarray(B, dtype=np.float64))


def lower_lif(qp: QP, *, gamma: float = 0.01, leak: float = 1.0, dt: Optional[float] = None,
              ridge: Optional[float] = None, equality_margin: float = 0.5,
              scaling=None) -> Network:
    """The pure-LIF network of ``qp`` (or of ``scaling.apply(qp)`` when given)."""
    dt = gamma / 10.0 if dt is None else dt
    for name, value in (("gamma", gamma), ("leak", leak), ("dt", dt)):
        if not (np.isfinite(value) and value > 0):
            raise InputError("must be a positive number", field=name)
    if not leak * dt < 1.0:
        raise InputError(f"leak·dt = {leak * dt:g} must be < 1 (the decay 1 − λ·dt must stay positive)",
                         field="dt")
    if not equality_margin >= 0:
        raise InputError("must be ≥ 0", field="equality_margin")
    source, qp = qp, (qp if scaling is None else scaling.apply(qp))
    n, warnings = qp.n, []

    lam_min, lam_max = symmetric_extreme_eigenvalues(qp.P)
    singular = lam_max <= 0.0 or lam_min <= SINGULAR_REL_TOL * lam_max
    if ridge is None:
        ridge = (1e-6 * lam_max if lam_max > 0 else 1e-6) if singular else 0.0
    elif not (np.isfinite(ridge) and ridge >= 0):
        raise InputError("must be a number ≥ 0", field="ridge")
    if singular and ridge == 0.0:
        raise InputError(f"P is singular (λmin = {lam_min:.3g}); the lif family needs P ≻ 0 "
                         "or a positive ridge", field="ridge")
    if singular:
        warnings.append(f"P is singular (λmin = {lam_min:.3g}, λmax = {lam_max:.3g}); added ridge "
                        f"{ridge:.3g}·I: the network solves the ridged problem, and a spike moves x "
                        f"by up to γ/ridge = {gamma / ridge:.3g} along P's null space (expect errors "
                        f"of that order; raise ridge or use another family)")
    P = qp.P
    if ridge > 0.0:
        P = P + ridge * (sp.identity(n, format="csr") if sp.issparse(P) else np.eye(n))
    solve = _solver(P)

    rows = stack_constraint_rows(qp)
    m = rows.m
    C = rows.C
    x_free = -solve(qp.q)
    P_inv_Ct = solve(C.T.toarray()).reshape(n, m) if m else np.zeros((n, 0))  # dense n×m
    D = -gamma * P_inv_Ct
    Omega = np.asarray(C @ D)                                  # m×m, = −γ C P⁻¹ Cᵀ
    spike_size = -np.diag(Omega).copy()                        # γ cᵢᵀP⁻¹cᵢ ≥ 0
    threshold = rows.h.copy()
    is_eq = np.isin(np.array(rows.kinds, dtype=object), ("eq_up", "eq_lo"))
    threshold[is_eq] += equality_margin * spike_size[is_eq]

    decay = 1.0 - leak * dt
    v_free = matvec(C, x_free)
    cons = Population("cons", m, role="constraint", decay=decay, bias=leak * dt * v_free,
                      v_init=v_free, threshold=threshold, spike="binary", reset="subtract",
                      reset_value=spike_size, max_spikes_per_step=1, record=True)
    r = Population("r", m, role="filter", decay=decay, threshold=np.inf, spike="graded",
                   payload="state")
    lateral = decay * (Omega - np.diag(np.diag(Omega)))
    if qp.is_sparse:  # keep structural zeros out of the synapse count
        lateral, D = sp.csr_matrix(lateral), sp.csr_matrix(D)
    projections = [Projection("cons", "r", sp.identity(m, format="csr"), delay=0, name="filter"),
                   Projection("cons", "cons", lateral, delay=1, name="lateral")]
    terms = [ReadoutTerm("x", "r", "state", matrix=D)]
    terms += dual_readout_terms(rows, "r", "state", gamma)
    params = {"gamma": gamma, "leak": leak, "dt": dt, "decay": decay, "ridge": float(ridge),
              "equality_margin": equality_margin, "rows": m, "row_kind_list": list(rows.kinds),
              "steps_hint": int(np.ceil(10.0 / (leak * dt))),
              "row_kinds": {k: rows.kinds.count(k) for k in ("ineq", "eq_up", "eq_lo", "lb", "ub")}}
    return Network(populations=[cons, r], projections=projections, schedule=[["cons", "r"]],
                   dt=dt, readout=Readout(terms=terms, offsets={"x": x_free}, sizes=readout_sizes(qp)),
                   provenance=provenance(source, FAMILY, params, scaling, warnings))
