"""Solution quality of every network family on the 22 shared Maros–Meszaros problems.

    .venv/bin/python benchmarks/bench_maros_meszaros.py [--families primal-dual,projection,lif]
                                                        [--steps 200000] [--problems HS21,QPTEST]

Prints, per family, one row per problem (steps, the three qpbenchmark residuals
on the original problem, relative objective error against the published
optimum) and the number of problems reaching low accuracy (all three < 1e-3).
"""
from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

from _data import load_maros_meszaros, maros_meszaros_names, published_optima, relative_error

DEFAULT_STEPS = {"primal-dual": 200_000, "projection": 50_000, "lif": 50_000}


def run_one(args):
    name, family, steps = args
    import snn_compile as sc
    qp = load_maros_meszaros(name)
    started = time.perf_counter()
    try:
        sol = sc.solve(qp, family=family, steps=steps, tol=1e-3)
    except Exception as exc:  # a family that cannot lower a problem is a row, not a crash
        return dict(name=name, family=family, error=f"{type(exc).__name__}: {exc}"[:70])
    return dict(name=name, family=family, n=qp.n, m=qp.m_ineq + qp.m_eq, steps=sol.steps,
                status=sol.status.value, rp=sol.primal_residual, rd=sol.dual_residual,
                rg=sol.duality_gap, obj=sol.obj, seconds=time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="primal-dual,projection,lif")
    parser.add_argument("--steps", type=int, default=None, help="budget for every family")
    parser.add_argument("--problems", default=None)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    names = args.problems.split(",") if args.problems else maros_meszaros_names()
    optima = published_optima()
    families = args.families.split(",")
    jobs = [(name, fam, args.steps or DEFAULT_STEPS[fam]) for fam in families for name in names]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_one, jobs))
    for family in families:
        rows = [r for r in results if r["family"] == family]
        print(f"\n== family {family} (budget {args.steps or DEFAULT_STEPS[family]} steps) ==")
        print(f"{'problem':10} {'n':>4} {'m':>4} {'steps':>7} {'r_prim':>9} {'r_dual':>9} {'gap':>9} "
              f"{'rel.obj.err':>11} {'time s':>7}  status")
        solved = 0
        for r in rows:
            if "error" in r:
                print(f"{r['name']:10} {r['error']}")
                continue
            ok = max(r["rp"], r["rd"], r["rg"]) < 1e-3
            solved += ok
            print(f"{r['name']:10} {r['n']:4d} {r['m']:4d} {r['steps']:7d} {r['rp']:9.2e} {r['rd']:9.2e} "
                  f"{r['rg']:9.2e} {relative_error(r['obj'], optima[r['name']]):11.2e} {r['seconds']:7.1f}  "
                  f"{r['status']}{'' if ok else '  (not low accuracy)'}")
        print(f"-> {family}: {solved}/{len(rows)} problems reach all three residuals < 1e-3")


if __name__ == "__main__":
    main()
