"""Parameter streaming on a 30-step receding-horizon MPC run (issue: live updates).

    .venv/bin/python benchmarks/bench_streaming.py [--model quadrotor|double_integrator]
                                                  [--horizon 20] [--control-steps 30]

Each control step the measured state x₀ changes, which changes only b of the
MPC QP. Two ways to get the next network ready, and two ways to start it:

- recompile: ``compile(new_qp)`` (validation, preconditioning, power iterations,
  lowering) and a cold start;
- stream: ``compiled.update(b=...)`` (biases only, weights reused) and a warm start
  from the previous plan shifted by one stage.

Prints the time to prepare a solve (recompile vs update), the network steps to
tolerance (cold vs warm) and the totals.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main():
    import snn_compile as sc
    from snn_compile.apps import mpc
    from snn_compile.warm_start import warm_start

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="quadrotor", choices=("quadrotor", "double_integrator"))
    parser.add_argument("--horizon", type=int, default=20)
    parser.add_argument("--control-steps", type=int, default=30)
    parser.add_argument("--tol", type=float, default=1e-4)
    args = parser.parse_args()
    model = getattr(mpc, args.model)()
    rng = np.random.default_rng(0)
    x = np.clip(rng.standard_normal(model.nx) * 0.5, model.x_min * 0.5, model.x_max * 0.5)

    streamed = None
    plan = None
    rows = []
    for k in range(args.control_steps):
        app = mpc.mpc_qp(model, x, args.horizon)
        # recompile + cold start
        t0 = time.perf_counter()
        fresh = sc.compile(app.qp)
        t_compile = time.perf_counter() - t0
        cold = fresh.solve(tol=args.tol, check_every=16)
        # stream + warm start
        t0 = time.perf_counter()
        if streamed is None:
            streamed = sc.compile(app.qp)
        else:
            streamed.update(b=app.qp.b)
        t_update = time.perf_counter() - t0
        if plan is not None:
            warm_start(streamed, mpc.shifted_guess(model, plan))
        t0 = time.perf_counter()
        warm = streamed.solve(tol=args.tol, check_every=16)
        t_warm_solve = time.perf_counter() - t0
        assert np.all(np.isfinite(warm.x)), f"control step {k}: warm solve failed ({warm.status.value})"
        plan = app.decode(warm)
        u = np.clip(plan.first_input, model.u_min, model.u_max)
        x = model.step(x, u)
        rows.append((k, t_compile, t_update, cold.steps, warm.steps, cold.extras["wall_time_s"], t_warm_solve,
                     max(warm.primal_residual, warm.dual_residual, warm.duality_gap)))

    print(f"MPC {args.model}: horizon {args.horizon}, {app.qp.n} variables, {app.qp.m_eq} equalities, "
          f"{args.control_steps} control steps, tol {args.tol:g}")
    print(f"{'k':>3} {'compile ms':>10} {'update ms':>9} {'cold steps':>10} {'warm steps':>10} {'warm resid':>10}")
    for k, tc, tu, sc_, sw, _, _, res in rows:
        print(f"{k:3d} {1e3 * tc:10.2f} {1e3 * tu:9.3f} {sc_:10d} {sw:10d} {res:10.1e}")
    later = rows[1:]                         # the first streamed solve is a compile too
    compile_ms = 1e3 * np.mean([r[1] for r in later])
    update_ms = 1e3 * np.mean([r[2] for r in later])
    cold_steps, warm_steps = sum(r[3] for r in later), sum(r[4] for r in later)
    cold_total = np.mean([r[1] + r[5] for r in later])
    warm_total = np.mean([r[2] + r[6] for r in later])
    print(f"\nprepare a solve: recompile {compile_ms:.2f} ms vs update {update_ms:.3f} ms "
          f"-> streaming {compile_ms / update_ms:.0f}x faster")
    print(f"steps to tolerance: cold {cold_steps} vs warm {warm_steps} -> warm start "
          f"{cold_steps / warm_steps:.2f}x fewer steps")
    print(f"whole solve (prepare + run): recompile+cold {1e3 * cold_total:.1f} ms vs update+warm "
          f"{1e3 * warm_total:.1f} ms -> {cold_total / warm_total:.1f}x")


if __name__ == "__main__":
    main()
