"""Targets ``loihi`` (fixed_pt Lava models) and ``lava`` (floating_pt) against the reference
backend, and the ANYmal QP against lava-optimization 0.5.0's own QP solver.

    .venv/bin/python benchmarks/bench_lava.py [--budgets 300 1000] [--no-lava-optimization]

1. Agreement: the quantized network (loihi2) on Lava vs the fixed-point reference — integer
   states after every step, spike events, spike counts (bit-identical or not); the float
   network on Lava vs the float reference — largest relative state difference over all steps.
2. ANYmal (264 variables, 144 equalities): ‖Ax − k‖ and the objective error against the
   Clarabel optimum for each step budget, next to lava-optimization's PIPGeq solver
   (neuron_model "qp-lp_pipg", 5 Ruiz iterations, its unit test's hyperparameters, 2 Lava time
   steps per iteration) run in this process on the CPU, with the same number of iterations and
   with the same number of Lava time steps. Wall time per Lava time step for both; ours counts
   the Lava run only (``lava_run_s``) and separately the whole call (start-up, host controls).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from _data import ANYMAL_OPTIMUM, load_anymal, relative_error
from snn_compile.synthetic import random_qp


def identical_fixed(ref, lava) -> tuple[bool, bool, bool]:
    states = all(np.array_equal(ref.samples[n][1], lava.samples[n][1]) for n in ref.samples) and all(
        np.array_equal(ref.meta["fixed_point"]["integer_state"][n], lava.meta["fixed_point"]["integer_state"][n])
        for n in ref.final_state)
    events = all(np.array_equal(a, b) for n in ref.events for a, b in zip(ref.events[n], lava.events[n]))
    counts = all(np.array_equal(ref.spike_counts[n], lava.spike_counts[n]) for n in ref.spike_counts)
    return states, events, counts


def max_relative_difference(ref, lava) -> float:
    worst = 0.0
    for name, (_, a) in ref.samples.items():
        b = lava.samples[name][1]
        diff = np.abs(a - b)
        nonzero = diff > 0
        if nonzero.any():
            worst = max(worst, float(np.max(diff[nonzero] / np.abs(a[nonzero]))))
    return worst


def agreement(problems: dict, steps: int):
    from snn_compile.backends.loihi import LavaBackend, LoihiBackend
    from snn_compile.backends.reference import ReferenceBackend
    from snn_compile.hardware import load_hardware
    from snn_compile.lower import lower
    from snn_compile.passes.quantize import quantize

    print(f"1. Agreement with the reference backend, {steps} steps, states compared after every step")
    print(f"{'problem':>10} {'neurons':>7} {'sub':>3} | {'fixed: states':>13} {'events':>9} {'counts':>9} "
          f"{'spikes':>6} {'ms/Lava step':>12} | {'float: max rel. diff':>20} {'ms/Lava step':>12}")
    for name, qp in problems.items():
        net = lower(qp, "primal-dual")
        qnet, _ = quantize(net, load_hardware("loihi2"))
        ref = ReferenceBackend().run(qnet, steps, record_every=1)
        fixed = LoihiBackend().run(qnet, steps, record_every=1)
        states, events, counts = identical_fixed(ref, fixed)
        ref_float = ReferenceBackend().run(net, steps, record_every=1)
        flt = LavaBackend().run(net, steps, record_every=1)
        lava = fixed.meta["lava"]
        per_step = lambda t: 1e3 * t.meta["lava"]["lava_run_s"] / t.meta["lava"]["lava_steps"]  # noqa: E731
        spikes = sum(int(fixed.spike_counts[p.name].sum()) for p in qnet.populations if p.role == "constraint")
        yes = lambda flag: "identical" if flag else "DIFFER"  # noqa: E731
        print(f"{name:>10} {net.neuron_count:7d} {lava['substeps']:3d} | {yes(states):>13} {yes(events):>9} "
              f"{yes(counts):>9} {spikes:6d} {per_step(fixed):12.3f} | "
              f"{max_relative_difference(ref_float, flt):20.2e} {per_step(flt):12.3f}")


def ours_on_anymal(qp, budget: int, target: str) -> dict:
    """What ``snn-compile anymal --target loihi --hardware loihi2`` (or ``--target lava``) runs."""
    from snn_compile.backends.loihi import LavaBackend, LoihiBackend
    from snn_compile.decode import decode_solution
    from snn_compile.hardware import load_hardware
    from snn_compile.lower import lower
    from snn_compile.passes.quantize import quantize

    net = lower(qp, "primal-dual")
    if target == "loihi":
        net, _ = quantize(net, load_hardware("loihi2"))
    backend = LoihiBackend() if target == "loihi" else LavaBackend()
    started = time.perf_counter()
    trace = backend.run(net, budget, record_every=0)
    total = time.perf_counter() - started
    x = decode_solution(net, trace, qp).x
    lava = trace.meta["lava"]
    return {"x": x, "lava_steps": lava["lava_steps"], "iterations": budget,
            "s_per_step": lava["lava_run_s"] / lava["lava_steps"], "s_per_step_total": total / lava["lava_steps"]}


def lava_optimization_on_anymal(qp, lava_steps: int) -> dict:
    """lava-optimization 0.5.0's PIPGeq QP solver on the CPU (float; its CPU models have no fixed point)."""
    from lava.lib.optimization.problems.problems import QP as LavaQP
    from lava.lib.optimization.solvers.generic.solver import OptimizationSolver
    from _data import pipg_solver_config

    A, k = qp.A.toarray() if hasattr(qp.A, "toarray") else qp.A, qp.b
    Q = qp.P.toarray() if hasattr(qp.P, "toarray") else qp.P
    problem = LavaQP(hessian=Q, linear_offset=qp.q, equality_constraints_weights=A,
                     equality_constraints_biases=k)
    problem.precondition_problem(iterations=5, type="ruiz")
    solver = OptimizationSolver(problem=problem)
    np.random.seed(2)
    config = pipg_solver_config(lava_steps)
    started = time.perf_counter()
    report = solver.solve(config=config)
    total = time.perf_counter() - started
    x = problem.postconditioner @ report.best_state
    return {"x": x, "lava_steps": lava_steps, "iterations": lava_steps // 2, "s_per_step": None,
            "s_per_step_total": total / lava_steps}


