"""Performance of the reference simulator and of the compile path, against the peers,
measured side by side in one run.

    .venv/bin/python benchmarks/bench_performance.py [--sections snnopt,lavaopt,sims,compile,bandwidth]
        [--snnopt-iterations 20000] [--reference-steps 100000] [--problems NAME,...]
        [--sizes 300,3000,30000] [--compile-sizes 1000,10000,100000] [--skip-cython]

Sections (each prints its own table and ratios):

1. ``snnopt``: the reference (``primal-dual`` family) against ``snn-opt`` 0.8.1 on the
   seed's own problem shape (``_data.snn_opt_style_qp``, seeds 0–4) and on the shared
   Maros–Meszaros problems: steps and wall time to a relative objective gap of 1e-3 and
   1e-6 (with primal residual ≤ the same tolerance), see ``_perf_snnopt``.
2. ``lavaopt``: lava-optimization's QP solver (PIPG, CPU backend, its tutorial's
   hyperparameters, 2000 time steps) on its ANYmal QP, next to the reference; then the
   steps per second of both on the same equality-constrained MPC QPs (PIPG's problem
   class) at the three sizes of section 3.
3. ``sims``: network steps per second of the reference (numba and numpy kernels),
   Brian2 (numpy and cython code generation), Nengo and Lava (``Loihi2SimCfg``) on the
   same primal-dual IR at three sizes, see ``_perf_sims``.
4. ``compile``: ``compile(qp, target="reference", hardware="loihi2")`` of the sparse
   MPC QP ``_data.sparse_mpc_qp(n)``, one process per size: time per stage, peak memory,
   growth rate (``_perf_compile``).
5. ``bandwidth``: the reference step's achieved memory bandwidth (bytes it must move
   per step × steps per second) against a plain numpy copy measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SECTIONS = ("snnopt", "lavaopt", "sims", "compile", "bandwidth")
#: Steps per size for each simulator (slow ones get fewer; rates are per step).
SIM_STEPS = {"reference-numba": (4000, 2000, 300), "reference-numpy": (2000, 1000, 150),
             "brian2-numpy": (1000, 300, 40), "brian2-cython": (2000, 500, 60),
             "nengo": (500, 200, 30), "lava": (200, 100, 20)}


def fmt(value, spec=".0f", none="—") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return none
    return format(value, spec)


def ratio(a, b) -> str:
    return fmt(a / b if a and b else None, ".1f") + "×"


# ---------------------------------------------------------------- 1. snn-opt
def section_snnopt(args):
    from _data import load_maros_meszaros, maros_meszaros_names, published_optima, snn_opt_style_qp
    from _perf_snnopt import TOLERANCES, reference_reach, snnopt_reach
    from snn_compile.classical import reference_solution

    print("\n== 1. reference (primal-dual) vs snn-opt 0.8.1: steps to relative gap ≤ tol "
          "and primal residual ≤ tol ==")
    print(f"budgets: snn-opt {args.snnopt_iterations} iterations, reference {args.reference_steps} steps")
    optima = published_optima()
    problems = [(f"snn_opt_style_{s}", lambda s=s: snn_opt_style_qp(s), None) for s in range(5)]
    names = args.problems.split(",") if args.problems else maros_meszaros_names()
    problems += [(name, lambda name=name: load_maros_meszaros(name), optima[name]) for name in names]
    print(f"{'problem':17} {'n':>4} | {'snn-opt it':>10} {'+events':>8} {'it 1e-6':>8} {'t 1e-3 s':>9}"
          f" | {'ref steps':>9} {'1e-6':>7} {'t 1e-3 s':>9} {'t 1e-6 s':>9} | snn-opt ended")
    rows = []
    for name, make, optimum in problems:
        qp = make()
        optimum = reference_solution(qp).obj if optimum is None else optimum
        s = snnopt_reach(qp, optimum, args.snnopt_iterations)
        r = reference_reach(qp, optimum, args.reference_steps)
        lo, hi = TOLERANCES
        network_steps = s.steps[lo] + s.events[lo] if s.steps[lo] is not None else None
        print(f"{name:17} {qp.n:4d} | {fmt(s.steps[lo], 'd'):>10} {fmt(network_steps, 'd'):>8} "
              f"{fmt(s.steps[hi], 'd'):>8} {fmt(s.seconds.get(lo), '.4f'):>9} | {fmt(r.steps[lo], 'd'):>9} "
              f"{fmt(r.steps[hi], 'd'):>7} {fmt(r.seconds.get(lo), '.4f'):>9} {fmt(r.seconds.get(hi), '.4f'):>9}"
              f" | {s.note}; final gap {s.final_gap:.1e}, r_p {s.final_residual:.1e}", flush=True)
        rows.append((name, s, r, network_steps))
    lo, hi = TOLERANCES
    both = [(n, s, r, ns) for n, s, r, ns in rows if s.steps[lo] is not None and r.steps[lo] is not None]
    fewer_it = [n for n, s, r, _ in both if r.steps[lo] < s.steps[lo]]
    fewer_net = [n for n, s, r, ns in both if r.steps[lo] < ns]
    stalls = [(n, r) for n, s, r, _ in rows if s.steps[hi] is None]
    print(f"both reach 1e-3 on {len(both)} of {len(rows)} problems; the reference takes fewer steps on "
          f"{len(fewer_it)}/{len(both)} ({100 * len(fewer_it) / max(1, len(both)):.0f}%) counting one "
          f"snn-opt iteration as one step, on {len(fewer_net)}/{len(both)} "
          f"({100 * len(fewer_net) / max(1, len(both)):.0f}%) counting its serial projection events as "
          f"steps too")
    print(f"  snn-opt fewer iterations: {', '.join(n for n, *_ in both if n not in fewer_it) or 'none'}")
    print(f"snn-opt never reaches 1e-6 on {len(stalls)} problems; the reference reaches it on "
          f"{sum(r.steps[hi] is not None for _, r in stalls)} of them "
          f"(not: {', '.join(n for n, r in stalls if r.steps[hi] is None) or 'none'})")
    only_ref = [n for n, s, r, _ in rows if s.steps[lo] is None and r.steps[lo] is not None]
    print(f"snn-opt never reaches 1e-3 on: {', '.join(only_ref) or 'none'} (the reference does)")


# ---------------------------------------------------------------- 2. lava-optimization
def section_lavaopt(args):
    from _data import ANYMAL, ANYMAL_OPTIMUM, load_anymal, pipg_solver_config, relative_error
    import snn_compile as sc
    from snn_compile.backends.reference import ReferenceBackend

    print("\n== 2. lava-optimization QP solver (PIPG, CPU, floating point) vs reference on ANYmal ==")
    data = np.load(ANYMAL)
    Q, A, p, k = data["A"], data["B"], data["C"].ravel(), data["D"].ravel()
    steps = 2000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lava.lib.optimization.problems.problems import QP as LavaQP
        from lava.lib.optimization.solvers.generic.solver import OptimizationSolver
        problem = LavaQP(hessian=Q, linear_offset=p, equality_constraints_weights=A,
                         equality_constraints_biases=k)
        problem.precondition_problem(iterations=5, type="ruiz")

        def run_lava(timeout):
            started = time.perf_counter()
            report = OptimizationSolver(problem=problem).solve(config=pipg_solver_config(timeout))
            return report, time.perf_counter() - started

        _, short = run_lava(100)                            # setup + 100 steps
        report, full = run_lava(steps)
    x = problem.postconditioner @ report.best_state
    lava_rate = (steps - 100) / (full - short)
    lava_err = relative_error(0.5 * x @ Q @ x + p @ x, ANYMAL_OPTIMUM)
    print(f"lava-optimization: {steps} steps in {full:.2f} s ({lava_rate:.0f} steps/s excluding setup), "
          f"‖Ax − k‖₂ = {np.linalg.norm(A @ x - k):.2e}, relative objective error {lava_err:.1e}")
    qp = load_anymal()
    compiled = sc.compile(qp)
    rate = ReferenceBackend().run(compiled.net, steps, record_every=0).steps_per_second
    for tol in (1e-3, 1e-5):
        started = time.perf_counter()
        sol = sc.compile(qp).solve(tol=tol)
        took = time.perf_counter() - started
        print(f"reference, tol {tol:.0e}: {sol.steps} steps in {took:.2f} s (compile included), "
              f"‖Ax − k‖₂ = {np.linalg.norm(A @ sol.x - k):.2e}, relative objective error "
              f"{relative_error(sol.obj, ANYMAL_OPTIMUM):.1e}")
    print(f"steps/s: reference {rate:.0f}, lava-optimization {lava_rate:.0f} → {ratio(rate, lava_rate)}")
    lavaopt_sizes(args)


def lava_pipg_rate(Q, p, A, k, short: int, long: int) -> tuple[float, float]:
    """lava-optimization's PIPG solver (CPU, the ANYmal tutorial's hyperparameters) on
    min ½xᵀQx + pᵀx s.t. Ax = k: (steps per second between a short and a long run, so
    that its set-up cancels; set-up seconds of the short run)."""
    from _data import pipg_solver_config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lava.lib.optimization.problems.problems import QP as LavaQP
        from lava.lib.optimization.solvers.generic.solver import OptimizationSolver
        problem = LavaQP(hessian=Q, linear_offset=p, equality_constraints_weights=A,
                         equality_constraints_biases=k)
        problem.precondition_problem(iterations=5, type="ruiz")
        seconds = {}
        for timeout in (short, long) * LAVAOPT_REPEATS:
            started = time.perf_counter()
            OptimizationSolver(problem=problem).solve(config=pipg_solver_config(timeout))
            seconds[timeout] = min(seconds.get(timeout, math.inf), time.perf_counter() - started)
    return (long - short) / (seconds[long] - seconds[short]), seconds[short]


#: (short, long) lava-optimization runs of ``lavaopt_sizes``: its set-up (0.2–2.6 s) varies
#: by tenths of a second from run to run, so the long run must be seconds longer (its rate
#: is ≈ 1,500–2,300 steps/s at every size), and each is timed at its best of a few runs.
LAVAOPT_STEPS = (100, 4100)
LAVAOPT_REPEATS = 3


def lavaopt_sizes(args):
    """Steps per second of lava-optimization's solver and of the reference on the same
    equality-constrained MPC QPs (the sims section's QP without its inequalities and
    bounds: PIPG's problem class), at the sims section's three sizes."""
    import scipy.sparse as sp
    from bench_brian2 import horizon_for, mpc_qp
    import snn_compile as sc
    from snn_compile import QP
    from snn_compile.backends.reference import ReferenceBackend

    print("\nsteps/s on the same equality-constrained MPC QP (lava-optimization takes dense "
          "matrices; its neurons: one per variable and per equality)")
    print(f"{'≈size':>7} {'n':>6} {'m_eq':>6} | {'ref neurons':>11} {'ref steps/s':>11} | "
          f"{'lava-opt steps/s':>16} {'its set-up s':>12} | ratio")
    for i, size in enumerate(int(s) for s in args.sizes.split(",")):
        full = mpc_qp(horizon_for(size))
        qp = QP(P=full.P, q=full.q, A=full.A, b=full.b, name=f"{full.name}_eq", check_psd=False)
        net = sc.compile(qp).net
        ReferenceBackend().run(net, 2, record_every=0)
        reference = ReferenceBackend().run(net, SIM_STEPS["reference-numba"][min(i, 2)],
                                           record_every=0).steps_per_second
        dense = lambda M: M.toarray() if sp.issparse(M) else np.asarray(M)    # noqa: E731
        try:
            lava, setup = lava_pipg_rate(dense(qp.P), qp.q, dense(qp.A), qp.b, *LAVAOPT_STEPS)
        except Exception as error:                          # report and go on
            print(f"{size:7d} {qp.n:6d} {qp.m_eq:6d} | {net.neuron_count:11d} {reference:11.0f} | "
                  f"failed: {type(error).__name__}: {error}")
            continue
        print(f"{size:7d} {qp.n:6d} {qp.m_eq:6d} | {net.neuron_count:11d} {reference:11.0f} | "
              f"{lava:16.0f} {setup:12.1f} | {ratio(reference, lava)}", flush=True)


# ---------------------------------------------------------------- 3. simulators
def section_sims(args):
    from _perf_sims import lava_rate, network, reference_rate, target_rate
    sizes = [int(s) for s in args.sizes.split(",")]
    print("\n== 3. network steps per second on the same primal-dual IR (stepping only; setup apart) ==")
    columns = ["reference-numba", "reference-numpy", "brian2-numpy"]
    columns += [] if args.skip_cython else ["brian2-cython"]
    columns += ["nengo", "lava"]
    print(f"{'neurons':>8} {'synapses':>9} | " + " | ".join(f"{c:>15}" for c in columns))
    results = {}
    lava_what = None
    for i, size in enumerate(sizes):
        net = network(size)
        row = {}
        for column in columns:
            steps = SIM_STEPS[column][min(i, 2)]
            try:
                if column.startswith("reference"):
                    row[column] = reference_rate(net, steps, column.split("-")[1])
                elif column.startswith("brian2"):
                    row[column] = target_rate("brian2", net, steps, codegen=column.split("-")[1])
                elif column == "nengo":
                    row[column] = target_rate("nengo", net, steps)
                else:
                    row[column] = lava_rate(net, steps)
                    lava_what = row[column]["what"]
            except Exception as error:                      # report and keep measuring the others
                row[column] = {"steps_per_s": None, "error": f"{type(error).__name__}: {error}"}
        results[size] = row
        print(f"{net.neuron_count:8d} {net.synapse_count:9d} | "
              + " | ".join(f"{fmt(row[c]['steps_per_s']):>15}" for c in columns), flush=True)
    print("setup seconds (build / code generation / compile, excluded above):")
    for size, row in results.items():
        print(f"  ≈{size}: " + ", ".join(f"{c} {fmt(row[c].get('setup_s'), '.1f')}" for c in columns))
    print("reference (numba) against each, same size:")
    for size, row in results.items():
        ref = row["reference-numba"]["steps_per_s"]
        print(f"  ≈{size}: " + ", ".join(f"{c} {ratio(ref, row[c]['steps_per_s'])}" for c in columns[1:]))
    errors = [(size, c, row[c]["error"]) for size, row in results.items() for c in columns if "error" in row[c]]
    for size, column, error in errors:
        print(f"  ({column} at ≈{size} failed: {error})")
    if lava_what:
        print(f"lava column: {lava_what}")


# ---------------------------------------------------------------- 4. compile
def section_compile(args):
    sizes = [int(s) for s in args.compile_sizes.split(",")]
    print("\n== 4. compile(sparse MPC QP, target='reference', hardware='loihi2'): one process per size ==")
    previous = None
    for n in sizes:
        done = subprocess.run([sys.executable, str(HERE / "_perf_compile.py"), str(n)], capture_output=True,
                              text=True, timeout=3600)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode or not lines:
            print(f"n={n}: failed: {done.stderr.strip()[-800:]}")
            continue
        r = json.loads(lines[-1])
        stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages_s"].items())
        grow = ""
        if previous is not None:
            above, before = (max(1.0, x["peak_rss_mb"] - x["baseline_rss_mb"]) for x in (r, previous))
            grow = (f"; ×{r['compile_s'] / previous['compile_s']:.1f} time, ×{above / before:.1f} "
                    f"memory above baseline, for ×{r['nnz'] / previous['nnz']:.1f} nonzeros")
        print(f"n={r['n']:>7} (QP nnz {r['nnz']}, {r['neurons']} neurons, {r['synapses']} synapses): "
              f"compile {r['compile_s']:.2f} s, emit {r['emit_s']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(baseline {r['baseline_rss_mb']:.0f}){grow}", flush=True)
        print(f"          stages (s): {stages}")
        previous = r


# ---------------------------------------------------------------- 5. bandwidth
def section_bandwidth(args):
    from _data import sparse_mpc_qp
    from _perf_sims import bytes_per_step, copy_bandwidth, network, reference_rate
    from snn_compile.lower import lower
    print("\n== 5. memory bandwidth of the reference step (float64) ==")
    machine = copy_bandwidth()
    print(f"numpy copy of 512 MB (read + write): {machine / 1e9:.1f} GB/s")
    nets = [(f"≈{size} neurons", network(size), steps) for size, steps in ((3000, 2000), (30000, 300))]
    nets.append(("MPC n=1e5 (largest)", lower(sparse_mpc_qp(100_000), "primal-dual"), 40))
    print(f"{'network':20} {'neurons':>8} {'synapses':>9} {'MB/step':>8} | {'kernel':>6} {'steps/s':>8} "
          f"{'GB/s':>6} {'of copy':>7}")
    for label, net, steps in nets:
        moved = bytes_per_step(net)
        for kernel in ("numba", "numpy"):
            rate = reference_rate(net, steps if kernel == "numba" else max(10, steps // 2), kernel)["steps_per_s"]
            print(f"{label:20} {net.neuron_count:8d} {net.synapse_count:9d} {moved / 1e6:8.2f} | {kernel:>6} "
                  f"{rate:8.0f} {moved * rate / 1e9:6.1f} {100 * moved * rate / machine:6.0f}%", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--snnopt-iterations", type=int, default=20_000)
    parser.add_argument("--reference-steps", type=int, default=100_000)
    parser.add_argument("--problems", default=None, help="Maros–Meszaros names (default: all shared)")
    parser.add_argument("--sizes", default="300,3000,30000")
    parser.add_argument("--compile-sizes", default="1000,10000,100000")
    parser.add_argument("--skip-cython", action="store_true", help="leave out brian2's cython target")
    args = parser.parse_args()
    for section in args.sections.split(","):
        if section not in SECTIONS:
            raise SystemExit(f"unknown section {section!r}; known: {', '.join(SECTIONS)}")
        globals()[f"section_{section}"](args)


if __name__ == "__main__":
    main()
