"""One compile-scaling measurement, run in its own process so peak memory is its own.

    .venv/bin/python benchmarks/_perf_compile.py N [--hardware loihi2]

Builds ``_data.sparse_mpc_qp(N)``, runs ``snn_compile.compile(qp, target="reference",
hardware=...)`` once and prints one JSON line: the wall time of the whole call, the
time spent inside each of its stages (lowering with preconditioning, the quantize
pass's float calibration runs and its integer overflow-check run, mapping; measured
by wrapping those functions, which changes nothing they compute), the time to write
the compiled IR (emit), and the process's peak resident memory (VmHWM)
after the imports (numba's kernels included) and at the end.
"""
from __future__ import annotations

import argparse
import functools
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _peak_mb() -> float:
    """Peak resident memory of this process. Linux: VmHWM, which exec resets; ru_maxrss
    would also count the parent's peak, inherited across fork + exec."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024      # KiB on Linux


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int)
    parser.add_argument("--hardware", default="loihi2")
    args = parser.parse_args()

    import numpy as np
    import scipy.sparse as sp

    import snn_compile as sc
    import snn_compile.backends.reference_fixed as reference_fixed
    import snn_compile.lower as lower_module
    import snn_compile.passes.mapping as mapping
    import snn_compile.passes.quantize as quantize
    from _data import sparse_mpc_qp

    stages: dict[str, float] = {}

    def timed(module, name, stage):
        original = getattr(module, name)

        @functools.wraps(original)
        def wrapper(*a, **kw):
            started = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                stages[stage] = stages.get(stage, 0.0) + time.perf_counter() - started
        setattr(module, name, wrapper)

    timed(lower_module, "lower", "lower")                  # api.compile imports these at call time
    timed(quantize, "calibrate", "quantize: float calibration runs")
    timed(reference_fixed, "run_fixed", "quantize: integer overflow check")
    timed(mapping, "map_network", "map")

    try:   # the float calibration runs load numba's kernels: count that as baseline, not data
        import snn_compile.backends._kernels  # noqa: F401
    except ImportError:
        pass
    baseline = _peak_mb()
    started = time.perf_counter()
    qp = sparse_mpc_qp(args.n)
    built = time.perf_counter()
    compiled = sc.compile(qp, target="reference", hardware=args.hardware)
    done = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        compiled.save(Path(folder) / "ir")
    emitted = time.perf_counter()
    print(json.dumps({
        "n": qp.n, "rows": qp.m_ineq + qp.m_eq,
        "nnz": int(sum(M.nnz if sp.issparse(M) else np.count_nonzero(M) for M in (qp.P, qp.A, qp.G))),
        "neurons": compiled.net.neuron_count, "synapses": compiled.net.synapse_count,
        "build_qp_s": built - started, "compile_s": done - built, "emit_s": emitted - done,
        "stages_s": stages,
        "peak_rss_mb": _peak_mb(), "baseline_rss_mb": baseline,
        "quantized": compiled.net.fixed_point is not None,
    }))


if __name__ == "__main__":
    main()
