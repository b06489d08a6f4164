"""What PyNN's standard cells change in a `lif` network, measured.

PyNN cells (and so SpiNNaker's and NEST's) reset to a fixed v_reset, while the
IR's `lif` family subtracts the spike size R from V (the overshoot above
threshold survives the reset); and PyNN has no one-spike-per-step rule. For
each problem and γ this prints the error of the decoded x at the last step
(‖x − x*‖/γ) and averaged over the last fifth of the run, and the constraint
spikes, for

    IR        the network as lowered (reference backend)
    hard      the IR with the reset switched to a hard reset to T − R
    no-cap    the IR without the one-spike-per-step rule
    PyNN      both changes: what a PyNN cell executes (reference backend)
    NEST      the emitted PyNN script under NEST, IF_curr_delta, 16-bit weights
    NEST exp  the same with IF_curr_exp cells (τ_syn = 0.1 ms)

with, per run, ‖x(T) − x_IR(T)‖/γ and the largest per-neuron spike-count
difference against the IR; then the mean overshoot (V' − 1 at a spike, in
units of the spike size) and two attempts to shrink the hard-reset error:
v_reset at the mean overshoot instead of 0, and a 4× smaller step (dt = γ/40
instead of the lowering's γ/10). Neither helps reliably: the overshoot comes
from lateral input arriving in one step, not from the drift (docs/backends.md,
"SpiNNaker (PyNN)", has the numbers).

    .venv/bin/python benchmarks/bench_spinnaker_reset.py [--quick]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings

import numpy as np
import scipy.sparse as sp

from _data import load_maros_meszaros
from snn_compile.backends.reference import simulate
from snn_compile.backends.spinnaker import SpiNNakerBackend
from snn_compile.classical import reference_solution
from snn_compile.decode import decode_solution
from snn_compile.lower import lower
from snn_compile.synthetic import cut_qp


def variant(net, *, hard: bool, no_cap: bool, reset_units: float = 0.0):
    """The IR with PyNN's hard reset (to T − R + reset_units·R) and/or without the spike cap."""
    pops = []
    for pop in net.populations:
        if pop.spike == "binary" and pop.reset == "subtract":
            changes = {}
            if hard:
                changes.update(reset="to_value",
                               reset_value=pop.threshold - pop.reset_value * (1.0 - reset_units))
            if no_cap:
                changes["max_spikes_per_step"] = None
            pop = dataclasses.replace(pop, **changes)
        pops.append(pop)
    return dataclasses.replace(net, populations=pops)


def measure(net, trace, qp, x_star, gamma, ir=None):
    """‖x(T) − x*‖/γ, the mean of ‖x(t) − x*‖/γ over the last fifth, constraint spikes,
    and against the IR run ``ir`` = (x(T), spike counts): ‖x(T) − x_IR(T)‖/γ and the
    largest per-neuron spike-count difference."""
    sol = decode_solution(net, trace, qp)
    term = next(t for t in net.readout.terms if t.target == "x")
    D = term.matrix.toarray() if sp.issparse(term.matrix) else np.asarray(term.matrix)
    r = trace.samples[term.population][1]
    late = r[-max(1, len(r) // 5):] @ D.T + net.readout.offsets["x"]
    counts = trace.spike_counts["cons"]
    out = {"final": np.linalg.norm(sol.x - x_star) / gamma,
           "late": np.linalg.norm(late - x_star, axis=1).mean() / gamma,
           "spikes": int(counts.sum()), "x": sol.x, "counts": counts}
    if ir is not None:
        out["dx"] = np.linalg.norm(sol.x - ir["x"]) / gamma
        out["dcount"] = int(np.abs(counts - ir["counts"]).max())
    return out


def mean_overshoot(net, steps) -> float:
    """Mean V' − 1 at a spike when cells fire independently (the IR without the spike
    cap): after a subtractive reset V' = (V − T + R)/R is exactly the overshoot."""
    free = variant(net, hard=False, no_cap=True)
    trace = simulate(free, steps, record_every=1)
    cons = free.population("cons")
    spike_steps, neurons, _ = trace.events["cons"]
    V = trace.samples["cons"][1][spike_steps, neurons]
    return float(np.mean((V - cons.threshold[neurons]) / cons.reset_value[neurons] + 1.0))


def row(label, m):
    vs_ir = f"{m['dx']:>10.2f}{m['dcount']:>9d}" if "dx" in m else f"{'':>10}{'':>9}"
    print(f"    {label:<26}{m['final']:>8.2f}{m['late']:>8.2f}{m['spikes']:>8d}{vs_ir}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one problem, one γ")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    problems = [cut_qp(2)] if args.quick else [cut_qp(1), cut_qp(2), cut_qp(3), load_maros_meszaros("HS21")]
    gammas = (0.05,) if args.quick else (0.05, 0.02)
    backend = SpiNNakerBackend()
    started = time.perf_counter()
    for qp in problems:
        ref = reference_solution(qp)
        for gamma in gammas:
            net = lower(qp, "lif", gamma=gamma)
            steps = net.provenance["params"]["steps_hint"]
            print(f"{qp.name}: n={qp.n}, rows={net.population('cons').size}, γ={gamma}, {steps} steps")
            print(f"    {'':<26}{'final/γ':>8}{'late/γ':>8}{'spikes':>8}{'Δx_IR/γ':>10}{'max|Δn|':>9}")
            ir = measure(net, simulate(net, steps, record_every=1), qp, ref.x, gamma)
            row("IR", ir)

            def run_ir(v, label, every=1, n=steps):
                row(label, measure(v, simulate(v, n, record_every=every), qp, ref.x, gamma, ir))

            run_ir(variant(net, hard=True, no_cap=False), "hard reset")
            run_ir(variant(net, hard=False, no_cap=True), "no spike cap")
            run_ir(variant(net, hard=True, no_cap=True), "PyNN semantics (both)")
            for cell in ("IF_curr_delta", "IF_curr_exp"):
                trace = backend.run(net, steps, record_every=1, cell=cell)
                row(f"NEST {cell}", measure(net, trace, qp, ref.x, gamma, ir))
            overshoot = mean_overshoot(net, steps)
            print(f"    mean overshoot at a spike (no cap): {overshoot:.3f} of the spike size")
            run_ir(variant(net, hard=True, no_cap=True, reset_units=overshoot), "PyNN, v_reset=overshoot")
            trace = backend.run(net, steps, record_every=1, v_reset_units=overshoot)
            row("NEST, v_reset=overshoot", measure(net, trace, qp, ref.x, gamma, ir))
            fine = lower(qp, "lif", gamma=gamma, dt=gamma / 40)
            fine_steps = fine.provenance["params"]["steps_hint"]
            row("IR, dt=γ/40", measure(fine, simulate(fine, fine_steps, record_every=4), qp, ref.x, gamma))
            v = variant(fine, hard=True, no_cap=True)
            row("PyNN, dt=γ/40", measure(v, simulate(v, fine_steps, record_every=4), qp, ref.x, gamma))
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
