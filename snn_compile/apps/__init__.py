"""Applications: builders that turn a task into a QP plus the map back to its answer.

Every builder is a small pure function returning ``AppQP(qp, decode)``:

    import snn_compile as sc
    from snn_compile.apps import svm_dual
    qp, decode = svm_dual(X, y, C=1.0, kernel="rbf")
    classifier = decode(sc.solve(qp, tol=1e-5))
    classifier.predict(X_test)

``decode`` accepts any ``Solution`` of ``qp``: the network's, or the classical
``snn_compile.classical.reference_solution(qp)`` for comparison. Applications
that need a sequence of QPs (NMF, PCA, receding-horizon MPC) take a ``solve``
function (QP → Solution) or drive the network themselves.
"""
from ._common import AppQP
from .mpc import (ClosedLoop, LinearModel, MpcPlan, double_integrator, mpc_qp, quadrotor,
                  receding_horizon, shifted_guess)
from .nmf import Factorisation, anls, low_rank_ratings, nndsvd_init, nnls_qp
from .pca import LeadingComponent, gershgorin_shift, inverse_iteration_qp, leading_component
from .portfolio import Portfolio, efficient_frontier, markowitz, synthetic_market
from ._common import example_command_line
from .problem_file import problem_dict, write_problem
from .regression import KernelPredictor, LinearPredictor, kernel_ridge, lasso, ridge
from .svm import SVMClassifier, kernel_function, svm_dual
from ..warm_start import final_primal_weight, warm_start

__all__ = ["AppQP", "svm_dual", "SVMClassifier", "kernel_function", "ridge", "kernel_ridge", "lasso",
           "LinearPredictor", "KernelPredictor", "markowitz", "efficient_frontier", "synthetic_market",
           "Portfolio", "LinearModel", "double_integrator", "quadrotor", "mpc_qp", "MpcPlan",
           "shifted_guess", "receding_horizon", "ClosedLoop", "nnls_qp", "anls", "nndsvd_init",
           "low_rank_ratings", "Factorisation", "inverse_iteration_qp", "leading_component",
           "gershgorin_shift", "LeadingComponent", "warm_start", "final_primal_weight",
           "write_problem", "problem_dict", "example_command_line"]
