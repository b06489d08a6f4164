"""Solution quality of the ``nengo`` and ``nengo-loihi`` targets on five small
Maros–Meszaros problems, next to the reference executor.

    .venv/bin/python benchmarks/bench_nengo.py [--problems HS21,HS35,HS53,QPTEST,S268]
                                               [--pd-steps 20000] [--lif-steps N]

Per problem, the rows are

* primal-dual: ``reference`` and ``nengo`` (float64), each stopped by the KKT test
  at tol 1e-3 (the two are bit-identical, so steps and residuals agree);
* lif (γ = 0.01, the lowering's settling run of 10/(λ·dt) steps unless
  ``--lif-steps``): ``reference`` (float), ``nengo`` (float), ``reference fixed``
  (the quantize pass for Loihi 1 run by the fixed-point reference), ``nengo-loihi``
  on that quantized network (integer emulator) and ``nengo-loihi float-IR`` (the
  float network, discretized by nengo-loihi alone).

Columns: steps, the three qpbenchmark residuals on the original problem, the
relative objective error against the published optimum, wall time.
"""
from __future__ import annotations

import argparse
import time
import warnings

from _data import load_maros_meszaros, published_optima, relative_error

#: The small shared problems; HS53's P is singular (the lif lowering adds a ridge and
#: its quantized spike sizes round to 0 for some rows, which nengo-loihi refuses).
PROBLEMS = "HS21,HS35,HS53,QPTEST,S268"


def row(label: str, sol, seconds: float, optimum: float) -> str:
    return (f"  {label:24} {sol.steps:7d} {sol.primal_residual:9.2e} {sol.dual_residual:9.2e} "
            f"{sol.duality_gap:9.2e} {relative_error(sol.obj, optimum):11.2e} {seconds:7.1f}")


def timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=PROBLEMS)
    parser.add_argument("--pd-steps", type=int, default=20_000, help="primal-dual step budget")
    parser.add_argument("--lif-steps", type=int, default=None, help="lif steps (default: the settling hint)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")          # nengo-loihi 1.1 / nengo 4.1 version notice, ridge warnings

    from snn_compile.api import CompiledNetwork
    from snn_compile.backends.nengo_sim import NengoBackend, NengoLoihiBackend
    from snn_compile.backends.reference import ReferenceBackend
    from snn_compile.decode import decode_solution
    from snn_compile.errors import CapabilityError
    from snn_compile.hardware import load_hardware
    from snn_compile.lower import lower
    from snn_compile.passes.quantize import quantize

    optima = published_optima()
    loihi1 = load_hardware("loihi1")
    print(f"{'problem / run':26} {'steps':>7} {'r_prim':>9} {'r_dual':>9} {'gap':>9} {'rel.obj.err':>11} "
          f"{'time s':>7}")
    for name in args.problems.split(","):
        qp = load_maros_meszaros(name)
        optimum = optima[name]
        print(f"{name} (n={qp.n}, m_ineq={qp.m_ineq}, m_eq={qp.m_eq}, optimum {optimum:.6g})")
        net = lower(qp, "primal-dual")
        for label, backend in (("primal-dual reference", ReferenceBackend()), ("primal-dual nengo", NengoBackend())):
            compiled = CompiledNetwork(qp, net, backend.name, backend)
            sol, seconds = timed(lambda: compiled.solve(args.pd_steps, tol=1e-3))
            print(row(label, sol, seconds, optimum))

        net = lower(qp, "lif")
        steps = args.lif_steps or net.provenance["params"]["steps_hint"]
        quantized, _ = quantize(net, loihi1)
        runs = (("lif reference", ReferenceBackend(), net, {}),
                ("lif nengo", NengoBackend(), net, {}),
                ("lif reference fixed", ReferenceBackend(), quantized, {}),
                ("lif nengo-loihi", NengoLoihiBackend(), quantized, {"record_every": 0}),
                ("lif nengo-loihi float-IR", NengoLoihiBackend(), net, {"record_every": 0}))
        for label, backend, network, options in runs:
            try:
                trace, seconds = timed(lambda: backend.run(network, steps, **options))
            except CapabilityError as err:          # a refusal is a row, not a crash
                print(f"  {label:24} refused: {str(err)[:90]}")
                continue
            print(row(label, decode_solution(net, trace, qp), seconds, optimum))


if __name__ == "__main__":
    main()
