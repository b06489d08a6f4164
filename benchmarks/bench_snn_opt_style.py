"""The seed library's own test (snn_opt README): random 50-variable QP, 30 inequalities.

    .venv/bin/python benchmarks/bench_snn_opt_style.py [--seeds 0,1,2] [--steps 80000]

Prints the relative objective gap of the projection family (the seed's
drift–spike network) and of the primal-dual family against steps. The seed
reports a standing gap of 3e-4..6.7e-4 (1.2e-5 only after 80k iterations with
k0_scale=0.02); the primal-dual network has no standing offset.
"""
from __future__ import annotations

import argparse

import numpy as np

from _data import relative_error, snn_opt_style_qp

CHECKPOINTS = (100, 300, 1000, 3000, 10_000, 30_000, 80_000)


def gap_curve(qp, family, steps, optimum, **params):
    import snn_compile as sc
    compiled = sc.compile(qp, family=family, **params)
    compiled.solve(steps, tol=0.0, check_every=50)        # tol 0: run the whole budget
    rows = compiled.last_history.rows
    curve = {}
    for checkpoint in CHECKPOINTS:
        if checkpoint > steps:
            break
        row = min(rows, key=lambda r: abs(r["step"] - checkpoint))
        feasible = row["primal_residual"] < 1e-6
        curve[checkpoint] = (relative_error(row["obj"], optimum), feasible, row["primal_residual"])
    first = next((r["step"] for r in rows if relative_error(r["obj"], optimum) < 1e-6
                  and r["primal_residual"] < 1e-6), None)
    return curve, first


def main():
    from snn_compile.classical import reference_solution
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=80_000)
    args = parser.parse_args()
    for seed in map(int, args.seeds.split(",")):
        qp = snn_opt_style_qp(seed)
        ref = reference_solution(qp)
        active = int(np.sum(ref.z > 1e-7))
        print(f"\n== seed {seed}: n={qp.n}, inequalities={qp.m_ineq}, active at optimum={active}, "
              f"f*={ref.obj:.8g} ==")
        print(f"{'steps':>7} | {'projection gap':>15} {'r_prim':>9} | {'primal-dual gap':>15} {'r_prim':>9}")
        # Three projection sweeps per drift step: the closest the IR gets to the seed's
        # row-by-row inner loop (one sweep leaves a larger infeasibility).
        proj, proj_first = gap_curve(qp, "projection", args.steps, ref.obj, sweeps=3)
        pd, pd_first = gap_curve(qp, "primal-dual", args.steps, ref.obj)
        for checkpoint in proj:
            a, b = proj[checkpoint], pd.get(checkpoint, (np.nan, False, np.nan))
            print(f"{checkpoint:7d} | {a[0]:15.2e} {a[2]:9.1e} | {b[0]:15.2e} {b[2]:9.1e}")
        print(f"steps to relative gap < 1e-6 (and r_prim < 1e-6): projection "
              f"{proj_first or 'never'}, primal-dual {pd_first or 'never'}")


if __name__ == "__main__":
    main()
