"""Host-side pieces shared by every Python backend, so that all of them evaluate
gains and execute control rules (docs/ir.md §2 gains, §4 controls) identically.

A backend owns the neuron states; it hands this module *live* state arrays
(writes through ``ControlContext.set_state`` land in the simulation) and, if it
can, an ``EmissionAccess`` to its emission buffers. After every network step it
calls ``ControlRuntime.after_step(step, updated)``.

Adding a control rule means writing one function of the form
``apply_<rule>(rule, ctx, step)`` and registering it in ``ControlRuntime``;
``apply_adaptive_restart`` is the placeholder for the restart rule.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Protocol, Sequence

import numpy as np

from .errors import CapabilityError
from .ir import AdaptiveRestart, Gain, Network, RunningAverage

try:  # the routines behind ``csr @ x`` and ``csr.T @ x``, without scipy's dispatch around them
    from scipy.sparse._sparsetools import csc_matvec as _csc_matvec, csr_matvec as _csr_matvec
except ImportError:  # pragma: no cover - private scipy API moved
    _csr_matvec = _csc_matvec = None


# ---------------------------------------------------------------- gains
class GainState:
    """g(t) = m_g · Gain.at(t) for every gain, with run-time multipliers m_g.

    ``values(step)`` returns a list indexed by ``index(name)``; its last entry
    is the constant 1 used for "no gain", so a backend looks every gain up the
    same way. Piecewise-constant gains are recomputed only when the step
    crosses a schedule change or a multiplier changes, so calling ``values``
    every step costs one compare; formula gains (docs/ir.md §2.1) are
    recomputed every step, from ``epoch_step`` (None: step + 1) and
    ``primal_weight``, which the AdaptiveRestart rule owns and sets.
    """

    def __init__(self, gains: Sequence[Gain]):
        self._gains = list(gains)
        self._index = {g.name: i for i, g in enumerate(self._gains)}
        self.unity = len(self._gains)                      # index of the constant 1
        self._multipliers = [1.0] * len(self._gains)
        self._change_steps = sorted({s for g in self._gains for s in g.steps})
        self._has_formula = any(g.formula is not None for g in self._gains)
        self._epoch_step: Optional[int] = None
        self._primal_weight = 1.0
        self._values = [g.value for g in self._gains] + [1.0]
        self._valid_from = 0                              # _values hold for steps in
        self._valid_until = -1                            # [_valid_from, _valid_until)

    # ------------------------------------------------------------ lookup
    def index(self, name: Optional[str]) -> int:
        """Position of ``name`` in ``values()``; None (no gain) maps to the constant 1."""
        return self.unity if name is None else self._index[name]

    @property
    def names(self) -> list[str]:
        return [g.name for g in self._gains]

    def values(self, step: int) -> list[float]:
        """g(step) of every gain (plus the trailing constant 1), computed before the
        step's updates. The list is reused: copy it to keep it."""
        if not self._valid_from <= step < self._valid_until:
            self._recompute(step)
        return self._values

    def value(self, name: Optional[str], step: int) -> float:
        return self.values(step)[self.index(name)]

    def table(self, start: int, stop: int, out: Optional[np.ndarray] = None) -> np.ndarray:
        """g(s) for s = start … stop − 1 as the rows of a float64 array, bit for bit what
        ``values(s)`` returns at each step, provided that between those steps only the
        epoch counter moves, by one per step (as the AdaptiveRestart rule does on a step
        without a KKT check; without the rule t = step + 1 anyway), while multipliers and ω
        stay as they are now. ``out``: an array with at least ``stop − start`` rows to fill."""
        length = stop - start
        table = np.empty((length, self.unity + 1)) if out is None else out[:length]
        steps = np.arange(start, stop)
        epochs = None if self._epoch_step is None else np.arange(self._epoch_step, self._epoch_step + length)
        for i, gain in enumerate(self._gains):
            column = table[:, i]
            if gain.formula is not None:   # Gain.at's own arithmetic, element-wise on the arrays
                column[:] = gain.at(steps, epoch_step=epochs, primal_weight=self._primal_weight)
            else:
                schedule = np.array((gain.value,) + gain.values)
                column[:] = schedule[np.searchsorted(gain.steps, steps, side="right")]
            column *= self._multipliers[i]                # m·g, as in _recompute (× commutes)
        table[:, self.unity] = 1.0
        return table

    def _recompute(self, step: int):
        for i, gain in enumerate(self._gains):
            self._values[i] = self._multipliers[i] * gain.at(
                step, epoch_step=self._epoch_step, primal_weight=self._primal_weight)
        if self._has_formula:                             # t and ω may change every step
            self._valid_from, self._valid_until = step, step + 1
            return
        k = bisect.bisect_right(self._change_steps, step)
        self._valid_from = self._change_steps[k - 1] if k else 0
        self._valid_until = self._change_steps[k] if k < len(self._change_steps) else np.iinfo(np.int64).max

    def _invalidate(self):
        self._valid_until = -1                            # recompute at the next values()

    # ------------------------------------------------------------ run-time state
    def multiplier(self, name: str) -> float:
        return self._multipliers[self._index[name]]

    def set_multiplier(self, name: str, value: float):
        """Takes effect from the next step a backend asks ``values()`` for."""
        value = float(value)
        if not np.isfinite(value):
            raise ValueError(f"gain multiplier for {name!r} must be finite, got {value}")
        self._multipliers[self._index[name]] = value
        self._invalidate()

    def multipliers(self) -> dict[str, float]:
        return {g.name: m for g, m in zip(self._gains, self._multipliers)}

    @property
    def epoch_step(self) -> Optional[int]:
        """t of docs/ir.md §2.1 for the next step; None means step + 1 (no restart rule)."""
        return self._epoch_step

    @epoch_step.setter
    def epoch_step(self, value: Optional[int]):
        self._epoch_step = None if value is None else int(value)
        self._invalidate()

    @property
    def primal_weight(self) -> float:
        """ω of docs/ir.md §2.1."""
        return self._primal_weight

    @primal_weight.setter
    def primal_weight(self, value: float):
        self._primal_weight = float(value)
        self._invalidate()


