"""solve()/compile(): the quickstart path, statuses, and what the raster shows."""
import numpy as np
import pytest

import snn_compile as sc
from snn_compile.classical import reference_solution


def hand2():
    return sc.QP(P=np.eye(2), q=[-1.0, -1.0], G=[[1.0, 1.0]], h=[1.0], lb=[0, 0], ub=[1, 1])


def random_qp(seed, n=12, m=10):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    G = rng.standard_normal((m, n))
    x_free = rng.standard_normal(n) * 2
    return sc.QP(P=M.T @ M + 0.1 * np.eye(n), q=-(M.T @ M + 0.1 * np.eye(n)) @ x_free,
                 G=G, h=G @ x_free - rng.uniform(-0.5, 1.0, m), lb=-3 * np.ones(n), ub=3 * np.ones(n))


def test_quickstart_reaches_the_optimum_with_duals():
    solution = sc.solve(hand2(), tol=1e-6)
    assert solution.status is sc.Status.OPTIMAL
    np.testing.assert_allclose(solution.x, [0.5, 0.5], atol=1e-5)
    np.testing.assert_allclose(solution.z, [0.5], atol=1e-5)
    assert max(solution.primal_residual, solution.dual_residual, solution.duality_gap) < 1e-6
    assert solution.spikes > 0 and solution.steps % 64 == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_primal_dual_has_no_standing_offset(seed):
    qp = random_qp(seed)
    ref = reference_solution(qp)
    solution = sc.solve(qp, tol=1e-8, steps=100_000)
    assert solution.status is sc.Status.OPTIMAL
    assert abs(solution.obj - ref.obj) / max(1.0, abs(ref.obj)) < 1e-7
    np.testing.assert_allclose(solution.x, ref.x, atol=1e-5)


@pytest.mark.parametrize("family", ["projection", "lif"])
def test_every_family_solves_the_hand_example(family):
    solution = sc.solve(hand2(), family=family, steps=20_000, tol=5e-2)
    np.testing.assert_allclose(solution.x, [0.5, 0.5], atol=5e-2)


def test_infeasible_problem_is_reported():
    qp = sc.QP(P=np.eye(2), q=[0.0, 0.0], G=[[-1.0, 0.0]], h=[-2.0], lb=[0, 0], ub=[1, 1])  # x0 ≥ 2 but ≤ 1
    assert sc.solve(qp, steps=20_000).status is sc.Status.INFEASIBLE


def test_unbounded_problem_is_reported():
    qp = sc.QP(P=np.zeros((2, 2)), q=[-1.0, 0.0], lb=[0, 0], ub=[np.inf, 1])   # min −x0, x0 ≥ 0
    assert sc.solve(qp, steps=20_000).status is sc.Status.UNBOUNDED


def test_budget_exhausted_is_not_called_optimal():
    solution = sc.solve(random_qp(3), steps=64, tol=1e-12)
    assert solution.status is sc.Status.MAX_STEPS
    assert solution.steps == 64


def test_raster_shows_the_active_set():
    """Rows of the dual population that fire through the last quarter of the run are
    exactly the inequalities the classical solver finds active."""
    qp = random_qp(4)
    ref = reference_solution(qp)
    active = set(np.flatnonzero(ref.z > 1e-6))
    assert 0 < len(active) < qp.m_ineq
    compiled = sc.compile(qp)
    compiled.solve(steps=3000, tol=1e-9)
    trace = compiled.last_trace
    steps, neurons, _ = trace.events["v"]
    late = steps >= 0.75 * trace.steps
    late_steps = trace.steps - int(np.ceil(0.75 * trace.steps))
    counts = np.bincount(neurons[late], minlength=compiled.net.population("v").size)[:qp.m_ineq]
    persistent = set(np.flatnonzero(counts >= 0.9 * late_steps))
    assert persistent == active


def test_compile_accepts_a_path_and_rejects_unknown_targets(repo_root):
    compiled = sc.compile(repo_root / "examples" / "hand2" / "problem.yaml")
    assert compiled.family == "primal-dual" and compiled.qp.n == 2
    with pytest.raises(sc.InputError, match="unknown target"):
        sc.compile(hand2(), target="no-such-chip")
