"""lava-optimization's ANYmal MPC QP (264 variables, 144 equalities), float primal-dual.

    .venv/bin/python benchmarks/bench_anymal.py

Targets: ‖Ax − k‖∞ < 1e-3 and the objective within 1e-4 relative of the
reference optimum. lava-optimization's own CPU float run reports ‖Ax − k‖₂ =
0.0189 after 2000 steps (1000 PIPG iterations); its Loihi 2 run 48.0.
"""
from __future__ import annotations

import time

import numpy as np

from _data import ANYMAL_OPTIMUM, load_anymal, relative_error


def main():
    import snn_compile as sc
    qp = load_anymal()
    print(f"ANYmal: n={qp.n}, equalities={qp.m_eq}, f* = {ANYMAL_OPTIMUM}")
    print(f"{'tol':>8} {'steps':>7} {'|Ax-k|inf':>10} {'|Ax-k|2':>10} {'rel.obj.err':>11} {'r_dual':>9} {'time s':>7}")
    for tol in (1e-3, 1e-5):
        started = time.perf_counter()
        sol = sc.solve(qp, tol=tol)
        violation = qp.A @ sol.x - qp.b
        print(f"{tol:8.0e} {sol.steps:7d} {np.max(np.abs(violation)):10.2e} {np.linalg.norm(violation):10.2e} "
              f"{relative_error(sol.obj, ANYMAL_OPTIMUM):11.2e} {sol.dual_residual:9.2e} "
              f"{time.perf_counter() - started:7.2f}")
    # Same budget as lava-optimization's CPU tutorial: 2000 network steps.
    sol = sc.solve(qp, steps=2000, tol=0.0)
    violation = qp.A @ sol.x - qp.b
    print(f"after 2000 steps (lava-optimization's CPU budget): |Ax-k|2 = {np.linalg.norm(violation):.2e} "
          f"(lava-optimization: 0.0189), rel.obj.err = {relative_error(sol.obj, ANYMAL_OPTIMUM):.2e}")


if __name__ == "__main__":
    main()
