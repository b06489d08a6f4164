"""Linear model-predictive control as a sparse QP, and a receding-horizon loop
that warm-starts the network from the previous plan.

Sparse formulation over the horizon N, with the stage variables stacked as
w = [u₀, x₁, u₁, x₂, …, u_{N−1}, x_N]:

    minimise    Σ_{k<N} ½ u_kᵀR u_k + Σ_{1≤k<N} ½ (x_k − x_ref)ᵀQ (x_k − x_ref)
                + ½ (x_N − x_ref)ᵀQ_N (x_N − x_ref)
    subject to  x_{k+1} = A x_k + B u_k        (equalities; x₀ is the measured state)
                u_min ≤ u_k ≤ u_max,  x_min ≤ x_k ≤ x_max   (the box of the x neurons)

The dynamics are equality rows, so the network's equality neurons hold the
costates; the bounds are the primal neurons' own clamp. Only b = [A x₀; 0; …]
changes from one control step to the next, and the shifted previous plan (with
its costates) is an almost optimal start for the next problem:
``receding_horizon`` measures the network steps that saves.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..errors import InputError, SnnCompileError
from ..qp import QP
from ..solution import Solution
from ._common import AppQP, as_matrix
from ..warm_start import final_primal_weight, warm_start


@dataclass(frozen=True, eq=False)
class LinearModel:
    """x⁺ = A x + B u with box bounds and quadratic weights (Q_N: DARE solution if None)."""

    A: np.ndarray
    B: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    x_min: np.ndarray
    x_max: np.ndarray
    u_min: np.ndarray
    u_max: np.ndarray
    Q_N: Optional[np.ndarray] = None
    dt: float = 1.0
    name: str = "model"
    state_names: tuple = ()
    input_names: tuple = ()

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        A, B = as_matrix(self.A, "A"), as_matrix(self.B, "B")
        nx, nu = B.shape
        if A.shape != (nx, nx):
            raise InputError(f"A must be {nx}×{nx} to match B ({nx}×{nu}), got {A.shape}", field="A")
        set_("A", A)
        set_("B", B)
        for key, size in (("Q", nx), ("R", nu)):
            M = as_matrix(getattr(self, key), key)
            if M.shape != (size, size):
                raise InputError(f"must be {size}×{size}", field=key)
            set_(key, M)
        for key, size, default in (("x_min", nx, -np.inf), ("x_max", nx, np.inf),
                                   ("u_min", nu, -np.inf), ("u_max", nu, np.inf)):
            value = default if getattr(self, key) is None else getattr(self, key)
            try:
                v = np.broadcast_to(np.asarray(value, dtype=np.float64), (size,)).copy()
            except ValueError:
                raise InputError(f"expected one number or {size}", field=key) from None
            if np.any(np.isnan(v)):
                raise InputError("contains NaN", field=key)
            set_(key, v)
        if np.any(self.x_min > self.x_max) or np.any(self.u_min > self.u_max):
            raise InputError("a lower bound exceeds its upper bound",
                             field="x_min" if np.any(self.x_min > self.x_max) else "u_min")
        if self.Q_N is None:
            set_("Q_N", sla.solve_discrete_are(A, B, self.Q, self.R))
        else:
            set_("Q_N", as_matrix(self.Q_N, "Q_N"))
        set_("state_names", tuple(self.state_names) or tuple(f"x{i}" for i in range(nx)))
        set_("input_names", tuple(self.input_names) or tuple(f"u{i}" for i in range(nu)))

    @property
    def nx(self) -> int:
        return self.B.shape[0]

    @property
    def nu(self) -> int:
        return self.B.shape[1]

    def step(self, x, u) -> np.ndarray:
        return self.A @ x + self.B @ u


def _zoh(Ac: np.ndarray, Bc: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Zero-order-hold discretisation: expm of the augmented matrix."""
    nx, nu = Bc.shape
    M = np.zeros((nx + nu, nx + nu))
    M[:nx, :nx], M[:nx, nx:] = Ac, Bc
    E = sla.expm(M * dt)
    return E[:nx, :nx], E[:nx, nx:]


def double_integrator(dt: float = 0.1, *, u_max: float = 1.0, v_max: float = 1.0,
                      p_max: float = 10.0) -> LinearModel:
    """Position and velocity of a unit mass pushed by a bounded force."""
    A, B = _zoh(np.array([[0.0, 1.0], [0.0, 0.0]]), np.array([[0.0], [1.0]]), dt)
    return LinearModel(A, B, Q=np.diag([1.0, 0.1]), R=np.array([[0.1]]),
                       x_min=[-p_max, -v_max], x_max=[p_max, v_max], u_min=-u_max, u_max=u_max,
                       dt=dt, name="double-integrator", state_names=("position", "velocity"),
                       input_names=("force",))


