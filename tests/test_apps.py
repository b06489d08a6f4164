"""Applications: each builder's QP, solved by the network, against the standard library's answer."""
import numpy as np
import pytest

import snn_compile as sc
from snn_compile.apps import (anls, double_integrator, efficient_frontier, final_primal_weight, gershgorin_shift,
                              inverse_iteration_qp, kernel_ridge, lasso, leading_component, low_rank_ratings,
                              markowitz, mpc_qp, nndsvd_init, nnls_qp, quadrotor, receding_horizon, ridge,
                              svm_dual, synthetic_market, warm_start, write_problem)
from snn_compile.classical import reference_solution
from snn_compile.decode import decode_solution
from snn_compile.errors import CapabilityError, InputError

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine  # noqa: E402
from sklearn.kernel_ridge import KernelRidge  # noqa: E402
from sklearn.linear_model import Lasso, Ridge  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402


def network(tol):
    return lambda qp: sc.solve(qp, tol=tol)


# ---------------------------------------------------------------- SVM
@pytest.fixture(scope="module")
def breast_cancer_split():
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_svm_matches_sklearn_svc_on_breast_cancer(breast_cancer_split, kernel):
    X_train, X_test, y_train, y_test = breast_cancer_split
    qp, decode = svm_dual(X_train, y_train, C=1.0, kernel=kernel)
    solution = sc.solve(qp, tol=1e-5)
    assert solution.status is sc.Status.OPTIMAL
    clf = decode(solution)
    # libsvm's default stopping tolerance (1e-3) moves f by ~3e-3 here; tighten it for the comparison.
    ref = SVC(C=1.0, kernel=kernel, gamma="scale", tol=1e-8).fit(X_train, y_train)
    for X, y in ((X_train, y_train), (X_test, y_test)):
        # accuracy equal within one misclassified point
        assert abs(clf.score(X, y) - ref.score(X, y)) * len(y) <= 1
    np.testing.assert_allclose(clf.decision_function(X_test), ref.decision_function(X_test), atol=1e-4)
    # The bias is the equality neuron's state: equal to libsvm's intercept.
    assert clf.intercept == pytest.approx(ref.intercept_[0], abs=1e-4)
    assert set(clf.support) == set(ref.support_)
    if kernel == "linear":
        np.testing.assert_allclose(clf.coef, ref.coef_[0], atol=1e-3)


def test_svm_on_iris_labels_intercept_rules_and_classical_decode():
    X, y = load_iris(return_X_y=True)
    X, y = StandardScaler().fit_transform(X[y > 0]), np.array(["versicolor", "virginica"])[y[y > 0] - 1]
    qp, decode = svm_dual(X, y, C=0.5, kernel="rbf", gamma=0.3)
    solution = sc.solve(qp, tol=1e-6)
    clf = decode(solution)
    ref = SVC(C=0.5, kernel="rbf", gamma=0.3, tol=1e-8).fit(X, y)
    assert list(clf.classes) == list(ref.classes_)
    assert np.array_equal(clf.predict(X), ref.predict(X))
    kkt = svm_dual(X, y, C=0.5, kernel="rbf", gamma=0.3, intercept="kkt").decode(solution)
    assert kkt.intercept == pytest.approx(clf.intercept, abs=1e-4)
    classical = decode(reference_solution(qp))
    np.testing.assert_allclose(classical.decision_function(X), ref.decision_function(X), atol=1e-5)


def test_svm_refuses_bad_input():
    X = np.arange(12.0).reshape(6, 2)
    with pytest.raises(InputError, match="two classes"):
        svm_dual(X, [0, 1, 2, 0, 1, 2])
    with pytest.raises(InputError, match="rows"):
        svm_dual(X, [0, 1, 0])
    with pytest.raises(InputError, match="kernel"):
        svm_dual(X, [0, 1, 0, 1, 0, 1], kernel="poly")
    with pytest.raises(InputError, match="C"):
        svm_dual(X, [0, 1, 0, 1, 0, 1], C=0)


# ---------------------------------------------------------------- regression
def test_ridge_matches_sklearn_within_1e_4_relative():
    X, y = load_diabetes(return_X_y=True)
    for alpha in (0.01, 1.0):
        qp, decode = ridge(X, y, alpha=alpha)
        model = decode(sc.solve(qp, tol=1e-7))
        ref = Ridge(alpha=alpha).fit(X, y)
        assert np.abs(model.coef - ref.coef_).max() <= 1e-4 * np.abs(ref.coef_).max()
        assert model.intercept == pytest.approx(ref.intercept_, rel=1e-4)
        np.testing.assert_allclose(model.predict(X), ref.predict(X), rtol=1e-4)


