"""Family A (drift–spike projection): dispatch, IR structure, and what the
network actually computes — exact where the seed algorithm is exact, and the
measured O(η) offset where it is not."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from snn_compile.backends.reference import simulate
from snn_compile.classical import reference_solution
from snn_compile.decode import decode_solution
from snn_compile.errors import InputError
from snn_compile.lower import FAMILIES, lower
from snn_compile.lower.common import power_iteration_lambda_max, stack_constraint_rows
from snn_compile.passes.precondition import precondition
from snn_compile.qp import QP


# ---------------------------------------------------------------- problems
def hand_qp() -> QP:
    """min ½(x1² + x2²) − x1 − x2  s.t.  x1 + x2 ≤ 1, 0 ≤ x ≤ 1:  x* = (½, ½), z* = ½."""
    return QP(P=np.eye(2), q=[-1.0, -1.0], G=[[1.0, 1.0]], h=[1.0], lb=[0.0, 0.0], ub=[1.0, 1.0])


def random_qp(seed: int = 3, n: int = 5, m: int = 3) -> QP:
    """Strictly convex, 3 inequalities; seed 3 has two active rows that are not
    orthogonal (the case where simultaneous projection leaves an offset)."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    return QP(P=M @ M.T / n + 0.5 * np.eye(n), q=2 * rng.standard_normal(n),
              G=rng.standard_normal((m, n)), h=rng.uniform(0, 0.5, m))


def orthogonal_rows_qp() -> QP:
    """An equality, an active upper and an active lower bound on disjoint variables:
    every active row is orthogonal to the others, so the network is exact.
    x* = (½, ½, 1, 0), y* = −½, z_box* = (0, 0, +2, −1)."""
    return QP(P=np.eye(4), q=[0.0, 0.0, -3.0, 1.0], A=[[1.0, 1.0, 0.0, 0.0]], b=[1.0],
              lb=[-5.0, -5.0, 0.0, 0.0], ub=[5.0, 5.0, 1.0, 1.0])


def classical_active_rows(qp: QP, ref) -> set:
    """Rows of ``stack_constraint_rows`` with a positive classical multiplier."""
    lo, hi = np.isfinite(qp.lb), np.isfinite(qp.ub)
    w = np.concatenate([ref.z, np.maximum(ref.y, 0), np.maximum(-ref.y, 0),
                        np.maximum(-ref.z_box[lo], 0), np.maximum(ref.z_box[hi], 0)])
    return set(np.flatnonzero(w > 1e-6).tolist())


def persistent_rows(trace, window: int, min_fraction: float) -> set:
    """Rows firing in at least ``min_fraction`` of the last ``window`` steps."""
    steps, neurons, _ = trace.events["cons"]
    late = neurons[steps >= trace.steps - window]
    counts = np.bincount(late, minlength=trace.final_state["cons"].size)
    return set(np.flatnonzero(counts >= min_fraction * window).tolist())


def predicted_fixed_point(qp: QP, active: list, eta: float) -> np.ndarray:
    """The simultaneous scheme's fixed point with active rows S: stationarity
    Px + q + C_Sᵀw = 0 and, because each row is also moved by its neighbours'
    projections, C_S x + η·offdiag(C_S C_Sᵀ)·w = h_S (module docstring)."""
    rows = stack_constraint_rows(qp)
    C = rows.C.toarray()[active]
    N = C @ C.T
    np.fill_diagonal(N, 0.0)
    P = qp.P.toarray() if sp.issparse(qp.P) else np.asarray(qp.P)
    K = np.block([[P, C.T], [C, eta * N]])
    return np.linalg.solve(K, np.concatenate([-qp.q, rows.h[active]]))[:qp.n]


def run(qp, steps, **params):
    net = lower(qp, "projection", **params)
    trace = simulate(net, steps)
    return net, trace, decode_solution(net, trace, qp)


# ---------------------------------------------------------------- dispatch
def test_dispatch_table_and_errors():
    assert {"projection", "lif", "primal-dual"} <= set(FAMILIES)
    with pytest.raises(InputError, match="known families: .*lif.*projection"):
        lower(hand_qp(), "no-such-family")
    with pytest.raises(InputError, match="unknown parameter.*bogus.*accepts: .*step_scale"):
        lower(hand_qp(), "projection", bogus=1)
    with pytest.raises(InputError, match="step_scale"):
        lower(hand_qp(), "projection", step_scale=2.5)


def test_power_iteration_matches_eigvalsh_and_accepts_operators():
    rng = np.random.default_rng(0)
    M = rng.standard_normal((40, 40))
    S = M @ M.T
    exact = np.linalg.eigvalsh(S)[-1]
    assert power_iteration_lambda_max(S) == pytest.approx(exact, rel=1e-6)
    assert power_iteration_lambda_max(sp.csr_matrix(S)) == pytest.approx(exact, rel=1e-6)
    assert power_iteration_lambda_max(lambda v: S @ v, 40) == pytest.approx(exact, rel=1e-6)
    assert power_iteration_lambda_max(np.zeros((3, 3))) == 0.0


