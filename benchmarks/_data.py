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
