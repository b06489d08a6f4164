"""Solution quality lost to fixed-point quantization: float64 against chip integers.

    .venv/bin/python benchmarks/bench_quantization.py [--steps 20000] [--problems HS21,QPTEST]
                                                      [--chips loihi2,loihi1,spinnaker1]
                                                      [--skip-anymal] [--skip-maros] [--workers 2]

1. The ANYmal QP on Loihi 2 (primal-dual): float and fixed-point residuals side by
   side, with one 8-bit weight slice (lava-optimization's format) and with the
   default slices, then the quantization report.
2. The 22 Maros–Meszaros problems on loihi2 (primal-dual), loihi1 and spinnaker1
   (lif): per problem the float and fixed residuals on the original problem, the
   worst relative weight and parameter errors, clipped values and saturations;
   then how many problems reach all three residuals below 1e-2.
Every run is the reference backend (the fixed-point one executes docs/ir.md §5).
"""
from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

from _data import ANYMAL_OPTIMUM, load_anymal, load_maros_meszaros, maros_meszaros_names

CHIP_FAMILY = {"loihi2": "primal-dual", "loihi1": "lif", "spinnaker1": "lif"}
SUCCESS = 1e-2


def family_available(family: str) -> str:
    """'' when the family's lowering imports, else why not."""
    from snn_compile.errors import InputError
    from snn_compile.lower import family_lowering
    try:
        family_lowering(family)
    except (InputError, ImportError) as exc:
        return str(exc)
    return ""


def worst(report: dict, kind: str) -> float:
    """Largest relative error over the report's tensors of one kind ('weights' or parameters)."""
    rows = [t for t in report["tensors"] if (t["tensor"].endswith(" weights") == (kind == "weights"))
            and not t["tensor"].endswith(("v_init", "v_min", "v_max"))]
    return max((t["relative_error"] for t in rows), default=0.0)


def run_problem(args) -> list[dict]:
    """One problem, one family: one float run, then one fixed-point run per chip."""
    name, family, chips, steps = args
    from snn_compile.backends.reference_fixed import run_fixed
    from snn_compile.decode import decode_solution
    from snn_compile.lower import lower
    from snn_compile.passes.quantize import calibrate, quantize, solution_quality
    qp = load_maros_meszaros(name)
    rows = []
    try:
        net = lower(qp, family)
        calibration, float_trace = calibrate(net, steps)
        float_quality = solution_quality(qp, decode_solution(net, float_trace, qp), float_trace)
    except Exception as exc:  # a family that cannot lower a problem is a row, not a crash
        return [dict(name=name, chip=chip, error=f"{type(exc).__name__}: {exc}"[:90]) for chip in chips]
    for chip in chips:
        started = time.perf_counter()
        try:
            qnet, report = quantize(net, chip, calibration=calibration, calibration_steps=steps,
                                    overflow_check_steps=0)
            trace = run_fixed(qnet, steps, record_every=0)
            report.set_overflow(trace)
            fixed_quality = solution_quality(qp, decode_solution(qnet, trace, qp), trace)
        except Exception as exc:
            rows.append(dict(name=name, chip=chip, error=f"{type(exc).__name__}: {exc}"[:90]))
            continue
        doc = report.to_dict()
        rows.append(dict(name=name, chip=chip, n=qp.n, m=qp.m_ineq + qp.m_eq, float=float_quality,
                         fixed=fixed_quality, weight_error=worst(doc, "weights"),
                         parameter_error=worst(doc, "parameters"),
                         clipped=sum(t["clipped"] for t in doc["tensors"]
                                     if not t["tensor"].endswith(("v_min", "v_max"))),
                         saturated=report.saturated,
                         synapse_factor=doc["synapses"]["chip"] / max(1, doc["synapses"]["float"]),
                         seconds=time.perf_counter() - started))
    return rows


def residuals(q: dict) -> tuple:
    return tuple(float("inf") if q[k] is None else q[k] for k in ("primal_residual", "dual_residual", "duality_gap"))


