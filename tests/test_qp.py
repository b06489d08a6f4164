"""The QP model: validation, qpbenchmark residuals, classical reference."""
import numpy as np
import pytest
import scipy.sparse as sp

from snn_compile import QP, InputError
from snn_compile.classical import reference_solution
from snn_compile.qp import DENSE_EIG_LIMIT


def hand2():
    # min ½(x1² + x2²) − x1 − x2  s.t.  x1 + x2 ≤ 1,  0 ≤ x ≤ 1   →  x* = (½, ½), z* = ½
    return QP(P=np.eye(2), q=[-1.0, -1.0], G=[[1.0, 1.0]], h=[1.0], lb=[0, 0], ub=[1, 1])


def test_defaults_make_every_block_present():
    qp = QP(P=np.eye(3), q=np.zeros(3))
    assert (qp.m_ineq, qp.m_eq) == (0, 0)
    assert qp.G.shape == (0, 3) and qp.A.shape == (0, 3)
    assert np.all(qp.lb == -np.inf) and np.all(qp.ub == np.inf)


@pytest.mark.parametrize("kwargs, field", [
    (dict(P=np.eye(2), q=[1.0, 2.0, 3.0]), "P"),
    (dict(P=np.eye(2), q=[1.0, np.nan]), "q"),
    (dict(P=[[1.0, 2.0], [0.0, 1.0]], q=[0.0, 0.0]), "P"),
    (dict(P=[[1.0, 0.0], [0.0, -1.0]], q=[0.0, 0.0]), "P"),
    (dict(P=np.eye(2), q=[0.0, 0.0], lb=[0.0, 2.0], ub=[1.0, 1.0]), "lb"),
    (dict(P=np.eye(2), q=[0.0, 0.0], G=[[1.0, 1.0, 1.0]], h=[1.0]), "G"),
    (dict(P=np.eye(2), q=[0.0, 0.0], G=[[1.0, 1.0]], h=[1.0, 2.0]), "h"),
    (dict(P=np.eye(2), q=[0.0, 0.0], A=[[1.0, np.inf]], b=[1.0]), "A"),
    (dict(P=np.eye(2), q=[0.0, 0.0], G=[[1.0, 1.0]]), "h"),
    (dict(P=None, q=[]), "q"),
])
def test_validation_names_the_field(kwargs, field):
    with pytest.raises(InputError) as info:
        QP(**kwargs)
    assert info.value.field == field
    assert "\n" not in str(info.value)


def test_large_indefinite_P_is_rejected_without_dense_eigendecomposition(monkeypatch):
    n = DENSE_EIG_LIMIT + 400
    diag = np.ones(n)
    diag[n // 2] = -0.5
    P = sp.diags(diag, format="csr")
    monkeypatch.setattr(np.linalg, "eigvalsh", lambda *_: pytest.fail("dense eigvalsh on a large P"))
    with pytest.raises(InputError, match="not positive semidefinite"):
        QP(P=P, q=np.zeros(n))
    QP(P=sp.diags(np.abs(diag), format="csr"), q=np.zeros(n))   # the PSD twin passes


def test_sparse_inputs_stay_sparse():
    qp = QP(P=sp.eye(4, format="csc"), q=np.ones(4), A=sp.csr_matrix(np.ones((1, 4))), b=[1.0])
    assert sp.issparse(qp.P) and sp.issparse(qp.A)


def test_residuals_follow_qpbenchmark_definitions():
    qp = hand2()
    x, z, z_box = np.array([0.5, 0.5]), np.array([0.5]), np.zeros(2)
    assert qp.residuals(x, None, z, z_box) == pytest.approx(
        {"primal_residual": 0.0, "dual_residual": 0.0, "duality_gap": 0.0}, abs=1e-15)
    # a point violating the coupling row by 0.2 and the upper bound by 0.1
    x_bad = np.array([1.1, 0.1])
    assert qp.primal_residual(x_bad) == pytest.approx(0.2)
    # r_d = ‖Px + q + Gᵀz + z_box‖∞ by hand: (1.1 − 1 + 0.5, 0.1 − 1 + 0.5) → 0.6
    assert qp.dual_residual(x_bad, [], z, z_box) == pytest.approx(0.6)
    # r_g = |xᵀPx + qᵀx + hᵀz + ubᵀz_box⁺ + lbᵀz_box⁻| with z_box = (0.3, −0.2)
    expected = 1.21 + 0.01 - 1.2 + 0.5 + 1.0 * 0.3 + 0.0 * -0.2
    assert qp.duality_gap(x_bad, [], z, [0.3, -0.2]) == pytest.approx(expected)


def test_objective_includes_constant():
    qp = hand2().replace(r=7.0)
    assert qp.objective([0.5, 0.5]) == pytest.approx(-0.75 + 7.0)


def test_content_hash_depends_on_numbers_not_names():
    a, b = hand2(), hand2().replace(name="other", var_names=["u", "v"])
    assert a.content_hash() == b.content_hash()
    assert a.content_hash() != hand2().replace(h=[0.9]).content_hash()


def test_reference_solution_with_duals():
    sol = reference_solution(hand2())
    np.testing.assert_allclose(sol.x, [0.5, 0.5], atol=1e-7)
    np.testing.assert_allclose(sol.z, [0.5], atol=1e-7)
    assert sol.succeeded(1e-7)


def test_reference_solution_without_any_constraint_block():
    sol = reference_solution(QP(P=np.eye(2), q=[1.0, -2.0]))
    np.testing.assert_allclose(sol.x, [-1.0, 2.0], atol=1e-8)
    assert sol.y.shape == (0,) and sol.z.shape == (0,) and sol.z_box.shape == (2,)