# ---------------------------------------------------------------- running averages
@dataclass(eq=False)
class AverageState:
    """a_p and k_p of docs/ir.md §4 for one population."""

    mean: np.ndarray
    count: int = 0
    _scratch: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self._scratch = np.empty_like(self.mean)             # (v − a)/k without allocating

    def update(self, state: np.ndarray):
        """a ← a + (v − a)/k after the population's k-th update (so a = v after the first)."""
        self.count += 1
        np.subtract(state, self.mean, out=self._scratch)
        self._scratch /= self.count
        self.mean += self._scratch

    def reset(self):
        """Restart the average: the next update sets a = v."""
        self.count = 0
        self.mean.fill(0.0)


# ---------------------------------------------------------------- host access
class EmissionAccess(Protocol):
    """What a backend exposes of its emission buffers to control rules."""

    def emission(self, population: str, lag: int) -> np.ndarray: ...

    def set_emission(self, population: str, values: np.ndarray, lag: int) -> None: ...

    def last_update(self, population: str) -> int: ...    # −1 before the first update

    def depth(self, population: str) -> int: ...          # emissions kept: lags 0 … depth − 1


class ControlContext:
    """Everything a control rule (or a ``stop`` callback) may read or change.

    ``step`` is the step that has just completed. States are the backend's live
    arrays: read them with ``state``; change them only with ``set_state`` (which
    writes in place, so the backend sees it). Rule-private memory that must
    survive between calls (e.g. the KKT error at the last restart) lives in
    ``rule_state(rule)``.
    """

    def __init__(self, net: Network, states: Mapping[str, np.ndarray], gains: GainState,
                 averages: Mapping[str, AverageState], emissions: Optional[EmissionAccess] = None):
        self.net = net
        self.gains = gains
        self.averages = dict(averages)
        self.log: list[dict[str, Any]] = []
        self.step = -1
        self._states = dict(states)
        self._emissions = emissions
        self._rule_state: dict[int, dict] = {}
        #: Set by the backend: returns the run so far as a ``Trace`` (no events),
        #: so a stop callback can decode the current solution exactly as at the end.
        self.snapshot = None

    # ------------------------------------------------------------ states
    def state(self, population: str) -> np.ndarray:
        """Read-only view of the population's current state."""
        view = self._states[population].view()
        view.flags.writeable = False
        return view

    def set_state(self, population: str, values) -> None:
        self._states[population][...] = values

    @property
    def states(self) -> dict[str, np.ndarray]:
        return {name: self.state(name) for name in self._states}

    # ------------------------------------------------------------ averages
    def average(self, population: str) -> np.ndarray:
        view = self.averages[population].mean.view()
        view.flags.writeable = False
        return view

    def reset_averages(self, populations: Optional[Sequence[str]] = None) -> None:
        for name in (self.averages if populations is None else populations):
            self.averages[name].reset()

    # ------------------------------------------------------------ emissions
    def emission(self, population: str, lag: int = 0) -> np.ndarray:
        """e_p(step − lag), read-only; lag is limited by the backend's delay buffer."""
        return self._require_emissions().emission(population, lag)

    def set_emission(self, population: str, values, lag: int = 0) -> None:
        """Overwrite e_p(step − lag), e.g. so a delayed reader sees a restarted state."""
        self._require_emissions().set_emission(population, values, lag)

    def set_latest_emission(self, population: str, values) -> None:
        """Overwrite the emission of the population's latest update, so that every
        later (delayed) read of it sees ``values``. No-op before its first update
        or when that emission has already left the backend's delay buffer."""
        emissions = self._require_emissions()
        last = emissions.last_update(population)
        if last >= 0 and self.step - last < emissions.depth(population):
            emissions.set_emission(population, values, self.step - last)

    def _require_emissions(self) -> EmissionAccess:
        if self._emissions is None:
            raise CapabilityError("this backend does not expose its emission buffers to control rules")
        return self._emissions

    # ------------------------------------------------------------ bookkeeping
    def rule_state(self, rule) -> dict:
        return self._rule_state.setdefault(id(rule), {})

    def record(self, event: str, **info) -> None:
        """Append an entry to the trace's control log (JSON-friendly values, please)."""
        self.log.append({"step": self.step, "event": event, **info})