def anymal(steps: int):
    from snn_compile.passes.quantize import compare_float_fixed, format_comparison
    qp = load_anymal()
    print(f"== ANYmal QP (264 variables, 144 equalities) on Loihi 2, primal-dual, {steps} steps ==")
    print("lava-optimization's own Loihi 2 run: ‖Ax − k‖ = 48.0 on the preconditioned constraints")
    for slices in (1, 3):
        result = compare_float_fixed(qp, "loihi2", "primal-dual", steps, weight_slices=slices)
        label = "one 8-bit weight slice (lava-optimization's format)" if slices == 1 else \
            f"{slices} weight slices (default)"
        print(f"\n-- {label}")
        print(format_comparison(result))
        fixed = result["fixed"]
        print(f"relative objective error: float {abs(result['float']['objective'] - ANYMAL_OPTIMUM) / abs(ANYMAL_OPTIMUM):.2e}, "
              f"fixed {abs(fixed['objective'] - ANYMAL_OPTIMUM) / abs(ANYMAL_OPTIMUM):.2e}")
    print("\n" + result["report_text"])


def maros_meszaros(names, chips, steps: int, workers: int):
    families = {}
    for chip in chips:
        families.setdefault(CHIP_FAMILY[chip], []).append(chip)
    for family in list(families):
        why = family_available(family)
        if why:
            print(f"\nskipping {', '.join(families.pop(family))}: family '{family}' unavailable ({why})")
    jobs = [(name, family, fam_chips, steps) for family, fam_chips in families.items() for name in names]
    with ProcessPoolExecutor(workers) as pool:
        results = [row for rows in pool.map(run_problem, jobs) for row in rows]
    summary = []
    for chip in [c for fam_chips in families.values() for c in fam_chips]:
        rows = [r for r in results if r["chip"] == chip]
        print(f"\n== {chip}, family {CHIP_FAMILY[chip]}, {steps} steps: float64 | fixed point "
              f"(residuals on the original problem) ==")
        print(f"{'problem':10} {'n':>4} {'m':>4} | {'r_prim':>8} {'r_dual':>8} {'gap':>8} | {'r_prim':>8} "
              f"{'r_dual':>8} {'gap':>8} | {'w.err':>7} {'p.err':>7} {'clip':>4} {'sat':>3} {'syn×':>4} {'s':>5}")
        ok_float = ok_fixed = 0
        for r in rows:
            if "error" in r:
                print(f"{r['name']:10} {r['error']}")
                continue
            f, q = residuals(r["float"]), residuals(r["fixed"])
            ok_float += max(f) < SUCCESS
            ok_fixed += max(q) < SUCCESS
            print(f"{r['name']:10} {r['n']:4d} {r['m']:4d} | {f[0]:8.1e} {f[1]:8.1e} {f[2]:8.1e} | "
                  f"{q[0]:8.1e} {q[1]:8.1e} {q[2]:8.1e} | {r['weight_error']:7.1e} {r['parameter_error']:7.1e} "
                  f"{r['clipped']:4d} {'yes' if r['saturated'] else 'no':>3} {r['synapse_factor']:4.1f} "
                  f"{r['seconds']:5.1f}")
        line = (f"-> {chip} ({CHIP_FAMILY[chip]}): all three residuals < {SUCCESS:g} on {ok_float}/{len(rows)} "
                f"problems in float64, {ok_fixed}/{len(rows)} in fixed point")
        summary.append(line)
        print(line)
    print("\nw.err: largest relative weight error (max |error| / max |W| of a projection); p.err: the same for "
          "biases, thresholds, decays and reset values; clip: values saturated by the pass (clamp bounds "
          "beyond the state range not counted); sat: a state "
          "or input saturated in the run (not counting what a clamp hid); syn×: chip synapses per float synapse")
    print("\n" + "\n".join(summary))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="steps per run (float and fixed)")
    parser.add_argument("--problems", default=None, help="comma-separated Maros–Meszaros names")
    parser.add_argument("--chips", default=",".join(CHIP_FAMILY))
    parser.add_argument("--skip-anymal", action="store_true")
    parser.add_argument("--skip-maros", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    if not args.skip_anymal:
        anymal(args.steps)
    if not args.skip_maros:
        names = args.problems.split(",") if args.problems else maros_meszaros_names()
        maros_meszaros(names, args.chips.split(","), args.steps, args.workers)
    print(f"\n(benchmark wall time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