def test_constraint_rows_and_dual_maps():
    qp = QP(P=np.eye(3), q=np.zeros(3), G=[[1.0, 2.0, 0.0]], h=[4.0], A=[[0.0, 1.0, 1.0]], b=[2.0],
            lb=[0.0, -np.inf, -1.0], ub=[np.inf, 3.0, np.inf])
    rows = stack_constraint_rows(qp)
    assert rows.kinds == ("ineq", "eq_up", "eq_lo", "lb", "lb", "ub")
    np.testing.assert_array_equal(rows.C.toarray(), [[1, 2, 0], [0, 1, 1], [0, -1, -1],
                                                     [-1, 0, 0], [0, 0, -1], [0, 1, 0]])
    np.testing.assert_array_equal(rows.h, [4, 2, -2, 0, 1, 3])
    w = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    np.testing.assert_array_equal(rows.to_z @ w, [1.0])
    np.testing.assert_array_equal(rows.to_y @ w, [2.0 - 3.0])            # y = w_up − w_lo
    np.testing.assert_array_equal(rows.to_z_box @ w, [-4.0, 6.0, -5.0])  # lb rows −, ub rows +
    # the maps preserve stationarity: Cᵀw = Gᵀz + Aᵀy + z_box
    assert np.allclose(rows.C.T @ w, qp.G.T @ (rows.to_z @ w) + qp.A.T @ (rows.to_y @ w)
                       + rows.to_z_box @ w)


# ---------------------------------------------------------------- structure
def test_structure_on_the_hand_example():
    qp = hand_qp()
    net = lower(qp, "projection")
    sizes = {p.name: p.size for p in net.populations}
    assert sizes == {"cons": 5, "x": 2, "grad": 2, "payload": 5}    # 1 row + 2 lower + 2 upper
    assert net.schedule == [["cons", "x", "grad", "payload"]]
    eta = net.provenance["params"]["eta"]
    assert eta == pytest.approx(1.0)                               # s/λmax(P), P = I
    c_unit = np.array([[1, 1] / np.sqrt(2), [-1, 0], [0, -1], [1, 0], [0, 1]])
    h_unit = np.array([1 / np.sqrt(2), 0, 0, 1, 1])
    W = {p.name: p for p in net.projections}
    dense = lambda M: M.toarray() if sp.issparse(M) else M  # noqa: E731
    np.testing.assert_allclose(dense(W["projection"].weights), -c_unit.T)   # −ĉᵢ into x
    np.testing.assert_allclose(dense(W["distance"].weights), c_unit)
    np.testing.assert_allclose(dense(W["distance_drift"].weights), c_unit)
    np.testing.assert_allclose(dense(W["gradient_step"].weights), -eta * np.eye(2))
    assert (W["projection"].delay, W["distance"].delay, W["drift"].delay) == (0, 1, 1)
    cons, x, grad = (net.population(k) for k in ("cons", "x", "grad"))
    np.testing.assert_allclose(cons.bias, -h_unit)
    np.testing.assert_allclose(grad.bias, -eta * qp.q)
    assert cons.spike == "graded" and cons.payload == "excess" and np.all(cons.threshold == 0)
    assert np.all(cons.decay == 0) and np.all(x.decay == 1) and x.role == "primal"
    assert net.readout.sizes == {"x": 2, "y": 0, "z": 1, "z_box": 2}
    prov = net.provenance
    assert prov["family"] == "projection" and prov["qp_hash"] == qp.content_hash()
    assert (prov["n"], prov["m_ineq"], prov["m_eq"], prov["scaling"]) == (2, 1, 0, None)


def test_lp_step_size_comes_from_the_constraints():
    qp = QP(P=np.zeros((2, 2)), q=[-1.0, -1.0], G=[[1.0, 1.0]], h=[1.0], lb=[0, 0], ub=[1, 1])
    eta = lower(qp, "projection").provenance["params"]["eta"]
    C = stack_constraint_rows(qp).C.toarray()
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    assert eta == pytest.approx(1 / np.linalg.eigvalsh(C.T @ C)[-1], rel=1e-6)


