"""Network steps per second of every simulator on the same IR, and the reference step's
memory bandwidth.

The IR is ``bench_brian2.mpc_qp`` lowered to the ``primal-dual`` family (4
populations, 9 projections, formula gains, the AdaptiveRestart rule) at a requested
neuron count. Rates count stepping only: each target's build/compile time is
reported apart ("setup").

Lava: the ``lava`` target (registered, or ``backends/loihi.py`` before it is) runs the
IR itself (``Loihi2SimCfg`` inside the target). Without one, ``lava-minimal`` times the nearest graph Lava has
for it — one ``LIF`` process per population and one ``Sparse`` process per projection
(same neurons, same weight matrices), floating point, ``Loihi2SimCfg`` — in a
subprocess (``python _perf_sims.py lava-minimal NEURONS STEPS``); it has no gains,
delays or host rules, so it is a *lower bound* on what the full network costs there.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def network(neurons: int):
    from bench_brian2 import horizon_for, mpc_qp
    from snn_compile.lower import lower
    return lower(mpc_qp(horizon_for(neurons)), "primal-dual")


def reference_rate(net, steps: int, kernel: str) -> dict:
    from snn_compile.backends.reference import ReferenceBackend
    ReferenceBackend().run(net, 2, record_every=0, kernel=kernel)      # load numba's cache once
    started = time.perf_counter()
    trace = ReferenceBackend().run(net, steps, record_every=0, kernel=kernel)
    return {"steps_per_s": trace.steps_per_second, "steps": steps,
            "setup_s": time.perf_counter() - started - trace.wall_time}


def target_rate(target: str, net, steps: int, **options) -> dict:
    from snn_compile.backends.registry import get_backend
    started = time.perf_counter()
    trace = get_backend(target).run(net, steps, record_every=0, **options)
    return {"steps_per_s": trace.steps_per_second, "steps": steps,
            "setup_s": time.perf_counter() - started - trace.wall_time}


def _lava_target():
    """The ``lava`` target's backend: registered, or (not yet registered) the class named
    ``lava`` in ``backends/loihi.py``; None without either."""
    import importlib
    from snn_compile.backends.base import Backend
    from snn_compile.backends.registry import get_backend, target_names
    if "lava" in target_names():
        return get_backend("lava")
    try:
        module = importlib.import_module("snn_compile.backends.loihi")
    except ImportError:
        return None
    found = [c for c in vars(module).values()
             if isinstance(c, type) and issubclass(c, Backend) and getattr(c, "name", None) == "lava"]
    return found[0]() if found else None


def lava_rate(net, steps: int, timeout: float = 600) -> dict:
    """The ``lava`` target if present, else the minimal Lava graph (see the module doc)."""
    backend = _lava_target()
    if backend is not None:
        started = time.perf_counter()
        trace = backend.run(net, steps, record_every=0)
        return {"steps_per_s": trace.steps_per_second, "steps": steps,
                "setup_s": time.perf_counter() - started - trace.wall_time,
                "what": "lava target (backends/loihi.py: Loihi2SimCfg, floating_pt, host rules between chunks)"}
    command = [sys.executable, str(Path(__file__).resolve()), "lava-minimal",
               str(net.neuron_count), str(steps)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"minimal Lava graph failed: {done.stderr.strip()[-500:]}")
    out = json.loads(lines[-1])
    out["what"] = "minimal Lava graph: LIF per population + Sparse per projection (no lava target)"
    return out


def _lava_minimal(neurons: int, steps: int):
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.lif.process import LIF
    from lava.proc.sparse.process import Sparse
    net = network(neurons)
    lifs = {p.name: LIF(shape=(p.size,), du=0.0, dv=0.0, bias_mant=np.full(p.size, 0.01), vth=1.0)
            for p in net.populations}
    for proj in net.projections:
        synapses = Sparse(weights=sp.csr_matrix(proj.weights))
        lifs[proj.source].s_out.connect(synapses.s_in)
        synapses.a_out.connect(lifs[proj.target].a_in)
    first = lifs[net.populations[0].name]
    config = Loihi2SimCfg(select_tag="floating_pt")
    started = time.perf_counter()
    first.run(condition=RunSteps(num_steps=1), run_cfg=config)          # builds and starts the graph
    built = time.perf_counter()
    first.run(condition=RunSteps(num_steps=steps), run_cfg=config)
    done = time.perf_counter()
    first.stop()
    print(json.dumps({"steps_per_s": steps / (done - built), "steps": steps, "setup_s": built - started,
                      "neurons": net.neuron_count, "synapses": net.synapse_count}))


# ---------------------------------------------------------------- memory bandwidth
def copy_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """Bytes per second of ``np.copyto`` between two large float64 arrays (read + write
    counted), best of ``repeats``: the machine's single-thread streaming bandwidth."""
    a = np.ones(megabytes * 2**20 // 8)
    b = np.empty_like(a)
    best = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - started)
    return 2 * a.nbytes / best


def bytes_per_step(net, itemsize: int = 8, index_size: int = 4) -> int:
    """Bytes one reference step moves at least once: per projection matvec its CSR
    data + indices + indptr, the source emission it reads and the target input it
    reads and writes; per population update v (read, write), I (write, read), e
    (write) and the parameters its rule reads (bias, decay ≠ 1, clamps with u,
    a finite threshold)."""
    total = 0
    for proj in net.projections:
        W = sp.csr_matrix(proj.weights)
        rows, cols = W.shape
        total += W.nnz * (itemsize + index_size) + (rows + 1) * index_size
        total += cols * itemsize + 2 * rows * itemsize
    updates = {name: 0 for name in (p.name for p in net.populations)}
    for phase in net.schedule:
        for name in phase:
            updates[name] += 1
    for pop in net.populations:
        vectors = 5
        vectors += bool(np.any(pop.bias != 0)) + bool(np.any(pop.decay != 1.0))
        vectors += 3 * bool(np.any(np.isfinite(pop.v_min)) or np.any(np.isfinite(pop.v_max)))
        vectors += bool(np.any(np.isfinite(pop.threshold)))
        total += vectors * pop.size * itemsize * updates[pop.name] // len(net.schedule)
    return total


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "lava-minimal":
        _lava_minimal(int(sys.argv[2]), int(sys.argv[3]))
    else:
        raise SystemExit("usage: _perf_sims.py lava-minimal NEURONS STEPS")