def anymal(budgets, with_lava_optimization: bool):
    qp = load_anymal()
    A = qp.A.toarray() if hasattr(qp.A, "toarray") else qp.A
    print(f"\n2. ANYmal QP (n={qp.n}, {qp.m_eq} equalities), f* = {ANYMAL_OPTIMUM}")
    print(f"{'solver':>44} {'iter.':>6} {'Lava steps':>10} {'|Ax-k|inf':>10} {'|Ax-k|2':>10} "
          f"{'rel.obj.err':>11} {'ms/step (Lava)':>14} {'ms/step (all)':>13}")

    def row(label, result):
        x = result["x"]
        violation = A @ x - qp.b
        obj = 0.5 * x @ (qp.P @ x) + qp.q @ x
        lava_ms = "" if result["s_per_step"] is None else f"{1e3 * result['s_per_step']:.3f}"
        print(f"{label:>44} {result['iterations']:6d} {result['lava_steps']:10d} {np.max(np.abs(violation)):10.2e} "
              f"{np.linalg.norm(violation):10.2e} {relative_error(obj, ANYMAL_OPTIMUM):11.2e} {lava_ms:>14} "
              f"{1e3 * result['s_per_step_total']:13.3f}")
        return float(np.max(np.abs(violation)))

    verdicts = []
    for budget in budgets:
        fixed = ours_on_anymal(qp, budget, "loihi")
        worst = row("snn-compile loihi (fixed_pt, loihi2)", fixed)
        verdicts.append((budget, worst))
        row("snn-compile lava (floating_pt)", ours_on_anymal(qp, budget, "lava"))
        if with_lava_optimization:
            row("lava-optimization PIPGeq, CPU float", lava_optimization_on_anymal(qp, 2 * budget))
            row("  same Lava time steps", lava_optimization_on_anymal(qp, fixed["lava_steps"]))
    if with_lava_optimization:
        print("lava-optimization fixed point: not run — its CPU process models for the PIPGeq neurons "
              "(PyProjGradPIPGeqModel, PyPIneurPIPGeqModel) compute in float; its bit-accurate models "
              "(NcL2ModelPG/PI) need lava-loihi and a Loihi 2 system.")
    for budget, worst in verdicts:
        print(f"loihi target after {budget} steps: |Ax-k|inf = {worst:.3g} "
              f"({'meets' if worst < 0.1 else 'MISSES'} the 0.1 goal)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[300, 1000],
                        help="network steps (PIPG iterations for lava-optimization)")
    parser.add_argument("--agreement-steps", type=int, default=300)
    parser.add_argument("--no-lava-optimization", action="store_true")
    args = parser.parse_args()
    import snn_compile as sc
    from _data import REPO
    agreement({"hand2": sc.read_problem(REPO / "examples" / "hand2" / "problem.yaml"), "random20": random_qp(),
               "anymal": load_anymal()}, args.agreement_steps)
    anymal(args.budgets, not args.no_lava_optimization)


if __name__ == "__main__":
    main()
