"""Family C (pure LIF, Mancoo et al. 2020): IR structure against the formulas,
the exact discrete voltage identity, and the O(γ) accuracy."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from snn_compile.backends.reference import simulate
from snn_compile.classical import reference_solution
from snn_compile.decode import decode_solution
from snn_compile.errors import InputError
from snn_compile.lower import lower
from snn_compile.lower.common import stack_constraint_rows
from snn_compile.passes.precondition import precondition
from snn_compile.qp import QP

dense = lambda M: M.toarray() if sp.issparse(M) else np.asarray(M)  # noqa: E731


# ---------------------------------------------------------------- problems
def hand_qp() -> QP:
    """min ½(x1² + x2²) − x1 − x2  s.t.  x1 + x2 ≤ 1, 0 ≤ x ≤ 1:  x* = (½, ½), z* = ½."""
    return QP(P=np.eye(2), q=[-1.0, -1.0], G=[[1.0, 1.0]], h=[1.0], lb=[0.0, 0.0], ub=[1.0, 1.0])


def random_qp(seed: int = 3, n: int = 5, m: int = 3, equality: bool = False) -> QP:
    """Strictly convex with 3 inequalities (seed 3: two active, one inactive);
    ``equality`` adds one equality and the box [−1, 1]."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    extra = dict(A=rng.standard_normal((1, n)), b=[0.1], lb=-np.ones(n), ub=np.ones(n)) if equality else {}
    return QP(P=M @ M.T / n + 0.5 * np.eye(n), q=2 * rng.standard_normal(n),
              G=rng.standard_normal((m, n)), h=rng.uniform(0, 0.5, m), **extra)