def quadrotor(dt: float = 0.05, *, mass: float = 0.5, inertia=(4.9e-3, 4.9e-3, 8.8e-3),
              g: float = 9.81) -> LinearModel:
    """A quadrotor linearised about hover: 12 states, 4 inputs (deviations from hover).

    States (p_x, p_y, p_z, v_x, v_y, v_z, φ, θ, ψ, ω_x, ω_y, ω_z); inputs (thrust
    deviation, three body torques). Small-angle model: v̇_x = g·θ, v̇_y = −g·φ,
    v̇_z = ΔT/m, angle rates integrate to angles, torques over inertia to rates.
    The tilt bound |φ|, |θ| ≤ 0.35 rad keeps the trajectory where the
    linearisation is reasonable.
    """
    Ac, Bc = np.zeros((12, 12)), np.zeros((12, 4))
    Ac[0:3, 3:6] = np.eye(3)
    Ac[3, 7], Ac[4, 6] = g, -g
    Ac[6:9, 9:12] = np.eye(3)
    Bc[5, 0] = 1.0 / mass
    Bc[9:12, 1:4] = np.diag(1.0 / np.asarray(inertia, dtype=np.float64))
    A, B = _zoh(Ac, Bc, dt)
    inf = np.inf
    x_max = np.array([inf, inf, inf, 2.0, 2.0, 2.0, 0.35, 0.35, inf, 4.0, 4.0, 2.0])
    u_max = np.array([0.5 * mass * g, 0.05, 0.05, 0.02])
    names = ("p_x", "p_y", "p_z", "v_x", "v_y", "v_z", "roll", "pitch", "yaw",
             "w_x", "w_y", "w_z")
    return LinearModel(A, B, Q=np.diag([10, 10, 10, 1, 1, 1, 1, 1, 1, 0.1, 0.1, 0.1]).astype(float),
                       R=np.diag([0.1, 50.0, 50.0, 50.0]), x_min=-x_max, x_max=x_max,
                       u_min=-u_max, u_max=u_max, dt=dt, name="quadrotor", state_names=names,
                       input_names=("thrust", "tau_x", "tau_y", "tau_z"))


@dataclass
class MpcPlan:
    """One horizon's decoded plan: inputs u (N×nu), states x ((N+1)×nx, x[0] = x₀), costates (N×nx)."""

    u: np.ndarray
    x: np.ndarray
    costates: np.ndarray
    cost: float

    @property
    def first_input(self) -> np.ndarray:
        return self.u[0]


def mpc_qp(model: LinearModel, x0, horizon: int, x_ref=None) -> AppQP:
    """The sparse MPC QP for the measured state ``x0``; decode gives an ``MpcPlan``."""
    nx, nu, N = model.nx, model.nu, int(horizon)
    if N < 1:
        raise InputError("must be at least 1", field="horizon")
    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    if x0.size != nx or not np.all(np.isfinite(x0)):
        raise InputError(f"expected {nx} finite values", field="x0")
    x_ref = np.zeros(nx) if x_ref is None else np.asarray(x_ref, dtype=np.float64).reshape(nx)
    stage = nu + nx
    blocks = [sp.block_diag([model.R, model.Q if k < N - 1 else model.Q_N]) for k in range(N)]
    P = sp.block_diag(blocks, format="csr")
    q = np.concatenate([np.concatenate([np.zeros(nu), -(model.Q if k < N - 1 else model.Q_N) @ x_ref])
                        for k in range(N)])
    r = 0.5 * (N - 1) * x_ref @ model.Q @ x_ref + 0.5 * x_ref @ model.Q_N @ x_ref
    # Row block k: x_{k+1} − A x_k − B u_k = 0; x_0 is data, so A x_0 moves to b.
    A = sp.lil_matrix((N * nx, N * stage))
    for k in range(N):
        rows, col = slice(k * nx, (k + 1) * nx), k * stage
        A[rows, col:col + nu] = -model.B
        A[rows, col + nu:col + stage] = np.eye(nx)
        if k:
            A[rows, col - nx:col] = -model.A
    b = np.concatenate([model.A @ x0, np.zeros((N - 1) * nx)])
    lb = np.tile(np.concatenate([model.u_min, model.x_min]), N)
    ub = np.tile(np.concatenate([model.u_max, model.x_max]), N)
    names = [f"{name}[{k if j < nu else k + 1}]"
             for k in range(N) for j, name in enumerate(model.input_names + model.state_names)]
    eq_names = [f"dyn[{k}].{name}" for k in range(N) for name in model.state_names]
    qp = QP(P=P, q=q, r=r, A=A.tocsr(), b=b, lb=lb, ub=ub, name=f"mpc-{model.name}",
            var_names=names, eq_names=eq_names)

    def decode(solution: Solution) -> MpcPlan:
        w = solution.x.reshape(N, stage)
        states = np.vstack([x0, w[:, nu:]])
        return MpcPlan(u=w[:, :nu].copy(), x=states, costates=solution.y.reshape(N, nx).copy(),
                       cost=float(solution.obj))

    return AppQP(qp, decode)


