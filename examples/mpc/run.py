"""Receding-horizon MPC on the spiking network, warm-started from the previous plan.

Two linear models with input and state bounds, sparse formulation (dynamics as
equality neurons, bounds as the primal neurons' clamp):

- a double integrator (2 states, 1 input) driven from rest at position 5 to 0
  with |velocity| ≤ 1 and |force| ≤ 1;
- a quadrotor linearised about hover (12 states, 4 inputs) flown from
  (1, −1, 0.5) m back to the origin with tilt, rate, speed and input bounds.

Each control step solves the MPC QP on the network starting from the shifted
previous plan and, for comparison, from a cold start; the closed loop is also
run with the classical solver.

    python examples/mpc/run.py [--out out/mpc] [--fast] [--write-problem PATH]
"""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from snn_compile.apps import example_command_line, double_integrator, mpc_qp, quadrotor, receding_horizon  # noqa: E402
from snn_compile.classical import reference_solution  # noqa: E402

TOL = 1e-4
QUAD_START = [1.0, -1.0, 0.5] + [0.0] * 9


def representative():
    return mpc_qp(quadrotor(), QUAD_START, horizon=10)


def plot_loop(model, network, classical, path, shown):
    t = np.arange(network.states.shape[0]) * model.dt
    fig, axes = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    for j in shown:
        line, = axes[0].plot(t, classical.states[:, j], lw=3, alpha=0.4)
        axes[0].plot(t, network.states[:, j], "--", color=line.get_color(), lw=1.2,
                     label=model.state_names[j])
    axes[0].set_ylabel("state")
    axes[0].legend(fontsize=7, ncol=3)
    for j in range(model.nu):
        line, = axes[1].step(t[:-1], classical.inputs[:, j], where="post", lw=3, alpha=0.4)
        axes[1].step(t[:-1], network.inputs[:, j], "--", where="post", color=line.get_color(), lw=1.2,
                     label=model.input_names[j])
    axes[1].set_ylabel("input")
    axes[1].set_xlabel("time [s]")
    axes[1].legend(fontsize=7, ncol=4)
    axes[0].set_title(f"{model.name}: network (dashed) vs classical MPC (thick)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    setup = example_command_line(__doc__, "mpc", "shorter horizons and runs (CI)", representative,
                                 metadata={"x0": QUAD_START, "horizon": 10, "dt": quadrotor().dt},
                                 header="Linear MPC of a quadrotor linearised about hover (12 states, 4 inputs),\n"
                                        "horizon 10, sparse formulation: variables [u0, x1, u1, x2, ...],\n"
                                        "dynamics as equalities, input/state bounds as lb/ub.\n"
                                        "Written by examples/mpc/run.py --write-problem.")
    if setup is None:
        return
    args, out = setup
    cases = [("double_integrator", double_integrator(), [5.0, 0.0], (20, 12) if args.fast else (30, 40), [0, 1]),
             ("quadrotor", quadrotor(), QUAD_START, (10, 8) if args.fast else (15, 30), [0, 1, 2, 6, 7])]
    results = {}
    fig, axes = plt.subplots(1, len(cases), figsize=(10, 3.5))
    for ax, (name, model, x0, (horizon, n_steps), shown) in zip(axes, cases):
        network = receding_horizon(model, x0, horizon=horizon, n_steps=n_steps, warm=True,
                                   compare_cold=True, tol=TOL)
        classical = receding_horizon(model, x0, horizon=horizon, n_steps=n_steps, solver=reference_solution)
        plot_loop(model, network, classical, out / f"{name}_closed_loop.png", shown)
        ax.plot(network.cold_steps, "o-", ms=3, label=f"cold start (total {sum(network.cold_steps)})")
        ax.plot(network.steps, "s-", ms=3, label=f"warm start (total {sum(network.steps)})")
        ax.set_title(f"{model.name}, horizon {horizon}", fontsize=9)
        ax.set_xlabel("control step")
        ax.set_ylabel("network steps to tol")
        ax.legend(fontsize=7)
        results[name] = {
            "horizon": horizon, "control_steps": n_steps, "variables": horizon * (model.nx + model.nu),
            "warm_steps": network.steps, "cold_steps": network.cold_steps,
            "steps_saved": network.steps_saved,
            "steps_saved_fraction": network.steps_saved / max(1, sum(network.cold_steps)),
            "max_state_deviation_from_classical_loop": float(np.abs(network.states - classical.states).max()),
            "closed_loop_cost": network.cost(model), "classical_closed_loop_cost": classical.cost(model),
            "max_residual": network.max_residual}
    fig.tight_layout()
    fig.savefig(out / "warm_start_steps.png", dpi=110)
    plt.close(fig)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps({k: {kk: v for kk, v in r.items() if not kk.endswith("_steps")} for k, r in results.items()},
                     indent=1))


if __name__ == "__main__":
    main()