def test_kernel_ridge_matches_sklearn_within_1e_4_relative():
    X, y = load_diabetes(return_X_y=True)
    X, y = StandardScaler().fit_transform(X)[:200], (y[:200] - y.mean()) / y.std()
    for alpha, gamma in ((1.0, 0.1), (0.1, None)):
        qp, decode = kernel_ridge(X, y, alpha=alpha, kernel="rbf", gamma=gamma)
        model = decode(sc.solve(qp, tol=1e-7))
        ref = KernelRidge(alpha=alpha, kernel="rbf", gamma=gamma).fit(X, y)
        assert np.abs(model.dual_coef - ref.dual_coef_).max() <= 1e-4 * np.abs(ref.dual_coef_).max()
        assert np.abs(model.predict(X) - ref.predict(X)).max() <= 1e-4 * np.abs(ref.predict(X)).max()


@pytest.mark.parametrize("alpha", [0.05, 1.0])
def test_lasso_matches_sklearn_coefficients_within_1e_3(alpha):
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    qp, decode = lasso(X, y, alpha=alpha)
    solution = sc.solve(qp, tol=1e-7)
    model = decode(solution)
    ref = Lasso(alpha=alpha, tol=1e-12, max_iter=100_000).fit(X, y)
    np.testing.assert_allclose(model.coef, ref.coef_, atol=1e-3)
    assert model.intercept == pytest.approx(ref.intercept_, abs=1e-3)
    # The clamp holds the zeroed coefficients at exactly zero, and u, v never both carry weight.
    assert np.array_equal(model.coef == 0.0, ref.coef_ == 0.0)
    d = X.shape[1]
    assert np.all(np.minimum(solution.x[:d], solution.x[d:]) < 1e-6)
    # The QP objective is scikit-learn's objective (with the intercept fitted).
    residual = y - X @ model.coef - model.intercept
    assert solution.obj == pytest.approx(residual @ residual / (2 * len(y)) + alpha * np.abs(model.coef).sum(),
                                         rel=1e-6)


# ---------------------------------------------------------------- portfolio
def test_markowitz_matches_the_classical_solver_and_holds_every_constraint():
    _, mu, sigma = synthetic_market(25, 400, seed=3)
    groups = {"first_five": (range(5), 0.3)}
    for gamma in (2.0, 50.0):
        qp, decode = markowitz(252 * mu, 252 * sigma, risk_aversion=gamma, cap=0.2, groups=groups)
        solution = sc.solve(qp, tol=1e-6)
        assert solution.status is sc.Status.OPTIMAL
        portfolio, classical = decode(solution), decode(reference_solution(qp))
        np.testing.assert_allclose(portfolio.weights, classical.weights, atol=1e-4)
        assert portfolio.weights.sum() == pytest.approx(1.0, abs=1e-6)
        assert portfolio.weights.min() >= 0.0 and portfolio.weights.max() <= 0.2 + 1e-12   # x = d·x̃ rounding
        assert portfolio.weights[:5].sum() <= 0.3 + 1e-6
        assert portfolio.volatility == pytest.approx(classical.volatility, rel=1e-4)
    frontier = efficient_frontier(252 * mu, 252 * sigma, [1.0, 10.0, 100.0], reference_solution, cap=0.2)
    assert [p.volatility for p in frontier] == sorted([p.volatility for p in frontier], reverse=True)


def test_markowitz_refuses_caps_that_cannot_hold_the_budget():
    with pytest.raises(InputError, match="budget"):
        markowitz(np.ones(4), np.eye(4), cap=0.2)


# ---------------------------------------------------------------- MPC and warm starts
@pytest.mark.parametrize("model, x0, horizon", [(double_integrator(), [5.0, 0.0], 20),
                                                (quadrotor(), [1.0, -1.0, 0.5] + [0.0] * 9, 10)])