# ---------------------------------------------------------------- rules
def _matvec(M, x: np.ndarray, transpose: bool = False) -> np.ndarray:
    """``M @ x`` (``M.T @ x`` with ``transpose``): for a float64 CSR matrix and vector, the
    very scipy routine that the operator runs (``M.T`` is a CSC view of M's arrays), called
    directly: building ``M.T`` and scipy's dispatch cost more than the product itself."""
    rows, cols = M.shape
    if (_csr_matvec is None or getattr(M, "format", None) != "csr" or M.dtype != np.float64
            or x.dtype != np.float64 or x.shape != ((rows,) if transpose else (cols,))
            or not x.flags.c_contiguous):
        return (M.T if transpose else M) @ x
    if transpose:
        out = np.zeros(cols)
        _csc_matvec(cols, rows, M.indptr, M.indices, M.data, x, out)
    else:
        out = np.zeros(rows)
        _csr_matvec(rows, cols, M.indptr, M.indices, M.data, x, out)
    return out


def kkt_error(problem, x: np.ndarray, v: np.ndarray) -> float:
    """KKT(x, v) of docs/ir.md §4 on the rule's (scaled) problem; v = [z; y]."""
    m_g = problem.G.shape[0]
    z, y = v[:m_g], v[m_g:]
    Px = _matvec(problem.P, x)
    g = Px + problem.q + _matvec(problem.G, z, transpose=True) + _matvec(problem.A, y, transpose=True)
    zeta = -g
    free_lo, free_hi = ~np.isfinite(problem.lb), ~np.isfinite(problem.ub)
    zeta[free_lo] = np.maximum(zeta[free_lo], 0.0)
    zeta[free_hi] = np.minimum(zeta[free_hi], 0.0)
    r_d = g + zeta
    r_p = np.concatenate([np.maximum(_matvec(problem.G, x) - problem.h, 0.0),
                          _matvec(problem.A, x) - problem.b])
    fin_lo, fin_hi = ~free_lo, ~free_hi
    gap = (x @ Px + problem.q @ x + problem.h @ z + problem.b @ y
           + problem.lb[fin_lo] @ np.minimum(zeta[fin_lo], 0.0)
           + problem.ub[fin_hi] @ np.maximum(zeta[fin_hi], 0.0))
    return float(np.sqrt(r_p @ r_p + r_d @ r_d + gap * gap))


def emission_of_state(pop, v: np.ndarray) -> np.ndarray:
    """What a population with state v emits (docs/ir.md §2 steps 4–5, no spike cap)."""
    fired = v > pop.threshold
    if pop.spike == "binary":
        return fired.astype(v.dtype)
    payload = v if pop.payload == "state" else v - pop.threshold
    return np.where(fired, payload, 0.0)


def start_adaptive_restart(rule: AdaptiveRestart, ctx: ControlContext) -> None:
    """Before step 0: t = 1, ω = ω₀, restart point = initial states, KKT_r of it."""
    ctx.gains.primal_weight = rule.primal_weight_init
    ctx.gains.epoch_step = 1
    memory = ctx.rule_state(rule)
    memory["t"] = 1
    memory["x_r"] = np.array(ctx.state(rule.primal), dtype=np.float64)
    memory["v_r"] = np.array(ctx.state(rule.dual), dtype=np.float64)
    memory["kkt_r"] = kkt_error(rule.problem, memory["x_r"], memory["v_r"])
    memory["kkt_prev"] = np.inf


