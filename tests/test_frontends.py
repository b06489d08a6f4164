"""read_problem dispatch, the .npz reader and problems given as Python objects."""
import numpy as np
import pytest
import scipy.sparse as sp

from snn_compile import QP, InputError
from snn_compile.classical import reference_solution
from snn_compile.frontends import READERS, read_problem


def hand2_arrays():
    return dict(P=np.eye(2), q=np.array([-1.0, -1.0]), G=np.array([[1.0, 1.0]]), h=np.array([1.0]),
                lb=np.zeros(2), ub=np.ones(2))


def test_dispatch_table_covers_every_documented_suffix():
    assert set(READERS) == {".yaml", ".yml", ".json", ".mat", ".qps", ".mps", ".npz"}


def test_unknown_objects_are_refused():
    with pytest.raises(InputError, match="cannot read a problem from a dict"):
        read_problem({"q": [1]})


def test_a_qp_passes_through():
    qp = QP(**hand2_arrays())
    assert read_problem(qp) is qp and read_problem(qp, name="renamed").name == "renamed"


# ---------------------------------------------------------------- .npz
def test_npz_dense_and_sparse_storage_give_the_same_qp(tmp_path):
    arrays = hand2_arrays()
    np.savez(tmp_path / "dense.npz", **arrays, r=np.array(2.5), var_names=np.array(["a", "b"]))
    P = sp.csr_matrix(arrays.pop("P"))
    np.savez(tmp_path / "sparse.npz", **arrays, P_data=P.data, P_indices=P.indices, P_indptr=P.indptr,
             P_shape=np.array(P.shape), r=np.array([2.5]))
    dense, sparse = read_problem(tmp_path / "dense.npz"), read_problem(tmp_path / "sparse.npz")
    assert dense.content_hash() == sparse.content_hash()
    assert dense.r == 2.5 and dense.var_names == ("a", "b") and dense.name == "dense"
    np.testing.assert_allclose(reference_solution(dense).x, [0.5, 0.5], atol=1e-7)


@pytest.mark.parametrize("arrays, field", [
    ({"P": np.eye(2)}, "q"),                                      # q is required
    ({"q": np.zeros(2), "P": np.eye(3)}, "P"),                    # wrong shape
    ({"q": np.zeros(2), "G": np.ones((1, 2))}, "h"),              # G without h
    ({"q": np.array([0.0, np.nan])}, "q"),
    ({"q": np.zeros(2), "Q": np.eye(2)}, "Q"),                    # unknown key
    ({"q": np.zeros(2), "P": np.array([[1, 2], [0, 1.0]])}, "P"),  # asymmetric
    ({"q": np.array(["a", "b"])}, "q"),                           # not numbers
])
def test_npz_refusals_name_file_and_field(tmp_path, arrays, field):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError) as err:
        read_problem(path)
    assert err.value.field == field and str(path) in str(err.value) and "\n" not in str(err.value)


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, q=np.array([{"evil": 1}, None], dtype=object))
    with pytest.raises(InputError) as err:
        read_problem(path)
    assert err.value.field == "q"


def test_a_file_that_is_not_an_archive_is_refused(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("not a zip file")
    with pytest.raises(InputError, match="not a readable .npz"):
        read_problem(path)


def test_a_corrupt_mat_file_is_refused(tmp_path):
    path = tmp_path / "broken.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    with pytest.raises(InputError) as err:
        read_problem(path)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------- qpsolvers / cvxpy
def test_qpsolvers_problem():
    qpsolvers = pytest.importorskip("qpsolvers")
    qp = read_problem(qpsolvers.Problem(**hand2_arrays()), name="hand2")
    assert qp.name == "hand2" and qp.n == 2 and qp.m_ineq == 1


def test_invalid_qpsolvers_problem_names_the_source():
    qpsolvers = pytest.importorskip("qpsolvers")
    arrays = hand2_arrays()
    arrays["P"] = -np.eye(2)
    with pytest.raises(InputError) as err:
        read_problem(qpsolvers.Problem(**arrays))
    assert err.value.source == "qpsolvers.Problem" and err.value.field == "P"


def test_cvxpy_problem_has_the_same_optimum_as_cvxpy():
    cp = pytest.importorskip("cvxpy")
    rng = np.random.default_rng(0)
    M, target = rng.normal(size=(6, 3)), rng.normal(size=6)
    x, y = cp.Variable(3, name="x"), cp.Variable(name="y")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(M @ x - target) + (y - 2) ** 2 + x[0] + 3),
                         [x >= -1, x <= 0.5, cp.sum(x) + y == 1, x[0] + 2 * x[1] <= 0.3])
    qp = read_problem(problem)
    expected = problem.solve(solver=cp.CLARABEL)
    solution = reference_solution(qp)
    assert solution.obj == pytest.approx(expected, rel=1e-6)
    names = list(qp.var_names)
    got_x = solution.x[[names.index(f"x[{i}]") for i in range(3)]]
    np.testing.assert_allclose(got_x, x.value, atol=1e-5)
    assert solution.x[names.index("y")] == pytest.approx(y.value, abs=1e-5)


def test_cvxpy_maximize_becomes_minimising_the_negation():
    cp = pytest.importorskip("cvxpy")
    x = cp.Variable(2, name="x")
    problem = cp.Problem(cp.Maximize(-cp.sum_squares(x) + cp.sum(x) + 1), [cp.sum(x) <= 0.5])
    qp = read_problem(problem)
    assert reference_solution(qp).obj == pytest.approx(-problem.solve(solver=cp.CLARABEL), rel=1e-6)


@pytest.mark.parametrize("make, reason", [
    (lambda cp, x: cp.Problem(cp.Minimize(cp.norm(x, 2))), "not a QP"),
    (lambda cp, x: cp.Problem(cp.Minimize(cp.sum_squares(x)), [cp.norm(x, 2) <= 1]), "not a QP"),
    (lambda cp, x: cp.Problem(cp.Minimize(-cp.sum_squares(x))), "DCP"),
    (lambda cp, x: cp.Problem(cp.Minimize(cp.sum_squares(cp.Variable(2, integer=True)))), "integer"),
    (lambda cp, x: cp.Problem(cp.Minimize(cp.sum_squares(x) + cp.Parameter(name="w") * x[0])), "no value"),
])
def test_cvxpy_problems_that_are_not_convex_qps_are_refused(make, reason):
    cp = pytest.importorskip("cvxpy")
    with pytest.raises(InputError, match=reason) as err:
        read_problem(make(cp, cp.Variable(2)))
    assert err.value.source == "cvxpy.Problem"