def run(qp, **params):
    """Run for the lowering's own settling hint; return net, trace, solution and the
    decoded x at ~200 samples of the last fifth of the run."""
    net = lower(qp, "lif", **params)
    steps = net.provenance["params"]["steps_hint"]
    trace = simulate(net, steps, record_every=max(1, steps // 1000))
    D = dense(net.readout.terms[0].matrix)
    r_late = trace.samples["r"][1][-200:]
    return net, trace, decode_solution(net, trace, qp), r_late @ D.T + net.readout.offsets["x"]


def active_constraints(qp: QP, ref) -> set:
    """Classical active constraints by kind: ('ineq', i), ('eq', i), ('lb', j), ('ub', j)."""
    out = {("ineq", int(i)) for i in np.flatnonzero(ref.z > 1e-6)}
    out |= {("eq", i) for i in range(qp.m_eq)}
    out |= {("lb", int(j)) for j in np.flatnonzero(ref.z_box < -1e-6)}
    out |= {("ub", int(j)) for j in np.flatnonzero(ref.z_box > 1e-6)}
    return out


def firing_constraints(qp: QP, trace, window: int) -> set:
    """Constraints with a neuron that fired in the last ``window`` steps (an
    equality is the pair of its two rows)."""
    rows = stack_constraint_rows(qp)
    steps, neurons, _ = trace.events["cons"]
    fired = set(neurons[steps >= trace.steps - window].tolist())
    lo, hi = np.flatnonzero(np.isfinite(qp.lb)), np.flatnonzero(np.isfinite(qp.ub))
    labels = ([("ineq", i) for i in range(qp.m_ineq)] + [("eq", i) for i in range(qp.m_eq)] * 2
              + [("lb", int(j)) for j in lo] + [("ub", int(j)) for j in hi])
    assert len(labels) == rows.m
    return {labels[i] for i in fired}


# ---------------------------------------------------------------- structure
def test_structure_matches_the_formulas():
    qp = hand_qp()
    gamma, leak, dt = 0.01, 2.0, 0.004
    net = lower(qp, "lif", gamma=gamma, leak=leak, dt=dt)
    rows = stack_constraint_rows(qp)
    C, h = rows.C.toarray(), rows.h
    P_inv = np.linalg.inv(np.asarray(qp.P))
    x_free = -P_inv @ qp.q
    D = -gamma * P_inv @ C.T
    Omega = C @ D
    decay = 1 - leak * dt

    assert {p.name: p.size for p in net.populations} == {"cons": 5, "r": 5}
    assert net.schedule == [["cons", "r"]] and net.dt == dt
    cons, r = net.population("cons"), net.population("r")
    assert cons.spike == "binary" and cons.reset == "subtract" and cons.max_spikes_per_step == 1
    np.testing.assert_allclose(cons.decay, decay)
    np.testing.assert_allclose(cons.bias, leak * dt * C @ x_free)
    np.testing.assert_allclose(cons.v_init, C @ x_free)
    np.testing.assert_allclose(cons.threshold, h)
    np.testing.assert_allclose(cons.reset_value, -np.diag(Omega))          # γ cᵢᵀP⁻¹cᵢ
    W = {p.name: p for p in net.projections}
    np.testing.assert_allclose(dense(W["lateral"].weights), decay * (Omega - np.diag(np.diag(Omega))))
    assert W["lateral"].delay == 1 and W["filter"].delay == 0
    np.testing.assert_allclose(dense(W["filter"].weights), np.eye(5))
    np.testing.assert_allclose(r.decay, decay)
    assert np.all(np.isposinf(r.threshold)) and r.role == "filter"
    x_term = next(t for t in net.readout.terms if t.target == "x")
    np.testing.assert_allclose(dense(x_term.matrix), D)
    np.testing.assert_allclose(net.readout.offsets["x"], x_free)
    z_term = next(t for t in net.readout.terms if t.target == "z")
    np.testing.assert_allclose(dense(z_term.matrix), [[gamma, 0, 0, 0, 0]])
    assert net.readout.sizes == {"x": 2, "y": 0, "z": 1, "z_box": 2}
    params = net.provenance["params"]
    assert (params["gamma"], params["leak"], params["dt"], params["ridge"]) == (gamma, leak, dt, 0.0)
    assert net.provenance["family"] == "lif" and net.provenance["qp_hash"] == qp.content_hash()


def test_equalities_are_a_sandwich_of_half_a_spike():
    qp = random_qp(0, equality=True)
    net = lower(qp, "lif", gamma=0.01)
    rows = stack_constraint_rows(qp)
    cons = net.population("cons")
    up, lo = rows.kinds.index("eq_up"), rows.kinds.index("eq_lo")
    for i in (up, lo):
        assert cons.threshold[i] == pytest.approx(rows.h[i] + 0.5 * cons.reset_value[i])
    assert cons.reset_value[up] == pytest.approx(cons.reset_value[lo])


def test_singular_P_gets_a_recorded_ridge():
    qp = QP(P=np.diag([1.0, 0.0]), q=[-1.0, -1.0], G=[[1.0, 1.0]], h=[1.0], lb=[0, 0], ub=[1, 1])
    net = lower(qp, "lif")
    assert net.provenance["params"]["ridge"] == pytest.approx(1e-6)       # 1e-6·λmax
    assert any("singular" in w for w in net.provenance["warnings"])
    assert lower(qp, "lif", ridge=1e-3).provenance["params"]["ridge"] == 1e-3
    with pytest.raises(InputError, match="P ≻ 0"):
        lower(qp, "lif", ridge=0.0)
    assert lower(hand_qp(), "lif").provenance["warnings"] == []


def test_parameter_validation():
    with pytest.raises(InputError, match="gamma"):
        lower(hand_qp(), "lif", gamma=0.0)
    with pytest.raises(InputError, match="leak·dt"):
        lower(hand_qp(), "lif", leak=10.0, dt=0.2)


def test_sparse_problem_is_solved_without_dense_inverse():
    """A sparse P is factorised (LU), and the weights stay sparse where Ω is."""
    n = 40
    P = sp.diags(np.linspace(1.0, 2.0, n), format="csr")
    G = sp.eye(n, format="csr")[:5]
    qp = QP(P=P, q=-np.ones(n), G=G, h=0.2 * np.ones(5))
    net = lower(qp, "lif", gamma=0.01)
    lateral = next(p for p in net.projections if p.name == "lateral").weights
    assert sp.issparse(lateral) and lateral.nnz == 0                     # diagonal P, disjoint rows
    np.testing.assert_allclose(net.readout.offsets["x"], 1.0 / np.linspace(1.0, 2.0, n))


# ---------------------------------------------------------------- what it computes
def test_voltage_identity_holds_exactly():
    """After any step, V + (pending lateral input) = C·(x_free + D r): the voltage
    is the constraint value of the decoded x, up to round-off."""
    qp = random_qp(3)
    net = lower(qp, "lif", gamma=0.01)
    rows = stack_constraint_rows(qp)
    D = dense(next(t for t in net.readout.terms if t.target == "x").matrix)
    x_free = net.readout.offsets["x"]
    lateral = dense(next(p for p in net.projections if p.name == "lateral").weights)
    decay = net.provenance["params"]["decay"]
    for steps in (1, 7, 500, 3001):
        trace = simulate(net, steps)
        spike_steps, neurons, _ = trace.events["cons"]
        s_last = np.zeros(rows.m)
        s_last[neurons[spike_steps == steps - 1]] = 1.0
        V = trace.final_state["cons"] + lateral @ s_last / decay
        np.testing.assert_allclose(V, rows.C @ (x_free + D @ trace.final_state["r"]), atol=1e-12)


def test_hand_example_error_is_linear_in_gamma():
    """The paper's figure: 0.030 / 0.006 / 0.0012 at γ = 0.05 / 0.01 / 0.002.
    Measured here (mean over the last fifth): 0.71·γ at every γ."""
    qp = hand_qp()
    mean_error = {}
    for gamma in (0.05, 0.01, 0.002):
        _, trace, sol, X = run(qp, gamma=gamma)
        errors = np.linalg.norm(X - [0.5, 0.5], axis=1)
        mean_error[gamma] = errors.mean()
        assert errors.max() <= 1.5 * gamma                                 # one spike: γ‖P⁻¹c‖ = 1.41γ
        assert abs(sol.z[0] - 0.5) <= gamma
        assert sol.dual_residual < 1e-12                                   # exact by construction
        assert firing_constraints(qp, trace, trace.steps // 5) == {("ineq", 0)}
    for big, small in ((0.05, 0.01), (0.01, 0.002)):
        assert 4.0 < mean_error[big] / mean_error[small] < 6.0             # γ / 5 → error / 5


def test_random_qp_error_is_O_gamma_and_raster_is_the_active_set():
    """5 variables, 3 inequalities (two active): ‖x − x*‖ averages 2.1·γ (at most
    3.9·γ) over the last fifth, for each γ; z is within O(γ) as well."""
    qp = random_qp(3)
    ref = reference_solution(qp)
    mean_error = {}
    for gamma in (0.05, 0.01, 0.002):
        _, trace, sol, X = run(qp, gamma=gamma)
        errors = np.linalg.norm(X - ref.x, axis=1)
        mean_error[gamma] = errors.mean()
        assert errors.max() <= 5 * gamma
        assert np.abs(sol.z - ref.z).max() <= 2 * gamma                    # measured ≤ 1.2·γ
        assert sol.dual_residual < 1e-12
        assert firing_constraints(qp, trace, trace.steps // 5) == active_constraints(qp, ref)
    for big, small in ((0.05, 0.01), (0.01, 0.002)):
        assert 4.0 < mean_error[big] / mean_error[small] < 6.0


def test_equality_and_bounds_duals():
    qp = random_qp(3, equality=True)
    ref = reference_solution(qp)
    gamma = 0.002
    _, trace, sol, X = run(qp, gamma=gamma)
    assert np.linalg.norm(X - ref.x, axis=1).max() <= 5 * gamma
    assert abs(sol.y[0] - ref.y[0]) <= 2 * gamma
    assert np.abs(sol.z_box - ref.z_box).max() <= 2 * gamma
    assert sol.dual_residual < 1e-12
    assert active_constraints(qp, ref) <= firing_constraints(qp, trace, trace.steps // 5)


def test_scaling_is_applied_and_recorded():
    qp = random_qp(3)
    scaled, scaling, _ = precondition(qp)
    net = lower(qp, "lif", gamma=0.002, scaling=scaling)
    assert net.provenance["scaling"] == scaling.to_dict()
    assert net.provenance["qp_hash"] == qp.content_hash()
    trace = simulate(net, net.provenance["params"]["steps_hint"])
    sol = decode_solution(net, trace, qp)
    assert np.linalg.norm(sol.x - reference_solution(qp).x) < 0.05
    assert sol.dual_residual < 1e-10          # stationarity survives the unscaling
