"""Steps per second of the brian2 target (numpy and cython code generation) next to
the reference backend, on the same primal-dual IR of a sparse MPC-like QP at three
sizes (≈300, ≈3000, ≈30000 neurons).

    .venv/bin/python benchmarks/bench_brian2.py [--sizes 300,3000,30000] [--steps 2000,500,100]
                                                [--codegen numpy,cython] [--cache-dir DIR]

The QP is a linear MPC problem: states x_k ∈ R^4 and inputs u_k ∈ R^2 over a
horizon T with dynamics x_{k+1} = A x_k + B u_k (equalities), one coupled
state inequality per stage and box bounds on everything; T is chosen so that the
network has about the requested number of neurons (``_data.sparse_mpc_qp`` has no
inequalities, so its dual neurons would never spike). "setup" is Brian2's code
generation (and, for cython, compilation or cache loading) before the first step;
steps/s counts the stepping only. The first cython run builds its extensions
into the persistent cache (several minutes on a loaded 2-core machine; later
runs load them in seconds).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp

NX, NU = 4, 2


def mpc_qp(horizon: int, seed: int = 0):
    """Sparse linear MPC: min Σ x_kᵀQx_k + u_kᵀRu_k s.t. dynamics, x_0 fixed, c_kᵀx_k ≤ d, boxes."""
    from snn_compile import QP
    rng = np.random.default_rng(seed)
    A = np.eye(NX) + 0.1 * rng.standard_normal((NX, NX))
    A /= max(1.0, np.max(np.abs(np.linalg.eigvals(A))) / 0.98)       # stable open loop
    B = rng.standard_normal((NX, NU))
    n_x, n_u = (horizon + 1) * NX, horizon * NU
    x_index = lambda k: np.arange(k * NX, (k + 1) * NX)              # noqa: E731
    u_index = lambda k: n_x + np.arange(k * NU, (k + 1) * NU)        # noqa: E731
    rows, cols, vals = [], [], []

    def put(r0, cidx, block):
        for i in range(block.shape[0]):
            rows.extend([r0 + i] * len(cidx))
            cols.extend(cidx)
            vals.extend(block[i])

    put(0, x_index(0), np.eye(NX))                                    # x_0 = x_init
    for k in range(horizon):                                          # x_{k+1} − A x_k − B u_k = 0
        r0 = (k + 1) * NX
        put(r0, x_index(k + 1), np.eye(NX))
        put(r0, x_index(k), -A)
        put(r0, u_index(k), -B)
    n = n_x + n_u
    Aeq = sp.csr_matrix((vals, (rows, cols)), shape=((horizon + 1) * NX, n))
    beq = np.zeros(Aeq.shape[0])
    beq[:NX] = rng.uniform(-2.0, 2.0, NX)
    c = rng.standard_normal(NX)
    G = sp.csr_matrix((np.tile(c, horizon + 1), (np.repeat(np.arange(horizon + 1), NX), np.arange(n_x))),
                      shape=(horizon + 1, n))
    h = np.full(horizon + 1, 0.5)
    P = sp.diags(np.concatenate([np.full(n_x, 1.0), np.full(n_u, 0.1)])).tocsr()
    bound = np.concatenate([np.full(n_x, 5.0), np.full(n_u, 1.0)])
    return QP(P=P, q=np.zeros(n), G=G, h=h, A=Aeq, b=beq, lb=-bound, ub=bound,
              name=f"mpc_T{horizon}", check_psd=False)


def horizon_for(neurons: int) -> int:
    # primal-dual neurons = 2(n + m) = 2((T+1)(NX + NX + 1) + T·NU)
    return max(1, round((neurons / 2 - (2 * NX + 1)) / (2 * NX + 1 + NU)))


def main():
    from snn_compile.backends.brian import Brian2Backend
    from snn_compile.backends.reference import ReferenceBackend
    from snn_compile.lower import lower

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="300,3000,30000")
    parser.add_argument("--steps", default="2000,500,100", help="steps per size")
    parser.add_argument("--codegen", default="numpy,cython")
    parser.add_argument("--cache-dir", default=None, help="Cython cache (default: the backend's)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    steps_per_size = [int(s) for s in args.steps.split(",")]
    codegens = args.codegen.split(",")

    header = f"{'neurons':>8} {'synapses':>9} {'steps':>6} | {'reference':>10}"
    header += "".join(f" | {'brian2-' + cg + ' steps/s':>21} {'setup s':>8}" for cg in codegens)
    print(header + " | max |Δstate|")
    print("-" * len(header) + "-" * 14)
    for size, steps in zip(sizes, steps_per_size):
        net = lower(mpc_qp(horizon_for(size)), "primal-dual")
        ref = ReferenceBackend().run(net, steps, record_every=0)
        row = f"{net.neuron_count:8d} {net.synapse_count:9d} {steps:6d} | {ref.steps_per_second:10.0f}"
        worst = 0.0
        for codegen in codegens:
            started = time.perf_counter()
            trace = Brian2Backend().run(net, steps, record_every=0, codegen=codegen,
                                        **({"cache_dir": args.cache_dir} if args.cache_dir else {}))
            setup = time.perf_counter() - started - trace.wall_time
            row += f" | {trace.steps_per_second:21.0f} {setup:8.1f}"
            worst = max(worst, max(float(np.max(np.abs(trace.final_state[k] - v), initial=0.0))
                                   for k, v in ref.final_state.items()))
        print(row + f" | {worst:.1e}", flush=True)


if __name__ == "__main__":
    main()