def apply_adaptive_restart(rule: AdaptiveRestart, ctx: ControlContext, step: int) -> None:
    """The AdaptiveRestart rule of docs/ir.md §4, called after every step: it owns
    the epoch counter t, which advances every step; the KKT test runs when
    ``(step + 1) % rule.check_every == 0``."""
    memory = ctx.rule_state(rule)
    memory["t"] += 1
    ctx.gains.epoch_step = memory["t"]
    if (step + 1) % rule.check_every:
        return
    x, v = np.array(ctx.state(rule.primal), dtype=np.float64), np.array(ctx.state(rule.dual), dtype=np.float64)
    x_avg = np.array(ctx.state(rule.primal_average), dtype=np.float64)
    v_avg = np.array(ctx.state(rule.dual_average), dtype=np.float64)
    kkt_cur, kkt_avg = kkt_error(rule.problem, x, v), kkt_error(rule.problem, x_avg, v_avg)
    x_c, v_c, kkt_c, source = ((x_avg, v_avg, kkt_avg, "average") if kkt_avg < kkt_cur
                               else (x, v, kkt_cur, "current"))
    kkt_r, kkt_prev = memory["kkt_r"], memory["kkt_prev"]
    fire = (kkt_c <= rule.beta_sufficient * kkt_r
            or (kkt_c <= rule.beta_necessary * kkt_r and kkt_c > kkt_prev)
            or memory["t"] >= rule.beta_artificial * (step + 1))
    memory["kkt_prev"] = kkt_c
    if not fire:
        return
    omega = ctx.gains.primal_weight
    if rule.update_primal_weight:
        dx = float(np.linalg.norm(x_c - memory["x_r"]))
        dv = float(np.linalg.norm(v_c - memory["v_r"]))
        if dx > 1e-10:
            # Duals that do not move (dv ≈ 0) would freeze ω and, through τ ≤ 1/(ωk),
            # the acceleration: shrink ω instead.
            ratio = dv / dx if dv > 1e-10 else omega / 10.0
            theta = rule.primal_weight_smoothing
            omega = float(np.exp(theta * np.log(ratio) + (1.0 - theta) * np.log(omega)))
            ctx.gains.primal_weight = omega
    net = ctx.net
    for name, value in ((rule.primal, x_c), (rule.primal_average, x_c), (rule.dual, v_c),
                        (rule.dual_average, v_c)):
        ctx.set_state(name, value)
        ctx.set_latest_emission(name, emission_of_state(net.population(name), value))
    memory.update(x_r=x_c.copy(), v_r=v_c.copy(), kkt_r=kkt_error(rule.problem, x_c, v_c),
                  kkt_prev=np.inf, t=1)
    ctx.gains.epoch_step = 1
    ctx.record("restart", source=source, kkt=kkt_c, primal_weight=omega)


class ControlRuntime:
    """Executes a network's control rules after each step (docs/ir.md §4).

    Order within one call: running averages of the populations that updated
    this step first, then the other rules in the order ``net.controls`` lists
    them, so a restart always sees averages that include the current step.
    """

    def __init__(self, net: Network, states: Mapping[str, np.ndarray], gains: GainState,
                 emissions: Optional[EmissionAccess] = None):
        averages: dict[str, AverageState] = {}
        for rule in net.controls:
            if isinstance(rule, RunningAverage):
                for name in rule.populations:
                    if name not in averages:
                        averages[name] = AverageState(np.zeros_like(states[name]))
        self.context = ControlContext(net, states, gains, averages, emissions)
        self._restarts = [rule for rule in net.controls if isinstance(rule, AdaptiveRestart)]
        self._averaged_by_phase: dict[tuple, list[tuple[np.ndarray, AverageState]]] = {}
        for rule in self._restarts:   # before step 0: formula gains need ω from the start
            start_adaptive_restart(rule, self.context)
        self.active = bool(averages or self._restarts)

    @property
    def averages(self) -> dict[str, AverageState]:
        return self.context.averages

    def after_step(self, step: int, updated: tuple) -> None:
        """``updated``: the names of the populations that updated at ``step`` (a tuple,
        the same object every cycle, so per-phase work is looked up once)."""
        ctx = self.context
        ctx.step = step
        averaged = self._averaged_by_phase.get(updated)
        if averaged is None:
            averaged = [(ctx._states[name], ctx.averages[name]) for name in updated if name in ctx.averages]
            self._averaged_by_phase[updated] = averaged
        for state, avg in averaged:
            avg.update(state)
        for rule in self._restarts:
            apply_adaptive_restart(rule, ctx, step)

    def after_counting_steps(self, first: int, stop: int) -> None:
        """``after_step(s, …)`` for every s = first … stop − 1 at once, for steps on which the
        rules only advance their epoch counters: nothing is averaged and no restart rule
        checks at any of them (a ValueError otherwise)."""
        if stop <= first:
            return
        if self.averages:
            raise ValueError("running averages read the states after every step")
        ctx = self.context
        for rule in self._restarts:
            if stop // rule.check_every > first // rule.check_every:   # (s + 1) % check_every == 0
                raise ValueError(f"steps {first}…{stop - 1} include a restart check")
        for rule in self._restarts:
            memory = ctx.rule_state(rule)
            memory["t"] += stop - first
            ctx.gains.epoch_step = memory["t"]
        ctx.step = stop - 1
