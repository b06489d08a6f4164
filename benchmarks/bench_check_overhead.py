"""The equivalence checker's own cost beyond the simulations.

For each problem, ``snn_compile.check`` runs every target, then decodes,
compares every pair (spikes, states sampled at every step, solutions) and
writes check.json and raster_overlay.png. This prints the time in backend runs
against the time in everything else, and the overhead as a fraction of the runs.

    .venv/bin/python benchmarks/bench_check_overhead.py [--steps 2000] [--targets reference,reference:float32]
                                                         [--family primal-dual] [--problems hand2,HS21,...]

Default targets: every registered and installed target plus reference:float32.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import MAROS_MESZAROS, REPO, require  # noqa: E402

#: Backends that may be written but not yet registered: run them by instance.
BACKEND_CLASSES = {
    "brian2": ("snn_compile.backends.brian", "Brian2Backend"),
    "nengo": ("snn_compile.backends.nengo_sim", "NengoBackend"),
    "nengo-loihi": ("snn_compile.backends.nengo_sim", "NengoLoihiBackend"),
    "spinnaker": ("snn_compile.backends.spinnaker", "SpiNNakerBackend"),
}


def problem_path(name: str) -> Path:
    example = REPO / "examples" / name / "problem.yaml"
    return example if example.is_file() else require(MAROS_MESZAROS / "mat" / f"{name}.mat")


def default_targets():
    from snn_compile.backends.registry import available_targets
    status = available_targets()
    names = [name for name, (ok, _) in status.items() if ok] + ["reference:float32"]
    extra = {}
    for label, (module, attr) in BACKEND_CLASSES.items():
        if label not in status and importlib.util.find_spec(module) is not None:
            cls = getattr(importlib.import_module(module), attr)
            if cls.available()[0]:
                extra[label] = cls()
    return names, extra


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--family", default="primal-dual")
    parser.add_argument("--targets", default=None, help="comma-separated (default: every installed target)")
    parser.add_argument("--problems", default="hand2,portfolio,HS21,QPTEST,HS35,CVXQP1_S,QPCBLEND")
    args = parser.parse_args(argv)
    from snn_compile.checker import check

    if args.targets:
        targets, extra = [t for t in args.targets.split(",") if t], {}
    else:
        targets, extra = default_targets()
    print(f"family {args.family}, {args.steps} steps; targets: {', '.join(targets + list(extra))}")
    header = (f"{'problem':10} {'neurons':>7} {'ran':>3} {'pairs':>5} {'runs s':>8} {'decode s':>8} "
              f"{'compare s':>9} {'plot+json s':>11} {'overhead':>8}")
    print(header)
    print("-" * len(header))
    totals = [0.0, 0.0]
    for name in args.problems.split(","):
        report = check(problem_path(name), targets, backends=extra, family=args.family, steps=args.steps)
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            report.write(folder)
            written = time.perf_counter() - started
        t = report.timing
        runs = t["runs_total"]
        own = t["decode"] + t["compare"] + written
        totals[0] += runs
        totals[1] += own
        ran = sum(r.status == "ok" for r in report.runs)
        print(f"{report.problem:10} {report.net.neuron_count:7d} {ran:3d} {len(report.pairs):5d} {runs:8.2f} "
              f"{t['decode']:8.3f} {t['compare']:9.3f} {written:11.3f} {own / runs:8.1%}"
              + ("" if report.passed else "  (a pair failed: see snn-compile check)"))
    print(f"{'total':10} {'':7} {'':3} {'':5} {totals[0]:8.2f} {'':8} {'':9} {'':11} {totals[1] / totals[0]:8.1%}")
    print("(overhead = decode + compare + plot + json, over the time in backend runs; compile and the "
          "classical solve are excluded from both)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
