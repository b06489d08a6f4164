"""Where the shared benchmark data lives, and small loaders used by every benchmark."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SNN_SHARED_DATA", REPO.parent / "shared" / "data"))
MAROS_MESZAROS = SHARED / "maros_meszaros"
ANYMAL = SHARED / "lava_anymal" / "ex_qp_small.npz"
#: lava-optimization's ANYmal QP: reference optimum from the data folder's README.
ANYMAL_OPTIMUM = -500549.9143619769


def require(path: Path) -> Path:
    if not path.exists():
        raise SystemExit(f"benchmark data not found: {path} (set SNN_SHARED_DATA)")
    return path


def maros_meszaros_names() -> list[str]:
    return sorted(p.stem for p in require(MAROS_MESZAROS / "mat").glob("*.mat"))


def published_optima() -> dict[str, float]:
    with open(require(MAROS_MESZAROS / "optimal_values.csv")) as f:
        return {row["name"]: float(row["optimal_objective"]) for row in csv.DictReader(f)}


def load_maros_meszaros(name: str):
    from snn_compile import read_problem
    return read_problem(require(MAROS_MESZAROS / "mat" / f"{name}.mat"))


def load_anymal():
    from snn_compile import QP
    data = np.load(require(ANYMAL))
    return QP(P=data["A"], q=data["C"].ravel(), A=data["B"], b=data["D"].ravel(), name="anymal")


def snn_opt_style_qp(seed: int = 0, n: int = 50, m: int = 30):
    """The seed library's test shape: random 50-variable QP, 30 inequalities, several active."""
    from snn_compile import QP
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    P = M.T @ M / n + 0.1 * np.eye(n)
    G = rng.standard_normal((m, n))
    x_free = rng.standard_normal(n)
    # Cut through the unconstrained optimum so that a handful of rows are active.
    h = G @ x_free - rng.uniform(-3.0, 1.0, m)
    return QP(P=P, q=-P @ x_free, G=G, h=h, name=f"snn_opt_style_{seed}")


def relative_error(value: float, reference: float) -> float:
    return abs(value - reference) / max(1.0, abs(reference))


def sparse_mpc_qp(n_target: int, nx: int = 4, nu: int = 2, seed: int = 0):
    """A sparse MPC-like QP with about ``n_target`` variables (any size, for scaling studies).

    States and inputs of a random stable linear system over a horizon N, stacked as
    z = (x₁, u₀, x₂, u₁, …): dynamics x_{k+1} = A x_k + B u_k as equalities, box
    bounds on states and inputs, a diagonal cost. nnz grows linearly with N.
    """
    import scipy.sparse as sp
    from snn_compile import QP
    rng = np.random.default_rng(seed)
    horizon = max(1, n_target // (nx + nu))
    A = np.eye(nx) + 0.1 * rng.standard_normal((nx, nx)) / np.sqrt(nx)
    B = 0.1 * rng.standard_normal((nx, nu))
    x0 = rng.standard_normal(nx)
    nz = horizon * (nx + nu)
    # Variable k-block: [x_{k+1} (nx), u_k (nu)].
    rows, cols, vals = [], [], []
    for k in range(horizon):
        base, r0 = k * (nx + nu), k * nx
        for i in range(nx):              # x_{k+1} − A x_k − B u_k = (A x0 for k = 0)
            rows.append(r0 + i); cols.append(base + i); vals.append(1.0)
            for j in range(nu):
                rows.append(r0 + i); cols.append(base + nx + j); vals.append(-B[i, j])
            if k > 0:
                prev = (k - 1) * (nx + nu)
                for j in range(nx):
                    rows.append(r0 + i); cols.append(prev + j); vals.append(-A[i, j])
    Aeq = sp.csr_matrix((vals, (rows, cols)), shape=(horizon * nx, nz))
    beq = np.zeros(horizon * nx)
    beq[:nx] = A @ x0
    weights = np.tile(np.concatenate([np.ones(nx), 0.1 * np.ones(nu)]), horizon)
    bound = np.tile(np.concatenate([5.0 * np.ones(nx), 1.0 * np.ones(nu)]), horizon)
    return QP(P=sp.diags(weights, format="csr"), q=np.zeros(nz), A=Aeq, b=beq, lb=-bound, ub=bound,
              name=f"mpc_{nz}")


def pipg_solver_config(timeout: int):
    """lava-optimization 0.5.0's PIPG (``qp-lp_pipg``) on its CPU backend with the
    hyperparameters of its ANYmal tutorial and unit test (μ, σ, λ = 0.11, 8.14, 1.6)."""
    from lava.lib.optimization.solvers.generic.solver import SolverConfig
    mu, sigma, lamda = 0.11, 8.14, 1.6
    return SolverConfig(timeout=timeout, backend="CPU", hyperparameters={
        "neuron_model": "qp-lp_pipg", "alpha": 2 / (mu + 2 * lamda), "beta": mu / (2 * sigma),
        "lr_change_type": "indices",
        "alpha_decay_indices": np.array([50, 100, 200, 350, 550, 800, 1100, 1450, 1850, 2300]) * 2,
        "beta_growth_indices": np.array([1, 3, 7, 15, 31, 63, 127, 255, 511, 1023, 2047, 4095]) * 2 + 1,
        "decay_schedule_parameters": (100, 100, 0), "growth_schedule_parameters": (3, 2)})