def test_mpc_plan_matches_the_classical_solver(model, x0, horizon):
    qp, decode = mpc_qp(model, x0, horizon)
    assert qp.n == horizon * (model.nx + model.nu) and qp.m_eq == horizon * model.nx
    solution = sc.solve(qp, tol=1e-5, steps=50_000)
    assert solution.status is sc.Status.OPTIMAL
    plan, classical = decode(solution), decode(reference_solution(qp))
    assert plan.u.shape == (horizon, model.nu) and plan.x.shape == (horizon + 1, model.nx)
    np.testing.assert_allclose(plan.u, classical.u, atol=1e-3)
    # The plan obeys the dynamics and the bounds.
    predicted = plan.x[:-1] @ model.A.T + plan.u @ model.B.T
    np.testing.assert_allclose(plan.x[1:], predicted, atol=1e-4)
    assert np.all(plan.u <= model.u_max + 1e-9) and np.all(plan.u >= model.u_min - 1e-9)
    # Some bound is active (otherwise the example would show nothing).
    assert np.any(np.isclose(np.abs(classical.u), model.u_max, atol=1e-6)) or \
        np.any(np.isclose(np.abs(classical.x), model.x_max, atol=1e-6))


def test_warm_start_maps_the_users_solution_into_the_network_variables():
    _, mu, sigma = synthetic_market(10, 200, seed=2)
    qp, _ = markowitz(mu, sigma, cap=0.3, groups={"g": (range(3), 0.4)})
    reference = reference_solution(qp)
    compiled = warm_start(sc.compile(qp), reference)
    assert compiled.net.provenance["scaling"] is not None       # a non-trivial map is exercised
    start = decode_solution(compiled.net, compiled.run(0), qp)   # zero steps: the readout of v_init
    np.testing.assert_allclose(start.x, reference.x, atol=1e-10)
    np.testing.assert_allclose(start.y, reference.y, atol=1e-12)
    np.testing.assert_allclose(start.z, reference.z, atol=1e-12)
    assert compiled.solve(tol=1e-7).status is sc.Status.OPTIMAL
    projection = warm_start(sc.compile(qp, family="projection"), reference)
    np.testing.assert_allclose(decode_solution(projection.net, projection.run(0), qp).x, reference.x,
                               atol=1e-12)
    with pytest.raises(CapabilityError, match="lif"):
        warm_start(sc.compile(qp, family="lif"), reference)
    with pytest.raises(InputError, match="previous.x"):
        warm_start(sc.compile(qp), {"x": np.ones(3)})


def test_warm_start_from_the_optimum_saves_steps_and_carries_the_primal_weight():
    model = double_integrator()
    qp, _ = mpc_qp(model, [5.0, 0.0], 20)
    cold = sc.compile(qp, check_every=16)
    cold_solution = cold.solve(tol=1e-4, check_every=16)
    omega = final_primal_weight(cold)
    assert omega is not None and omega > 0
    warm = warm_start(sc.compile(qp, check_every=16), reference_solution(qp), primal_weight=omega)
    warm_solution = warm.solve(tol=1e-4, check_every=16)
    assert warm_solution.status is sc.Status.OPTIMAL
    assert warm_solution.steps < cold_solution.steps


def test_receding_horizon_follows_the_classical_loop_and_warm_starts_save_steps():
    model = double_integrator()
    kwargs = dict(horizon=20, n_steps=8)
    run = receding_horizon(model, [5.0, 0.0], warm=True, compare_cold=True, tol=1e-4, **kwargs)
    classical = receding_horizon(model, [5.0, 0.0], solver=reference_solution, **kwargs)
    assert run.states.shape == (9, 2) and run.inputs.shape == (8, 1)
    assert set(run.statuses) == {"optimal"} and run.max_residual < 1e-4
    np.testing.assert_allclose(run.states, classical.states, atol=1e-3)
    assert len(run.steps) == len(run.cold_steps) == 8
    assert run.steps[0] == run.cold_steps[0]          # the first plan has nothing to start from
    assert run.steps_saved > 0
    assert run.cost(model) == pytest.approx(classical.cost(model), rel=1e-4)


def test_receding_horizon_refuses_to_apply_a_non_finite_plan():
    from snn_compile.errors import SnnCompileError
    diverged = lambda qp: sc.Solution.evaluate(qp, np.full(qp.n, np.nan), status=sc.Status.DIVERGED)  # noqa: E731
    with pytest.raises(SnnCompileError, match="control step 0"):
        receding_horizon(double_integrator(), [1.0, 0.0], horizon=5, n_steps=3, solver=diverged)


def test_linear_model_refuses_inconsistent_shapes():
    with pytest.raises(InputError, match="A"):
        double_integrator().__class__(A=np.eye(3), B=np.ones((2, 1)), Q=np.eye(2), R=np.eye(1),
                                      x_min=-1, x_max=1, u_min=-1, u_max=1)
    with pytest.raises(InputError, match="x0"):
        mpc_qp(double_integrator(), [1.0, 2.0, 3.0], 5)
    with pytest.raises(InputError, match="u_min"):
        double_integrator().__class__(A=np.eye(2), B=np.ones((2, 1)), Q=np.eye(2), R=np.eye(1),
                                      x_min=-1, x_max=1, u_min=[-1, 0], u_max=1)