# ---------------------------------------------------------------- what it computes
def test_hand_example_is_exact():
    """One active row: the projection lands on it exactly, so the fixed point is
    the KKT point (x*, z*) = ((½, ½), ½), reached here in two iterations."""
    qp = hand_qp()
    _, trace, sol = run(qp, 20)
    np.testing.assert_allclose(sol.x, [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(sol.z, [0.5], atol=1e-12)
    np.testing.assert_allclose(sol.z_box, [0.0, 0.0], atol=1e-12)
    assert max(sol.primal_residual, sol.dual_residual, sol.duality_gap) < 1e-12
    assert persistent_rows(trace, 10, 1.0) == {0}


def test_orthogonal_rows_give_exact_duals_with_qpsolvers_signs():
    qp = orthogonal_rows_qp()
    _, _, sol = run(qp, 50)
    ref = reference_solution(qp)
    np.testing.assert_allclose(sol.x, [0.5, 0.5, 1.0, 0.0], atol=1e-10)
    np.testing.assert_allclose(sol.y, ref.y, atol=1e-8)                 # −½
    np.testing.assert_allclose(sol.z_box, ref.z_box, atol=1e-8)         # (0, 0, +2, −1)
    assert max(sol.primal_residual, sol.dual_residual, sol.duality_gap) < 1e-10


def test_coupled_active_rows_leave_the_documented_O_eta_offset():
    """Two non-orthogonal active rows: the network converges to the predicted
    fixed point (not x*), whose distance from x* is linear in η."""
    qp = random_qp(3)
    ref = reference_solution(qp)
    active = sorted(classical_active_rows(qp, ref))
    assert active == [0, 1]
    errors = {}
    for s in (1.0, 0.1):
        net, trace, sol = run(qp, 3000, step_scale=s)
        eta = net.provenance["params"]["eta"]
        np.testing.assert_allclose(sol.x, predicted_fixed_point(qp, active, eta), atol=1e-9)
        errors[s] = np.linalg.norm(sol.x - ref.x) / eta
        assert persistent_rows(trace, 100, 1.0) == set(active)    # raster = classical active set
        assert sol.dual_residual < 1e-9                           # stationarity is exact at a fixed point
        assert sol.primal_residual < 1e-12                        # here over-projection errs inward
    # ‖x − x*‖ = C·η with one constant C (≈ 0.35 on this problem): linear in η
    assert errors[1.0] == pytest.approx(errors[0.1], rel=0.02)
    assert 0.2 < errors[1.0] < 0.5


def test_raster_equals_classical_active_set_with_equality_and_bounds():
    rng = np.random.default_rng(0)
    M = rng.standard_normal((5, 5))
    qp = QP(P=M @ M.T / 5 + 0.5 * np.eye(5), q=2 * rng.standard_normal(5),
            G=rng.standard_normal((3, 5)), h=rng.uniform(0, 0.5, 3),
            A=rng.standard_normal((1, 5)), b=[0.1], lb=-np.ones(5), ub=np.ones(5))
    ref = reference_solution(qp)
    net, trace, sol = run(qp, 5000, step_scale=0.1)
    assert persistent_rows(trace, 200, 1.0) == classical_active_rows(qp, ref)
    eta = net.provenance["params"]["eta"]
    assert np.linalg.norm(sol.x - ref.x) < eta            # measured 0.35·η
    assert abs(sol.y[0] - ref.y[0]) < 2 * eta


def test_sequential_sweep_with_one_projection_cycles():
    """The seed's one-row-at-a-time projection (max_spikes_per_step = 1) with a
    single projection per iteration cannot hold two active rows at once: the
    iterate ends in a limit cycle (period 11 on this problem, row 0 getting one
    projection in 11) instead of a fixed point — theory §1A's limit cycle."""
    qp = random_qp(3)
    net = lower(qp, "projection", step_scale=0.1, sweeps=1, sequential=True)
    assert net.population("cons").max_spikes_per_step == 1
    trace = simulate(net, 3100, record_every=1)
    X = trace.samples["x"][1][-200:]
    period = next(p for p in range(1, 100) if np.abs(X[p:] - X[:-p]).max() < 1e-9)
    assert period == 11
    assert persistent_rows(trace, 110, 1 / 11) == {0, 1}        # both active rows take turns
    ref = reference_solution(qp)
    _, _, simultaneous = run(qp, 3000, step_scale=0.1)
    worst = np.linalg.norm(X - ref.x, axis=1).max()
    assert worst > 5 * np.linalg.norm(simultaneous.x - ref.x)   # measured 0.074 vs 0.0078


def test_sequential_sweeps_take_several_steps_per_iteration():
    qp = random_qp(3)
    net, trace, sol = run(qp, 3 * 3000, step_scale=0.1, sweeps=3, sequential=True)
    assert len(net.schedule) == 3 and net.provenance["params"]["steps_per_iteration"] == 3
    ref = reference_solution(qp)
    assert np.linalg.norm(sol.x - ref.x) < 0.1 * net.provenance["params"]["eta"]  # measured 0.04·η
    assert sol.dual_residual < 1e-9


def test_scaling_is_applied_and_recorded():
    qp = random_qp(3)
    scaled, scaling, _ = precondition(qp)
    net = lower(qp, "projection", scaling=scaling, step_scale=0.1)
    assert net.provenance["scaling"] == scaling.to_dict()
    assert net.provenance["qp_hash"] == qp.content_hash()       # the user's problem
    trace = simulate(net, 5000)
    sol = decode_solution(net, trace, qp)
    unscaled = lower(scaled, "projection", step_scale=0.1)
    raw = decode_solution(unscaled, simulate(unscaled, 5000), scaled)
    np.testing.assert_allclose(sol.x, scaling.unscale_primal(raw.x), atol=1e-12)
    assert np.linalg.norm(sol.x - reference_solution(qp).x) < 0.05
