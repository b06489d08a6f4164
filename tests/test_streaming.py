"""Parameter streaming: update q/h/b/lb/ub without recompiling, and warm starts."""
import numpy as np
import pytest

import snn_compile as sc
from snn_compile.classical import reference_solution
from snn_compile.passes.parameters import update_parameters, with_initial_state
from snn_compile.passes.precondition import Scaling


def base_qp(seed=0, n=8, m=5, m_eq=2):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    G, A = rng.standard_normal((m, n)), rng.standard_normal((m_eq, n))
    return sc.QP(P=M.T @ M + 0.5 * np.eye(n), q=rng.standard_normal(n), G=G, h=rng.uniform(0, 1, m),
                 A=A, b=rng.standard_normal(m_eq) * 0.1, lb=-2 * np.ones(n), ub=2 * np.ones(n))


def shifted(qp, seed=1):
    rng = np.random.default_rng(seed)
    return dict(q=qp.q + 0.3 * rng.standard_normal(qp.n), h=qp.h + 0.1 * rng.uniform(size=qp.m_ineq),
                b=qp.b + 0.05, lb=qp.lb - 0.1, ub=qp.ub + 0.1)


@pytest.mark.parametrize("family, params, tol", [("primal-dual", {}, 1e-6),
                                                  ("projection", {"step_scale": 0.2}, None),
                                                  ("lif", {"gamma": 0.01}, None)])
def test_update_equals_recompiling(family, params, tol):
    qp = base_qp()
    changes = shifted(qp)
    new = qp.replace(**changes)
    original = sc.lower.lower(qp, family, **params)
    scaling = original.provenance["scaling"]
    if scaling is not None:   # recompiling would rescale for the new q: compare at equal scaling
        params = dict(params, scaling=Scaling.from_dict(scaling))
    fresh = sc.lower.lower(new, family, **params)
    streamed = update_parameters(original, qp, new)
    for pop in fresh.populations:
        other = streamed.population(pop.name)
        for field in ("bias", "threshold", "v_min", "v_max", "v_init"):
            np.testing.assert_allclose(getattr(other, field), getattr(pop, field), rtol=1e-12, atol=1e-12,
                                       err_msg=f"{family} {pop.name}.{field}")
    for a, b in zip(fresh.projections, streamed.projections):
        assert b.weights is not None and a.weights.shape == b.weights.shape
    np.testing.assert_allclose(streamed.readout.offsets.get("x", 0), fresh.readout.offsets.get("x", 0),
                               atol=1e-12)


def test_update_reuses_weights_and_solves_the_new_problem():
    qp = base_qp()
    compiled = sc.compile(qp)
    weights_before = [p.weights for p in compiled.net.projections]
    compiled.solve(tol=1e-6)
    compiled.update(**shifted(qp))
    assert all(a is b for a, b in zip(weights_before, (p.weights for p in compiled.net.projections)))
    solution = compiled.solve(tol=1e-6, warm_start=True)
    ref = reference_solution(compiled.qp)
    assert solution.status is sc.Status.OPTIMAL
    np.testing.assert_allclose(solution.x, ref.x, atol=1e-4)


def test_warm_start_needs_fewer_steps_for_a_small_change():
    qp = base_qp(3)
    compiled = sc.compile(qp)
    compiled.solve(tol=1e-6)
    compiled.update(q=qp.q * 1.01)
    cold = sc.solve(compiled.qp, tol=1e-6)
    warm = compiled.solve(tol=1e-6, warm_start=True)
    assert warm.status is sc.Status.OPTIMAL and warm.steps < cold.steps


def test_structure_changes_are_refused():
    qp = base_qp()
    net = sc.lower.lower(qp, "primal-dual")
    with pytest.raises(sc.InputError, match="which bounds are finite"):
        update_parameters(net, qp, qp.replace(lb=np.full(qp.n, -np.inf)))


def test_warm_state_is_clipped_into_new_bounds():
    qp = base_qp()
    net = sc.lower.lower(qp, "primal-dual")
    started = with_initial_state(net, {"x": np.full(qp.n, 1e9)})
    assert np.all(started.population("x").v_init == started.population("x").v_max)