# ---------------------------------------------------------------- NMF / collaborative filtering
def test_nnls_subproblem_matches_scipy_nnls():
    from scipy.optimize import nnls
    X = load_digits().data[:60] / 16.0
    W, _ = nndsvd_init(X, 5)
    qp, decode = nnls_qp(W, X)
    H = decode(sc.solve(qp, tol=1e-7))
    H_ref = np.array([nnls(W, X[:, j])[0] for j in range(X.shape[1])]).T
    assert np.abs(H - H_ref).max() <= 1e-4 * np.abs(H_ref).max()
    assert H.min() >= 0.0


def test_anls_nmf_matches_classical_anls_and_sklearn_error():
    from sklearn.decomposition import NMF
    X = load_digits().data[:80] / 16.0
    result = anls(X, 6, network(1e-6), iterations=8)
    classical = anls(X, 6, reference_solution, iterations=8)
    np.testing.assert_allclose(result.reconstruct(), classical.reconstruct(), atol=1e-3)
    assert result.errors == pytest.approx(classical.errors, abs=1e-5)
    assert result.errors[-1] <= result.errors[0]
    sk = NMF(6, init="nndsvd", solver="cd", tol=1e-10, max_iter=3000)
    W = sk.fit_transform(X)
    sk_error = np.linalg.norm(X - W @ sk.components_) / np.linalg.norm(X)
    assert result.errors[-1] <= 1.03 * sk_error       # a local optimum of the same quality


def test_collaborative_filtering_recovers_held_out_ratings():
    ratings, observed = low_rank_ratings(seed=0)
    result = anls(ratings, 3, network(1e-6), mask=observed, iterations=12, ridge=1e-3)
    classical = anls(ratings, 3, reference_solution, mask=observed, iterations=12, ridge=1e-3)
    np.testing.assert_allclose(result.reconstruct(), classical.reconstruct(), atol=1e-3)
    held_out = ~observed
    rmse = np.sqrt(np.mean((result.reconstruct() - ratings)[held_out] ** 2))
    baseline = np.sqrt(np.mean((ratings[observed].mean() - ratings)[held_out] ** 2))
    assert rmse < 0.1 * baseline


# ---------------------------------------------------------------- PCA
def test_leading_component_matches_numpy_eigh_on_wine():
    X = StandardScaler().fit_transform(load_wine().data)
    result = leading_component(X, network(1e-8), iterations=40)
    C = np.cov(X, rowvar=False)
    values, vectors = np.linalg.eigh(C)
    assert 1.0 - abs(result.vector @ vectors[:, -1]) < 1e-8
    assert result.eigenvalue == pytest.approx(values[-1], rel=1e-7)
    assert result.sigma >= values[-1]
    assert len(result.network_steps) < 40                # stopped on the direction test


def test_inverse_iteration_qp_needs_a_shift_above_the_top_eigenvalue():
    C = np.cov(StandardScaler().fit_transform(load_wine().data), rowvar=False)
    assert gershgorin_shift(C) >= np.linalg.eigvalsh(C)[-1]
    with pytest.raises(InputError, match="positive semidefinite"):
        inverse_iteration_qp(C, np.ones(C.shape[0]), sigma=1.0)


# ---------------------------------------------------------------- problem files
def test_write_problem_round_trips_through_the_reader(tmp_path):
    qp, _ = mpc_qp(double_integrator(), [5.0, 0.0], 6)              # sparse, names, finite bounds
    path = write_problem(qp, tmp_path / "mpc.yaml", header="two\nlines", metadata={"x0": [5.0, 0.0]})
    back = sc.read_problem(path)
    assert back.content_hash() == qp.content_hash()
    assert back.var_names == qp.var_names and back.eq_names == qp.eq_names
    assert path.read_text().startswith("# two\n# lines\n")
    _, mu, sigma = synthetic_market(6, 100, seed=0)
    qp, _ = markowitz(mu, sigma, long_only=False, groups={"g": ([0, 1], 0.5)})   # dense, G, infinite bounds
    back = sc.read_problem(write_problem(qp, tmp_path / "portfolio.yaml"))
    assert back.content_hash() == qp.content_hash() and back.ineq_names == ("g",)