def shifted_guess(model: LinearModel, plan: MpcPlan) -> dict:
    """The previous plan moved one step forward: the classic MPC warm start.

    Stage k takes stage k+1's input, state and costate; the last stage repeats
    the last input (clipped) and propagates the model. Returned in the QP's
    variable order (``x``) with the equality duals (``y``).
    """
    u = np.vstack([plan.u[1:], plan.u[-1:]])
    x = np.vstack([plan.x[2:], model.step(plan.x[-1], plan.u[-1])[None, :]])
    x = np.clip(x, model.x_min, model.x_max)
    costates = np.vstack([plan.costates[1:], plan.costates[-1:]])
    return {"x": np.hstack([u, x]).reshape(-1), "y": costates.reshape(-1)}


@dataclass
class ClosedLoop:
    """A receding-horizon run: the plant trajectory and what each network solve cost."""

    states: np.ndarray                  # (T+1)×nx
    inputs: np.ndarray                  # T×nu
    steps: list = field(default_factory=list)         # network steps per solve (the applied ones)
    cold_steps: list = field(default_factory=list)    # same QPs from a cold start (if compared)
    statuses: list = field(default_factory=list)
    max_residual: float = 0.0

    @property
    def steps_saved(self) -> int:
        return int(sum(self.cold_steps) - sum(self.steps)) if self.cold_steps else 0

    def cost(self, model: LinearModel) -> float:
        xs, us = self.states[1:], self.inputs
        return float(0.5 * np.einsum("ti,ij,tj->", xs, model.Q, xs)
                     + 0.5 * np.einsum("ti,ij,tj->", us, model.R, us))


def receding_horizon(model: LinearModel, x0, *, horizon: int, n_steps: int, warm: bool = True,
                     compare_cold: bool = False, solver=None, tol: float = 1e-4,
                     max_network_steps: int = 20_000, check_every: int = 16,
                     family: str = "primal-dual", x_ref=None,
                     carry_primal_weight: bool = True) -> ClosedLoop:
    """Close the loop for ``n_steps`` control steps, applying the first input of each plan.

    With ``warm``, each network starts from the shifted previous plan
    (``shifted_guess`` through ``warm_start``). With ``compare_cold``, every
    QP is also solved from a cold start, so ``steps_saved`` compares the two on
    identical problems. ``carry_primal_weight`` starts each warm solve with the
    primal weight ω the previous one ended with (the QPs differ only in b, so
    the preconditioning is the same). ``check_every`` is both the restart
    rule's and the stopping test's period. ``solver`` (a function qp →
    Solution, e.g. ``snn_compile.classical.reference_solution``) replaces the
    network entirely, for the classical baseline.
    """
    from ..api import compile as compile_qp

    x = np.asarray(x0, dtype=np.float64).reshape(-1)
    states, inputs = [x.copy()], []
    run = ClosedLoop(states=np.empty(0), inputs=np.empty(0))
    plan = None

    omega = [None]      # the primal weight the last solve learnt (same matrices every step)
    lowering = {"check_every": check_every} if family == "primal-dual" else {}

    def network_solve(qp, guess):
        compiled = compile_qp(qp, family=family, **lowering)
        if guess is not None:
            warm_start(compiled, guess, primal_weight=omega[0] if carry_primal_weight else None)
        solution = compiled.solve(max_network_steps, tol=tol, check_every=check_every)
        if guess is not None or omega[0] is None:
            omega[0] = final_primal_weight(compiled) or omega[0]
        return solution

    for k in range(int(n_steps)):
        qp, decode = mpc_qp(model, x, horizon, x_ref)
        if solver is not None:
            solution = solver(qp)
        else:
            guess = shifted_guess(model, plan) if (warm and plan is not None) else None
            solution = network_solve(qp, guess)
            run.steps.append(solution.steps)
            if compare_cold:
                run.cold_steps.append(network_solve(qp, None).steps if guess is not None
                                      else solution.steps)
        if not np.all(np.isfinite(solution.x)):
            raise SnnCompileError(f"control step {k}: the {family} network's plan is not finite "
                                  f"(status {solution.status.value}); no input to apply")
        run.statuses.append(solution.status.value)
        run.max_residual = max(run.max_residual, solution.primal_residual, solution.dual_residual,
                               solution.duality_gap)
        plan = decode(solution)
        u = np.clip(plan.first_input, model.u_min, model.u_max)
        x = model.step(x, u)
        states.append(x.copy())
        inputs.append(u)
    run.states, run.inputs = np.array(states), np.array(inputs)
    return run
