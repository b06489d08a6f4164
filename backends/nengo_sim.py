"""Targets ``nengo`` (float, ``nengo.Simulator``) and ``nengo-loihi`` (nengo-loihi's
Loihi 1 emulator, ``nengo_loihi.Simulator(model, target="sim")``).

Both build a ``nengo.Network`` of ensembles whose neurons are connected directly
(``Connection(a.neurons, b.neurons, transform=Dense | Sparse)``); there are no
decoded connections, no solvers and no nodes. One nengo step is one IR step
(``dt`` = 1 ms by default, only the built-in LIF's time constant depends on it).
docs/backends.md ("Nengo and nengo-loihi") is the user-facing account; in short:

Neuron types (``nengo``)
    A population whose update is exactly nengo's ``LIF`` after the affine change
    V' = (V − r)/(T − r) (binary spikes, threshold T, reset to a value r < T, one
    decay δ ∈ (0, 1), no clamp, no cap, every step, initial V ≤ T) runs as
    ``nengo.LIF(tau_rc = −dt/ln δ, tau_ref = 0, amplitude = dt)``: its bias
    becomes b/((1−δ)(T−r)) − r/(T−r) and its incoming weight rows are divided by
    (1−δ)(T−r). That is the same update up to floating-point rounding (nengo
    integrates with expm1). Every other population runs as ``IRNeurons``, a
    ``NeuronType`` with its own builder and ``SimIRNeurons`` operator that performs
    docs/ir.md §2 steps 2–6 literally, so it is bit-identical to the reference.
    ``SpikingRectifiedLinear`` is never used: it rectifies its input and emits
    ⌊v⌋ spikes at v ≥ 1, which matches no IR population.

Delays
    A neuron→neuron connection with ``synapse=None`` is computed within the step:
    nengo orders operators by data dependence (the source's neuron operator sets
    its output, the connection reads it and increments the target's input, the
    target's operator reads that), so delay 0 maps to ``synapse=None`` (the IR
    already requires the source to update first). Synapses are built in "update"
    mode: what a synapse writes at step t is read at step t + 1. A delay d ≥ 1 is
    therefore ``Delay(d)``, a synapse that outputs its input of d − 1 steps ago;
    d = 1 is a plain copy. nengo does not delay anything by itself: a cycle of
    ``synapse=None`` connections is a build error, not a one-step delay.

Exact arithmetic
    The input of a population is its bias (copied into the neurons' input signal)
    plus each connection's ``gains ⊙ (W e)`` increment. nengo may schedule the
    increments of one signal in any order and float addition is not associative,
    so after building, each target's increments are chained in the IR's
    projection order with dependency tokens: the sum is then the reference's
    (g_b·b + g₁·W₁e₁) + g₂·W₂e₂ … bit for bit.

Gains and control rules
    The simulator is stepped from the host (``sim.step()``). Before each step the
    shared ``GainState`` gives g(t); it is written into each gained connection's
    ``gains`` signal (applied after the delay, as docs/ir.md §2 says) and, for a
    bias gain, b·g(t) into the ensemble's bias signal. After each step the shared
    ``ControlRuntime`` runs on the live state signals; a restart that rewrites a
    population's latest emission also rewrites the W·e values its delayed
    connections hold, so they deliver the restarted point. The same write, made
    before step 0, gives a population with ``emit_initial_state`` its emission
    e(−1) of ``v_init`` (docs/ir.md §2), so delayed readers see the initial (or
    warm-start) state at step 0.

``nengo-loihi`` runs the ``lif`` family only (see ``NengoLoihiBackend``).
"""
from __future__ import annotations

import functools
import importlib.util
import inspect
import json
import math
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import scipy.sparse as sp

from snn_compile.errors import CapabilityError, InputError
from snn_compile.ir import AdaptiveRestart, Network, RunningAverage
from snn_compile.runtime import ControlRuntime, GainState, emission_of_state
from snn_compile.trace import DEFAULT_MAX_EVENTS, EventLog, Trace

from .base import FEATURES, Backend, Capabilities, StopCallback
from .reference import finish_trace, sample_buffers

#: Seconds per nengo step. Only nengo's built-in LIF reads it (τ_rc = −dt/ln δ).
NENGO_DT = 0.001
#: Files written by ``NengoBackend.emit``.
SPEC_JSON, SPEC_NPZ, SCRIPT, RESULT_JSON, RESULT_NPZ = (
    "nengo_network.json", "nengo_network.npz", "run_nengo.py", "nengo_result.json", "nengo_result.npz")
SPEC_FORMAT = "snn-compile/nengo-network"


# ====================================================================== nengo side
def _define_core(nengo, np):  # noqa: C901 - one self-contained unit, copied into run_nengo.py
    """The nengo side of the ``nengo`` target, built from a plain spec.

    Defines ``IRNeurons`` (a NeuronType doing one IR population update), its
    builder and ``SimIRNeurons`` operator, the ``Delay`` synapse, and ``NengoRun``,
    which builds the network from a spec (dicts of numbers and numpy arrays) and
    gives the host what it needs between steps. Its source is copied verbatim
    into every emitted run_nengo.py, so it uses nothing but ``nengo`` and ``np``.
    """
    from types import SimpleNamespace

    from nengo.builder import Builder, Model, Operator, Signal
    from nengo.builder.operator import ElementwiseInc
    from nengo.builder.processes import SimProcess

    def largest_excess(fired, v, threshold, k):
        """The k firing neurons with the largest v − θ; ties go to the lowest index."""
        excess = v[fired] - threshold[fired]
        if k == 1:
            return fired[np.argmax(excess)][None]
        kth = np.partition(excess, excess.size - k)[excess.size - k]
        keep = excess > kth
        ties = np.flatnonzero(excess == kth)[: k - int(keep.sum())]
        keep[ties] = True
        return fired[keep]

    class IRNeurons(nengo.neurons.NeuronType):
        """One IR population (docs/ir.md §2 steps 2–6, in that order and with the
        reference's float operations): u = δ⊙v + I; v = min(max(u, v_min), v_max);
        fire where v > θ (at most K, largest v − θ first); emit 1, v or v − θ;
        reset. I is the neurons' input signal (bias plus connections). In steps
        outside the population's schedule phases it keeps its state and emits 0.
        """

        spiking = True
        negative = True

        def __init__(self, pop, active_phases, period):
            super().__init__()
            a = pop["arrays"]
            n = int(pop["size"])
            self.name = pop["name"]
            self.decay = np.asarray(a["decay"], dtype=np.float64)
            self.unit_decay = bool(np.all(self.decay == 1.0))
            self.v_min = np.asarray(a["v_min"], dtype=np.float64)
            self.v_max = np.asarray(a["v_max"], dtype=np.float64)
            self.clamp_low = bool(np.any(np.isfinite(self.v_min)))
            self.clamp_high = bool(np.any(np.isfinite(self.v_max)))
            self.threshold = np.asarray(a["threshold"], dtype=np.float64)
            self.reset_value = np.asarray(a["reset_value"], dtype=np.float64)
            self.v_init = np.asarray(a["v_init"], dtype=np.float64)
            self.reset = pop["reset"]
            self.binary = pop["spike"] == "binary"
            self.excess = pop["spike"] == "graded" and pop["payload"] == "excess"
            cap = pop.get("max_spikes")
            self.cap = int(cap) if cap is not None and int(cap) < n else None
            self.fires_all = bool(np.all(np.isneginf(self.threshold))) and self.cap is None
            self.all_neurons = np.arange(n)
            self.active_phases = None if active_phases is None else frozenset(active_phases)
            self.period = int(period)

        # Each instance is one population: equal parameters must not make two equal.
        __eq__ = object.__eq__
        __hash__ = object.__hash__

        def max_rates_intercepts(self, gain, bias):
            zeros = np.zeros_like(np.asarray(gain, dtype=np.float64))
            return zeros, zeros

        def step(self, dt, J, output, **state):
            raise NotImplementedError("IRNeurons run through SimIRNeurons (build_ir_neurons)")

        def update(self, I, v, u, fired, out):
            if self.unit_decay:
                np.add(v, I, out=u)
            else:
                np.multiply(self.decay, v, out=u)
                u += I
            if self.clamp_low:
                np.maximum(u, self.v_min, out=v)
                if self.clamp_high:
                    np.minimum(v, self.v_max, out=v)
            elif self.clamp_high:
                np.minimum(u, self.v_max, out=v)
            else:
                v[...] = u
            out.fill(0.0)
            fired.fill(0.0)
            if self.fires_all:
                idx = self.all_neurons
            else:
                idx = np.flatnonzero(v > self.threshold)
                if self.cap is not None and idx.size > self.cap:
                    idx = largest_excess(idx, v, self.threshold, self.cap)
            if not idx.size:
                return
            fired[idx] = 1.0
            if self.binary:
                out[idx] = 1.0
            elif self.excess:
                out[idx] = v[idx] - self.threshold[idx]
            else:
                out[idx] = v[idx]
            if self.reset == "subtract":
                v[idx] -= self.reset_value[idx]
            elif self.reset == "to_value":
                v[idx] = self.reset_value[idx]

    class SimIRNeurons(Operator):
        """Sets [output, voltage, pre_clamp, fired]; reads [J, step]: one IR update
        per nengo step (step counts from 1), or 'emit nothing' outside the phases."""

        def __init__(self, neurons, J, output, voltage, pre_clamp, fired, step, tag=None):
            super().__init__(tag=tag)
            self.neurons = neurons
            self.sets = [output, voltage, pre_clamp, fired]
            self.incs = []
            self.reads = [J, step]
            self.updates = []

        def make_step(self, signals, dt, rng):
            J, step = signals[self.reads[0]], signals[self.reads[1]]
            out, v, u, fired = (signals[s] for s in self.sets[:4])
            neurons = self.neurons
            phases, period = neurons.active_phases, neurons.period

            def step_ir_neurons():
                if phases is not None and (int(step) - 1) % period not in phases:
                    out.fill(0.0)
                    fired.fill(0.0)
                    return
                neurons.update(J, v, u, fired, out)

            return step_ir_neurons

    @Builder.register(IRNeurons)
    def build_ir_neurons(model, neuron_type, neurons):
        sig = model.sig[neurons]
        n = neurons.size_in
        sig["voltage"] = Signal(neuron_type.v_init.copy(), name=f"{neurons}.voltage")
        sig["pre_clamp"] = Signal(np.zeros(n), name=f"{neurons}.pre_clamp")
        sig["fired"] = Signal(np.zeros(n), name=f"{neurons}.fired")
        model.add_op(SimIRNeurons(neuron_type, sig["in"], sig["out"], sig["voltage"],
                                  sig["pre_clamp"], sig["fired"], model.step,
                                  tag=f"{neuron_type.name} IR update"))

    class Delay(nengo.synapses.Synapse):
        """Outputs its input of ``steps − 1`` steps ago. Connections build synapses
        in "update" mode (written at step t, read at t + 1), so a connection with
        ``Delay(d)`` delivers W·e(t − d): exactly an IR projection of delay d."""

        def __init__(self, steps):
            super().__init__()
            self.steps = int(steps)

        __eq__ = object.__eq__
        __hash__ = object.__hash__

        def make_state(self, shape_in, shape_out, dt, dtype=None, y0=None):
            if self.steps == 1:
                return {}
            return {"buffer": np.zeros((self.steps - 1,) + tuple(shape_in))}

        def make_step(self, shape_in, shape_out, dt, rng, state):
            if self.steps == 1:
                return lambda t, x: x
            buffer = state["buffer"]

            def step_delay(t, x):
                out = buffer[0].copy()
                buffer[:-1] = buffer[1:]
                buffer[-1] = x
                return out

            return step_delay

    def make_transform(weights, shape):
        """Dense or Sparse (CSR order) transform of the spec's weights."""
        if isinstance(weights, dict):
            rows = np.repeat(np.arange(shape[0]), np.diff(weights["indptr"]))
            indices = np.column_stack([rows, weights["indices"]]).astype(np.int64)
            return nengo.transforms.Sparse(shape, indices=indices, init=weights["data"])
        return nengo.transforms.Dense(shape, init=np.asarray(weights, dtype=np.float64))

    class NengoRun:
        """The network of ``spec`` in a ``nengo.Simulator``, and the host's access to it.

        ``spec``: dt, schedule, populations (kind "ir": the IR fields; kind "lif":
        tau_rc, min_voltage, bias, v_init, scale, offset; either may carry
        ``initial_emission``, e(−1)) and projections (source, target, delay,
        gain, weights as an array or a CSR dict).
        """

        def __init__(self, spec, seed=0):
            self.dt = float(spec["dt"])
            schedule = [list(step) for step in spec["schedule"]]
            period = len(schedule)
            self.pops, self.projections = {}, []
            network = nengo.Network(label="snn-compile", seed=seed)
            ensembles = {}
            with network:
                for pop in spec["populations"]:
                    name, n = pop["name"], int(pop["size"])
                    self.pops[name] = handle = SimpleNamespace(spec=pop, size=n, kind=pop["kind"])
                    if n == 0:
                        continue
                    a = pop["arrays"]
                    if pop["kind"] == "ir":
                        phases = [k for k, step in enumerate(schedule) if name in step]
                        neuron_type = IRNeurons(pop, None if len(phases) == period else phases, period)
                    else:
                        neuron_type = nengo.LIF(
                            tau_rc=float(a["tau_rc"]), tau_ref=0.0, min_voltage=float(a["min_voltage"]),
                            amplitude=self.dt,
                            initial_state={"voltage": np.asarray(a["v_init"], dtype=np.float64),
                                           "refractory_time": np.zeros(n)})
                    ensembles[name] = nengo.Ensemble(
                        n, 1, neuron_type=neuron_type, gain=np.ones(n),
                        bias=np.asarray(a["bias"], dtype=np.float64), encoders=np.ones((n, 1)), label=name)
                connections = []
                for proj in spec["projections"]:
                    src, dst = ensembles.get(proj["source"]), ensembles.get(proj["target"])
                    if src is None or dst is None:
                        connections.append(None)
                        continue
                    shape = (dst.n_neurons, src.n_neurons)
                    connections.append(nengo.Connection(
                        src.neurons, dst.neurons, transform=make_transform(proj["weights"], shape),
                        synapse=None if int(proj["delay"]) == 0 else Delay(proj["delay"]),
                        label=proj["name"]))

            model = Model(dt=self.dt, label="snn-compile")
            model.build(network)
            increments = {id(op.X): op for op in model.operators if isinstance(op, ElementwiseInc)}
            buffers = {id(op.process): op.state.get("buffer") for op in model.operators
                       if isinstance(op, SimProcess)}
            chains = {}
            for proj, conn in zip(spec["projections"], connections):
                handle = SimpleNamespace(spec=proj, name=proj["name"], source=proj["source"],
                                         delay=int(proj["delay"]), gain=proj.get("gain"), conn=conn)
                self.projections.append(handle)
                if conn is None:
                    continue
                handle.increment = increments[id(model.sig[conn]["weighted"])]
                handle.buffer_sig = buffers.get(id(conn.synapse)) if conn.synapse is not None else None
                chains.setdefault(proj["target"], []).append(handle.increment)
            # The IR sums a target's inputs in projection order; make nengo do the same.
            for target, ops in chains.items():
                for k in range(1, len(ops)):
                    token = Signal(np.zeros(1), name=f"{target}.input order {k}")
                    ops[k - 1].incs = ops[k - 1].incs + [token]
                    ops[k].reads = ops[k].reads + [token]
            for name, ens in ensembles.items():
                if self.pops[name].spec.get("bias_gain") is not None:
                    model.sig[ens.neurons]["bias"].readonly = False   # host writes b·g(t)

            self.sim = nengo.Simulator(None, model=model, optimize=False, progress_bar=False)
            signals = self.sim.signals
            for name, handle in self.pops.items():
                if name not in ensembles:
                    handle.voltage = handle.output = handle.fired = handle.pre_clamp = np.zeros(0)
                    continue
                sig = model.sig[ensembles[name].neurons]
                handle.voltage, handle.output = signals[sig["voltage"]], signals[sig["out"]]
                handle.bias = signals[sig["bias"]]
                handle.base_bias = np.array(handle.bias)
                if handle.kind == "ir":
                    handle.fired, handle.pre_clamp = signals[sig["fired"]], signals[sig["pre_clamp"]]
                else:
                    handle.scale = np.asarray(handle.spec["arrays"]["scale"], dtype=np.float64)
                    handle.offset = np.asarray(handle.spec["arrays"]["offset"], dtype=np.float64)
            for handle in self.projections:
                if handle.conn is None:
                    continue
                handle.gains = signals[handle.increment.A]
                handle.delivered = signals[model.sig[handle.conn]["weighted"]]
                handle.weights = signals[model.sig[handle.conn]["weights"]]
                handle.buffer = None if handle.buffer_sig is None else signals[handle.buffer_sig]
            self._gained = [(h.gain, h.gains) for h in self.projections
                            if h.conn is not None and h.gain is not None]
            self._biased = [(h.spec["bias_gain"], h.base_bias, h.bias) for h in self.pops.values()
                            if h.size and h.spec.get("bias_gain") is not None]
            self._last = {}
            # e(−1) (docs/ir.md §2): at "step −1" it is the latest emission, lag 0
            for name, handle in self.pops.items():
                initial = handle.spec["arrays"].get("initial_emission")
                if initial is not None and handle.size:
                    self.write_emission(name, initial, 0)

        # ------------------------------------------------------------ between steps
        def apply_gains(self, value_of):
            """g(t) of every gain (``value_of(name)``) into the gains and bias signals."""
            for name, gains in self._gained:
                g = value_of(name)
                if gains[0] != g:
                    gains.fill(g)
            for name, base, bias in self._biased:
                g = value_of(name)
                if self._last.get(id(bias)) != g:
                    np.multiply(base, g, out=bias)
                    self._last[id(bias)] = g

        def step(self):
            self.sim.step()

        def fired(self, name):
            """Neurons that fired in the last step (IR §2 step 4)."""
            handle = self.pops[name]
            return np.flatnonzero(handle.fired if handle.kind == "ir" else handle.output)

        def emission(self, name):
            return self.pops[name].output

        def state(self, name):
            """The population's state in IR units (the live signal for "ir" populations)."""
            handle = self.pops[name]
            if handle.kind == "ir":
                return handle.voltage
            return handle.offset + handle.scale * handle.voltage

        def clamp_excess(self, name):
            handle = self.pops[name]
            if handle.kind != "ir" or not handle.size:
                return np.zeros(handle.size)
            a = handle.spec["arrays"]
            return handle.pre_clamp - np.clip(handle.pre_clamp, a["v_min"], a["v_max"])

        def write_emission(self, name, values, lag):
            """Make every later read of e_name(t − lag) see ``values``: rewrite the W·e
            that each delayed connection from ``name`` still holds for that step."""
            values = np.asarray(values, dtype=np.float64)
            for handle in self.projections:
                if handle.source != name or handle.conn is None or handle.delay <= lag:
                    continue
                delivered = handle.weights.dot(values)
                if lag == handle.delay - 1:
                    handle.delivered[...] = delivered
                else:
                    handle.buffer[handle.delay - 2 - lag] = delivered

    return SimpleNamespace(IRNeurons=IRNeurons, SimIRNeurons=SimIRNeurons, Delay=Delay,
                           NengoRun=NengoRun, largest_excess=largest_excess)


@functools.lru_cache(maxsize=None)
def _core():
    """``_define_core`` run once per process (its builder registration is global)."""
    import nengo
    return _define_core(nengo, np)


# ====================================================================== IR → spec
def _uniform(values: np.ndarray) -> bool:
    return values.size == 0 or bool(np.all(values == values[0]))


def lif_mismatch(pop, net: Network, controlled: set) -> Optional[str]:
    """Why ``pop`` is not exactly a built-in ``nengo.LIF`` population (None: it is)."""
    reasons = {
        "spikes are not binary": pop.spike != "binary",
        "a threshold is not finite": not np.all(np.isfinite(pop.threshold)),
        "the reset is not to a value": pop.reset != "to_value",
        "a reset value is not below the threshold":
            pop.reset == "to_value" and bool(np.any(pop.reset_value >= pop.threshold)),
        "the decay is not one value in (0, 1)":
            not (_uniform(pop.decay) and pop.size and 0 < pop.decay[0] < 1),
        "it has a state clamp": bool(np.any(np.isfinite(pop.v_min)) or np.any(np.isfinite(pop.v_max))),
        "it has a spike cap": pop.max_spikes_per_step is not None and pop.max_spikes_per_step < pop.size,
        "its bias has a gain": pop.bias_gain is not None,
        "it skips schedule steps": any(pop.name not in step for step in net.schedule),
        "a control rule reads or writes it": pop.name in controlled,
        "it starts above its threshold": bool(np.any(pop.v_init > pop.threshold)),
    }
    failed = [reason for reason, bad in reasons.items() if bad]
    return "; ".join(failed) if failed else None


def lif_map(pop, *, offset: np.ndarray, scale: np.ndarray, dt: float) -> dict:
    """The affine change V' = (V − c)/s (theory.md §1C) that turns an IR neuron with
    decay δ into nengo's LIF: V'← δV' + (1 − δ)J' with threshold 1 and reset 0, where
    J' = I/((1−δ)s) − c/s. Returns tau_rc, the bias and initial V' and the factor
    that divides each incoming weight row."""
    delta = float(pop.decay[0])
    row_factor = (1.0 - delta) * scale
    return {"tau_rc": -dt / math.log(delta), "row_factor": row_factor,
            "bias": pop.bias / row_factor - offset / scale, "v_init": (pop.v_init - offset) / scale}


def _control_populations(net: Network) -> set:
    names = set()
    for rule in net.controls:
        if isinstance(rule, RunningAverage):
            names.update(rule.populations)
        elif isinstance(rule, AdaptiveRestart):
            names.update(rule.population_names)
    return names


def _weights_spec(W, row_factor=None):
    """Dense array or CSR dict (indptr, indices, data) of W with rows divided by row_factor."""
    if sp.issparse(W):
        W = sp.csr_matrix(W, dtype=np.float64)
        W.sort_indices()
        data = W.data.copy()
        if row_factor is not None:
            data /= np.repeat(row_factor, np.diff(W.indptr))
        return {"indptr": W.indptr.astype(np.int64), "indices": W.indices.astype(np.int64), "data": data}
    W = np.array(W, dtype=np.float64)
    return W if row_factor is None else W / row_factor[:, None]


def nengo_spec(net: Network, dt: float = NENGO_DT, *, builtin: bool = True) -> dict:
    """The plain description ``NengoRun`` builds from: each population as a built-in
    LIF (where ``lif_mismatch`` is None and ``builtin``) or as ``IRNeurons``."""
    controlled = _control_populations(net)
    populations, row_factors = [], {}
    for pop in net.populations:
        entry = {"name": pop.name, "size": pop.size, "record": pop.record, "bias_gain": pop.bias_gain}
        if builtin and lif_mismatch(pop, net, controlled) is None:
            scale, offset = pop.threshold - pop.reset_value, pop.reset_value.copy()
            mapped = lif_map(pop, offset=offset, scale=scale, dt=dt)
            row_factors[pop.name] = mapped["row_factor"]
            entry.update(kind="lif", arrays={
                "tau_rc": np.array(mapped["tau_rc"]), "min_voltage": np.array(-np.inf),
                "bias": mapped["bias"], "v_init": mapped["v_init"], "scale": scale, "offset": offset})
        else:
            entry.update(kind="ir", spike=pop.spike, payload=pop.payload, reset=pop.reset,
                         max_spikes=pop.max_spikes_per_step,
                         arrays={key: np.array(getattr(pop, key), dtype=np.float64) for key in
                                 ("decay", "bias", "v_min", "v_max", "v_init", "threshold", "reset_value")})
        if pop.emit_initial_state:
            entry["arrays"]["initial_emission"] = emission_of_state(pop, np.asarray(pop.v_init, np.float64))
        populations.append(entry)
    projections = [{"name": proj.name, "source": proj.source, "target": proj.target, "delay": proj.delay,
                    "gain": proj.gain, "weights": _weights_spec(proj.weights, row_factors.get(proj.target))}
                   for proj in net.projections]
    return {"dt": float(dt), "schedule": [list(step) for step in net.schedule],
            "populations": populations, "projections": projections}


# ====================================================================== host loop
class _Emissions:
    """``EmissionAccess`` for control rules: a host copy of recent emissions, and
    writes that also reach the values delayed connections still hold."""

    def __init__(self, run, depths: dict, clock):
        self._run, self._clock = run, clock
        self._depth = depths
        self._ring = {name: np.zeros((depth, run.pops[name].size)) for name, depth in depths.items()}
        for name, ring in self._ring.items():    # e(−1), which emission(name, lag) reads at step 0
            initial = run.pops[name].spec["arrays"].get("initial_emission")
            if initial is not None:
                ring[-1 % len(ring)] = initial
        self.last = {name: -1 for name in depths}

    def record(self, t: int, updated):
        for name in updated:
            self.last[name] = t
        for name, ring in self._ring.items():
            ring[t % len(ring)] = self._run.emission(name)

    def _check(self, population: str, lag: int):
        if not 0 <= lag < self._depth[population]:
            raise ValueError(f"population {population!r} keeps emissions of the last "
                             f"{self._depth[population]} step(s) only (lag {lag} requested)")

    def emission(self, population: str, lag: int) -> np.ndarray:
        self._check(population, lag)
        view = self._ring[population][(self._clock() - lag) % self._depth[population]].view()
        view.flags.writeable = False
        return view

    def set_emission(self, population: str, values, lag: int) -> None:
        self._check(population, lag)
        self._ring[population][(self._clock() - lag) % self._depth[population]] = values
        self._run.write_emission(population, values, lag)

    def last_update(self, population: str) -> int:
        return self.last[population]

    def depth(self, population: str) -> int:
        return self._depth[population]


class NengoBackend(Backend):
    name = "nengo"
    description = "nengo.Simulator (float64): IR populations as nengo neurons, stepped from the host"

    OPTIONS = ("dt", "builtin_neurons", "check_every", "max_events", "sample_populations", "seed")

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("nengo") is None:
            return False, "nengo is not installed (pip install 'snn-compile[nengo]')"
        return True, ""

    def capabilities(self) -> Capabilities:
        return Capabilities(
            features=frozenset(FEATURES) - {"fixed_point"},
            notes="every IR feature; populations that fit nengo.LIF exactly run as LIF (same "
                  "spikes up to float rounding), all others as IRNeurons (bit-identical to the "
                  "reference); a quantized network runs with its dequantized parameters in float")

    def run(self, net: Network, steps: int, *, record_every: Optional[int] = None,
            progress: bool = False, stop: Optional[StopCallback] = None, dt: float = NENGO_DT,
            builtin_neurons: bool = True, check_every: int = 100, max_events: int = DEFAULT_MAX_EVENTS,
            sample_populations=None, seed: int = 0, **options) -> Trace:
        """Options: ``dt`` (seconds per step, default 1 ms), ``builtin_neurons``
        (False: every population as IRNeurons), ``check_every`` (steps between
        ``stop`` polls), ``max_events``, ``sample_populations``, ``seed``."""
        if options:
            raise InputError(f"unknown option(s) {sorted(options)} for target 'nengo'; "
                             f"known: {', '.join(self.OPTIONS)}", field="options")
        self.check(net)
        steps = int(steps)
        if steps < 0:
            raise InputError("must be ≥ 0", field="steps")
        if not (dt > 0 and math.isfinite(dt)):
            raise InputError("must be a positive number of seconds", field="dt")
        core = _core()
        spec = nengo_spec(net, dt, builtin=builtin_neurons)
        run = core.NengoRun(spec, seed=seed)
        return _host_loop(self.name, net, run, steps, record_every=record_every, progress=progress,
                          stop=stop, check_every=check_every, max_events=max_events,
                          sample_populations=sample_populations,
                          meta={"dt": dt,
                                "neuron_types": {p["name"]: p["kind"] for p in spec["populations"]}})

    def emit(self, net: Network, out_dir) -> list[Path]:
        """``run_nengo.py`` plus ``nengo_network.json``/``.npz``: the script rebuilds
        and runs the network with nengo and numpy only and writes
        ``nengo_result.json`` (x, y, z, z_box) and ``nengo_result.npz`` (raw states)."""
        self.check(net)
        return emit_nengo_script(net, out_dir)


def _host_loop(backend: str, net: Network, run, steps: int, *, record_every, progress, stop,  # noqa: C901
               check_every, max_events, sample_populations, meta) -> Trace:
    """Step ``run`` (a ``NengoRun``) ``steps`` times with the shared gain and control runtime."""
    names = [p.name for p in net.populations]
    pops = {p.name: p for p in net.populations}
    gains = GainState(net.gains)
    depths = {name: 1 for name in names}
    for proj in net.projections:
        depths[proj.source] = max(depths[proj.source], proj.delay + 1)
    clock = [0]
    emissions = _Emissions(run, depths, lambda: clock[0])
    # Live signals for IR populations; float mirrors (refreshed before rules run) for LIF ones.
    states = {name: run.state(name) if run.pops[name].kind == "ir" else run.state(name).copy()
              for name in names}
    mirrored = [name for name in names if run.pops[name].kind != "ir"]
    controls = ControlRuntime(net, states, gains, emissions)
    phases = [tuple(step) for step in net.schedule]
    eligible = {name: np.isfinite(pops[name].threshold) | (pops[name].spike == "binary") for name in names}
    counting = [name for name in names if eligible[name].any()]
    spike_counts = {name: np.zeros(pops[name].size, dtype=np.int64) for name in names}
    events = {name: EventLog(max_events) for name in names if pops[name].record}
    updates = {name: 0 for name in names}

    record_every, sample_steps, sample_states = sample_buffers(
        {name: pops[name].size for name in names}, sample_populations, steps, record_every)
    n_samples = sample_steps.size

    def refresh_mirrors():
        for name in mirrored:
            states[name][...] = run.state(name)

    used_gains = list(gains.values(0))

    def snapshot() -> Trace:
        return Trace(
            steps=taken,
            final_state={n: np.array(run.state(n), dtype=np.float64) for n in names},
            clamp_excess={n: run.clamp_excess(n) if updates[n] else np.zeros(pops[n].size) for n in names},
            averages={n: a.mean.copy() for n, a in controls.averages.items()},
            spike_counts={n: c.copy() for n, c in spike_counts.items()},
            updates=dict(updates),
            gains_final={name: float(used_gains[i]) for i, name in enumerate(gains.names)},
            control_log=controls.context.log, backend=backend, dtype="float64",
            meta={"family": net.family, "neurons": net.neuron_count, "synapses": net.synapse_count, **meta})

    controls.context.snapshot = snapshot
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc=f"{backend} {net.family}", unit="step")
    check_every = max(1, int(check_every))
    taken, stopped = 0, False
    index = {name: gains.index(name) for name in gains.names}
    # control rules and stop callbacks may read recent emissions (ctx.emission)
    tracks_emissions = controls.active or stop is not None
    started = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps):
            k = t % len(phases)
            values = gains.values(t)
            run.apply_gains(lambda name: values[index[name]])
            run.step()
            used_gains = list(values)
            taken = t + 1
            for name in phases[k]:
                updates[name] += 1
            for name in counting:
                if name not in phases[k]:
                    continue
                fired = run.fired(name)
                if not eligible[name].all():
                    fired = fired[eligible[name][fired]]
                if fired.size:
                    spike_counts[name][fired] += 1
                    if name in events:
                        events[name].append(t, fired, run.emission(name)[fired])
            if tracks_emissions:
                clock[0] = t
                emissions.record(t, phases[k])
            if controls.active:
                refresh_mirrors()
                controls.after_step(t, phases[k])
            if n_samples and taken % record_every == 0:
                row = taken // record_every - 1
                sample_steps[row] = t
                for name, rows in sample_states.items():
                    rows[row] = run.state(name)
            if stop is not None and taken % check_every == 0:
                clock[0] = t
                controls.context.step = t
                refresh_mirrors()
                if stop(t, controls.context):
                    stopped = True
                    controls.context.record("stop", reason="stop callback")
                    break
            if bar is not None:
                bar.update(1)
    wall = time.perf_counter() - started
    if bar is not None:
        bar.close()
    return finish_trace(snapshot(), events, sample_steps, sample_states, taken, record_every, wall, stopped)


# ====================================================================== run_nengo.py
# The functions and classes named _script_* are copied, with _define_core, into the
# emitted run_nengo.py: they use numpy only and repeat the shared runtime's
# arithmetic (snn_compile.runtime) operation for operation, so the script's run is
# the backend's run. tests/test_backend_nengo.py checks that they agree.

def _script_matvec(M, x):
    """M x for a dense array or a CSR dict; CSR rows are summed in column order from
    0.0, exactly as scipy's csr_matvec does."""
    if isinstance(M, np.ndarray):
        return M @ x
    return np.bincount(M["rows"], M["data"] * x[M["indices"]], minlength=M["shape"][0])


def _script_rmatvec(M, y):
    """Mᵀ y, summed like scipy's csc_matvec of the transpose (rows of M in order)."""
    if isinstance(M, np.ndarray):
        return M.T @ y
    return np.bincount(M["indices"], M["data"] * y[M["rows"]], minlength=M["shape"][1])


class _ScriptGains:
    """g(t) (docs/ir.md §2, formula gains §2.1); t and ω belong to the restart rule."""

    def __init__(self, gains):
        self.gains = gains
        self.epoch_step = None
        self.primal_weight = 1.0

    def value(self, gain, step):
        if gain.get("formula") == "apdhg":
            p, omega = gain["params"], self.primal_weight
            t = step + 1 if self.epoch_step is None else self.epoch_step
            L, k, s = p["L"], p["k"], p["s"]
            b = 2.0 / (t + 1)
            tau = 1.0 / (b * L / s + omega * k / np.sqrt(s))
            term = {"b": b, "1-b": 1.0 - b, "tau": tau, "tau*b": tau * b, "tau*(1-b)": tau * (1.0 - b),
                    "sigma": np.sqrt(s) * omega / k}[p["term"]]
            return 1.0 * (gain["value"] * term)
        value = gain["value"]
        for start, v in zip(gain["steps"], gain["values"]):
            if step >= start:
                value = v
        return 1.0 * value

    def values(self, step):
        return {gain["name"]: self.value(gain, step) for gain in self.gains}


def _script_kkt(problem, x, v):
    """KKT(x, v) of docs/ir.md §4 on the rule's scaled problem; v = [z; y]."""
    m_g = problem["G"]["shape"][0]
    z, y = v[:m_g], v[m_g:]
    g = _script_matvec(problem["P"], x) + problem["q"] + _script_rmatvec(problem["G"], z) \
        + _script_rmatvec(problem["A"], y)
    zeta = -g
    lb, ub = problem["lb"], problem["ub"]
    free_lo, free_hi = ~np.isfinite(lb), ~np.isfinite(ub)
    zeta[free_lo] = np.maximum(zeta[free_lo], 0.0)
    zeta[free_hi] = np.minimum(zeta[free_hi], 0.0)
    r_d = g + zeta
    r_p = np.concatenate([np.maximum(_script_matvec(problem["G"], x) - problem["h"], 0.0),
                          _script_matvec(problem["A"], x) - problem["b"]])
    fin_lo, fin_hi = ~free_lo, ~free_hi
    gap = (x @ _script_matvec(problem["P"], x) + problem["q"] @ x + problem["h"] @ z + problem["b"] @ y
           + lb[fin_lo] @ np.minimum(zeta[fin_lo], 0.0) + ub[fin_hi] @ np.maximum(zeta[fin_hi], 0.0))
    return float(np.sqrt(r_p @ r_p + r_d @ r_d + gap * gap))


class _ScriptControls:
    """RunningAverage and AdaptiveRestart (docs/ir.md §4), run after every step."""

    def __init__(self, controls, run, gains, populations, depths):
        self.run, self.gains, self.populations, self.depths = run, gains, populations, depths
        self.averages, self.restart, self.restarts = {}, None, 0
        self.last_update = {name: -1 for name in populations}
        for rule in controls:
            if rule["type"] == "RunningAverage":
                for name in rule["populations"]:
                    self.averages.setdefault(name, [np.zeros(populations[name]["size"]), 0])
            else:
                self.restart = rule
        if self.restart is not None:
            rule = self.restart
            gains.primal_weight, gains.epoch_step = float(rule["primal_weight_init"]), 1
            self.t = 1
            self.x_r = np.array(run.state(rule["primal"]), dtype=np.float64)
            self.v_r = np.array(run.state(rule["dual"]), dtype=np.float64)
            self.kkt_r, self.kkt_prev = _script_kkt(rule["problem"], self.x_r, self.v_r), np.inf

    @property
    def active(self):
        return bool(self.averages) or self.restart is not None

    def emission_of_state(self, name, v):
        pop = self.populations[name]
        fired = v > pop["arrays"]["threshold"]
        if pop["spike"] == "binary":
            return fired.astype(v.dtype)
        payload = v if pop["payload"] == "state" else v - pop["arrays"]["threshold"]
        return np.where(fired, payload, 0.0)

    def after_step(self, step, updated):
        for name in updated:
            self.last_update[name] = step
            if name in self.averages:
                entry = self.averages[name]
                entry[1] += 1
                scratch = self.run.state(name) - entry[0]
                scratch /= entry[1]
                entry[0] += scratch
        if self.restart is not None:
            self._restart(step)

    def _restart(self, step):
        rule, gains = self.restart, self.gains
        self.t += 1
        gains.epoch_step = self.t
        if (step + 1) % rule["check_every"]:
            return
        state = lambda name: np.array(self.run.state(name), dtype=np.float64)  # noqa: E731
        x, v = state(rule["primal"]), state(rule["dual"])
        x_avg, v_avg = state(rule["primal_average"]), state(rule["dual_average"])
        kkt_cur, kkt_avg = _script_kkt(rule["problem"], x, v), _script_kkt(rule["problem"], x_avg, v_avg)
        x_c, v_c, kkt_c = (x_avg, v_avg, kkt_avg) if kkt_avg < kkt_cur else (x, v, kkt_cur)
        fire = (kkt_c <= rule["beta_sufficient"] * self.kkt_r
                or (kkt_c <= rule["beta_necessary"] * self.kkt_r and kkt_c > self.kkt_prev)
                or self.t >= rule["beta_artificial"] * (step + 1))
        self.kkt_prev = kkt_c
        if not fire:
            return
        omega = gains.primal_weight
        if rule["update_primal_weight"]:
            dx = float(np.linalg.norm(x_c - self.x_r))
            dv = float(np.linalg.norm(v_c - self.v_r))
            if dx > 1e-10:
                ratio = dv / dx if dv > 1e-10 else omega / 10.0
                theta = rule["primal_weight_smoothing"]
                omega = float(np.exp(theta * np.log(ratio) + (1.0 - theta) * np.log(omega)))
                gains.primal_weight = omega
        for name, value in ((rule["primal"], x_c), (rule["primal_average"], x_c), (rule["dual"], v_c),
                            (rule["dual_average"], v_c)):
            self.run.state(name)[...] = value
            last = self.last_update[name]
            if last >= 0 and step - last < self.depths[name]:
                self.run.write_emission(name, self.emission_of_state(name, value), step - last)
        self.x_r, self.v_r = x_c.copy(), v_c.copy()
        self.kkt_r, self.kkt_prev, self.t = _script_kkt(rule["problem"], x_c, v_c), np.inf, 1
        gains.epoch_step = 1
        self.restarts += 1


def _script_load(json_path, npz_path):
    """The spec of nengo_network.json with every array key replaced by its array."""
    doc = json.loads(Path(json_path).read_text())
    with np.load(npz_path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}

    def matrix(entry):
        if entry is None:
            return None
        if "dense" in entry:
            return arrays[entry["dense"]]
        csr = {key: arrays[entry[key]] for key in ("indptr", "indices", "data")}
        csr["shape"] = tuple(entry["shape"])
        csr["rows"] = np.repeat(np.arange(csr["shape"][0]), np.diff(csr["indptr"]))
        return csr

    for pop in doc["network"]["populations"]:
        pop["arrays"] = {name: arrays[key] for name, key in pop["arrays"].items()}
    for proj in doc["network"]["projections"]:
        proj["weights"] = matrix(proj["weights"])
    for rule in doc["controls"]:
        if rule["type"] == "AdaptiveRestart":
            rule["problem"] = {name: matrix(value) if isinstance(value, dict) else arrays[value]
                               for name, value in rule["problem"].items()}
    for term in doc["readout"]["terms"]:
        term["matrix"] = matrix(term["matrix"])
    doc["readout"]["offsets"] = {t: arrays[key] for t, key in doc["readout"]["offsets"].items()}
    doc["scaling"] = {name: None if key is None else arrays[key] for name, key in doc["scaling"].items()}
    return doc


def _script_decode(doc, final_state, clamp_excess, averages, spike_counts, updates, gains_final):
    """The readout (docs/ir.md §3), mapped back through the preconditioning scaling."""
    readout = doc["readout"]
    out = {target: np.zeros(size) for target, size in readout["sizes"].items()}
    for term in readout["terms"]:
        name = term["population"]
        q = {"state": final_state, "clamp_excess": clamp_excess, "average": averages}.get(term["quantity"])
        if q is not None:
            q = q[name]
        else:
            q = spike_counts[name] / updates[name] if updates[name] else np.zeros(spike_counts[name].size)
        value = q if term["matrix"] is None else _script_matvec(term["matrix"], q)
        value = term["scale"] * value
        if term["divide_by_gain"] is not None:
            value = value / gains_final[term["divide_by_gain"]]
        out[term["target"]] = out.get(term["target"], 0.0) + value
    for target, offset in readout["offsets"].items():
        out[target] = out.get(target, 0.0) + offset
    s = doc["scaling"]
    if s["d"] is not None:
        c = float(s["cost"])
        out["x"] = s["d"] * out["x"]
        out["y"] = s["e_eq"] * out["y"] / c
        out["z"] = s["e_ineq"] * out["z"] / c
        out["z_box"] = out["z_box"] / (s["d"] * c)
    return out


def _script_main(argv=None):
    """Rebuild the network, run it for --steps steps, write the result files."""
    import argparse

    import nengo

    parser = argparse.ArgumentParser(description="Run an snn-compile network with nengo.")
    parser.add_argument("--steps", type=int, default=None,
                        help="network steps (default: the settling hint or the family's budget)")
    parser.add_argument("--out", default=None, help="folder for the result files (default: this folder)")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parent
    doc = _script_load(here / SPEC_JSON, here / SPEC_NPZ)
    steps = doc["default_steps"] if args.steps is None else args.steps
    run = _define_core(nengo, np).NengoRun(doc["network"])
    populations = {p["name"]: p for p in doc["network"]["populations"]}
    depths = {name: 1 for name in populations}
    for proj in doc["network"]["projections"]:
        depths[proj["source"]] = max(depths[proj["source"]], proj["delay"] + 1)
    gains = _ScriptGains(doc["gains"])
    controls = _ScriptControls(doc["controls"], run, gains, populations, depths)
    schedule = [tuple(step) for step in doc["network"]["schedule"]]
    counted = {name: np.isfinite(p["arrays"]["threshold"]) | (p["spike"] == "binary") if p["kind"] == "ir"
               else np.ones(p["size"], dtype=bool) for name, p in populations.items()}
    spike_counts = {name: np.zeros(p["size"], dtype=np.int64) for name, p in populations.items()}
    updates = {name: 0 for name in populations}
    values = gains.values(0)
    started = time.perf_counter()
    for t in range(steps):
        values = gains.values(t)
        run.apply_gains(values.__getitem__)
        run.step()
        updated = schedule[t % len(schedule)]
        for name in updated:
            updates[name] += 1
            fired = run.fired(name)
            spike_counts[name][fired[counted[name][fired]]] += 1
        if controls.active:
            controls.after_step(t, updated)
    wall = time.perf_counter() - started
    final_state = {name: np.array(run.state(name), dtype=np.float64) for name in populations}
    clamp_excess = {name: run.clamp_excess(name) if updates[name] else np.zeros(p["size"])
                    for name, p in populations.items()}
    averages = {name: entry[0] for name, entry in controls.averages.items()}
    return _script_write_results(doc, Path(args.out) if args.out else here, steps, wall, final_state,
                                 clamp_excess, averages, spike_counts, updates, values, controls.restarts)


def _script_write_results(doc, out, steps, wall, final_state, clamp_excess, averages, spike_counts, updates,
                          gains_final, restarts):
    """Decode, then write RESULT_NPZ (raw quantities) and RESULT_JSON (the solution)."""
    solution = _script_decode(doc, final_state, clamp_excess, averages, spike_counts, updates, gains_final)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {f"{group}.{name}": value for group, table in
              (("final_state", final_state), ("clamp_excess", clamp_excess), ("average", averages),
               ("spike_counts", spike_counts)) for name, value in table.items()}
    np.savez(out / RESULT_NPZ, **arrays)
    spikes = int(sum(spike_counts[name].sum() for name in doc["constraint_populations"]))
    result = {"target": doc["target"], "family": doc["family"], "steps": steps, "spikes": spikes,
              "restarts": restarts, "wall_time_s": wall,
              **{key: np.asarray(value, dtype=np.float64).tolist() for key, value in solution.items()}}
    (out / RESULT_JSON).write_text(json.dumps(result, indent=1))
    print(f"{steps} steps in {wall:.2f} s; x = {result.get('x')}")
    return result


def _script_loihi_main(argv=None):
    """Rebuild the chip network, run --steps steps on the emulator, write the result files."""
    import argparse
    import warnings

    import nengo
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # nengo-loihi 1.1 was not tested with nengo 4.1
        import nengo_loihi

    parser = argparse.ArgumentParser(description="Run an snn-compile network on nengo-loihi's emulator.")
    parser.add_argument("--steps", type=int, default=None, help="network steps (default: the settling run)")
    parser.add_argument("--out", default=None, help="folder for the result files (default: this folder)")
    parser.add_argument("--emulator", default="sim", choices=("sim", "simreal"),
                        help="sim: Loihi's integer arithmetic; simreal: the same dynamics in float")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parent
    doc = _script_load(here / SPEC_JSON, here / SPEC_NPZ)
    steps = doc["default_steps"] if args.steps is None else args.steps
    run = _define_loihi_core(nengo, nengo_loihi, np).LoihiRun(doc["network"], emulator=args.emulator)
    sizes = {p["name"]: int(p["size"]) for p in doc["network"]["populations"]}
    spike_counts = {name: np.zeros(n, dtype=np.int64) for name, n in sizes.items()}
    started, done = time.perf_counter(), 0
    while done < steps:
        chunk = min(5000, steps - done)
        for name, rows in run.run(chunk).items():
            for fired in rows:
                spike_counts[name][fired] += 1
        done += chunk
    wall = time.perf_counter() - started
    final_state = {name: np.array(run.state(name), dtype=np.float64) for name in sizes}
    clamp_excess = {name: run.clamp_excess(name) for name in sizes}
    gains_final = _ScriptGains(doc["gains"]).values(max(steps - 1, 0))
    updates = {name: steps for name in sizes}
    return _script_write_results(doc, Path(args.out) if args.out else here, steps, wall, final_state,
                                 clamp_excess, {}, spike_counts, updates, gains_final, 0)


_SCRIPT_PARTS = (_script_matvec, _script_rmatvec, _ScriptGains, _script_kkt, _ScriptControls,
                 _script_load, _script_decode, _script_write_results, _script_main)
_LOIHI_SCRIPT_PARTS = (_script_matvec, _ScriptGains, _script_load, _script_decode, _script_write_results,
                       _script_loihi_main)

_SCRIPT_HEADER = '''#!/usr/bin/env python3
"""Generated by snn-compile (target {target}, family {family}).

Rebuilds the network from {spec_json} and {spec_npz} next to this file, runs it
{runs} and writes {result_json} (x, y, z, z_box of the original problem) and
{result_npz} (final states, averages, spike counts). Needs only {needs}.

    python {script} [--steps N] [--out FOLDER]
"""
import json
import time
from pathlib import Path

import numpy as np

SPEC_JSON, SPEC_NPZ = {spec_json!r}, {spec_npz!r}
RESULT_JSON, RESULT_NPZ = {result_json!r}, {result_npz!r}

'''

_SCRIPT_RUNS = {
    "nengo": "with nengo (IR populations as nengo neurons, stepped from the host; gains and\n"
             "control rules computed here between steps)",
    "nengo-loihi": "on nengo-loihi's Loihi 1 emulator (LIF neurons on the chip; readout\n"
                   "populations updated here from the chip's spikes)",
}
_SCRIPT_NEEDS = {"nengo": "nengo and numpy", "nengo-loihi": "nengo, nengo-loihi and numpy"}

_SCRIPT_FOOTER = '''


if __name__ == "__main__":
    {main}()
'''


def _emit(net: Network, out_dir, network: dict, *, target: str, files: dict, core, parts, main) -> list[Path]:
    """Write a standalone script and its data files: ``network`` (a ``nengo_spec`` or
    ``loihi_spec``) plus the gains, control rules, readout and scaling, every array
    in the .npz and referenced by key from the .json."""
    from snn_compile.api import DEFAULT_STEPS

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}

    def put(key: str, value) -> str:
        arrays[key] = np.asarray(value)
        return key

    def put_matrix(key: str, M, shape):
        """{"dense": key} or {"indptr", "indices", "data": keys, "shape"}; M is an
        array, a scipy matrix or a CSR dict of ``_weights_spec``."""
        if M is None:
            return None
        if sp.issparse(M):
            M = _weights_spec(M)
        if isinstance(M, dict):
            return {**{part: put(f"{key}.{part}", M[part]) for part in ("indptr", "indices", "data")},
                    "shape": [int(n) for n in shape]}
        return {"dense": put(f"{key}.dense", M)}

    populations = []
    for i, pop in enumerate(network["populations"]):
        entry = {k: v for k, v in pop.items() if k != "arrays"}
        entry["arrays"] = {name: put(f"pop{i}.{name}", value) for name, value in pop["arrays"].items()}
        populations.append(entry)
    projections = []
    for i, (proj, ir_proj) in enumerate(zip(network["projections"], net.projections)):
        entry = {k: v for k, v in proj.items() if k != "weights"}
        entry["weights"] = put_matrix(f"proj{i}", proj["weights"], ir_proj.weights.shape)
        projections.append(entry)
    controls = []
    for i, rule in enumerate(net.controls):
        if isinstance(rule, RunningAverage):
            controls.append({"type": "RunningAverage", "populations": list(rule.populations)})
            continue
        problem = {}
        for name in ("P", "G", "A"):
            M = sp.csr_matrix(getattr(rule.problem, name))
            problem[name] = put_matrix(f"restart{i}.{name}", M, M.shape)
        for name in ("q", "h", "b", "lb", "ub"):
            problem[name] = put(f"restart{i}.{name}", getattr(rule.problem, name))
        controls.append({"type": "AdaptiveRestart", "problem": problem, **{
            key: getattr(rule, key) for key in (
                "check_every", "primal", "primal_average", "dual", "dual_average", "primal_weight_init",
                "beta_sufficient", "beta_necessary", "beta_artificial", "primal_weight_smoothing",
                "update_primal_weight")}})
    terms = [{"target": term.target, "population": term.population, "quantity": term.quantity,
              "matrix": put_matrix(f"readout{i}", term.matrix, getattr(term.matrix, "shape", None)),
              "scale": term.scale, "divide_by_gain": term.divide_by_gain}
             for i, term in enumerate(net.readout.terms)]
    scaling = net.provenance.get("scaling") or {}
    steps_hint = net.provenance.get("params", {}).get("steps_hint")
    doc = {
        "format": SPEC_FORMAT, "version": 1, "target": target, "family": net.family,
        "default_steps": int(steps_hint or DEFAULT_STEPS.get(net.family, 100_000)),
        "network": {"dt": network["dt"], "schedule": network["schedule"], "populations": populations,
                    "projections": projections},
        "gains": [{"name": g.name, "value": g.value, "steps": list(g.steps), "values": list(g.values),
                   "formula": g.formula, "params": dict(g.params)} for g in net.gains],
        "controls": controls,
        "readout": {"terms": terms, "sizes": dict(net.readout.sizes),
                    "offsets": {t: put(f"offset.{t}", v) for t, v in net.readout.offsets.items()}},
        "scaling": {name: (put(f"scaling.{name}", scaling[name]) if scaling.get(name) is not None else None)
                    for name in ("d", "e_ineq", "e_eq", "cost")},
        "constraint_populations": [p.name for p in net.populations if p.role == "constraint"],
    }
    paths = [out / files["spec_json"], out / files["spec_npz"], out / files["script"]]
    paths[0].write_text(json.dumps(doc, indent=1, allow_nan=False))
    np.savez(paths[1], **arrays)
    header = _SCRIPT_HEADER.format(target=target, family=net.family, runs=_SCRIPT_RUNS[target],
                                   needs=_SCRIPT_NEEDS[target], **files)
    source = [header, inspect.getsource(core)] + [inspect.getsource(part) for part in parts]
    paths[2].write_text("\n\n".join(source) + _SCRIPT_FOOTER.format(main=main.__name__))
    return paths


NENGO_FILES = dict(spec_json=SPEC_JSON, spec_npz=SPEC_NPZ, script=SCRIPT, result_json=RESULT_JSON,
                   result_npz=RESULT_NPZ)
LOIHI_FILES = dict(spec_json="nengo_loihi_network.json", spec_npz="nengo_loihi_network.npz",
                   script="run_nengo_loihi.py", result_json="nengo_loihi_result.json",
                   result_npz="nengo_loihi_result.npz")


def emit_nengo_script(net: Network, out_dir, dt: float = NENGO_DT) -> list[Path]:
    """Write run_nengo.py and its data files (see ``NengoBackend.emit``)."""
    return _emit(net, out_dir, nengo_spec(net, dt), target="nengo", files=NENGO_FILES, core=_define_core,
                 parts=_SCRIPT_PARTS, main=_script_main)


# ====================================================================== nengo-loihi
#: min_voltage for chip LIF neurons: far below anything reachable, so nengo-loihi's
#: power-of-two voltage floor (−2^31 + 1 after discretization) never binds.
_NO_FLOOR = -1e12

#: Longest emulator run between host reads (bounds the spike probe's memory).
_LOIHI_MAX_CHUNK = 5000

#: IR features nengo-loihi runs approximately, with what the chip does instead.
LOIHI_APPROXIMATIONS = {
    "reset_subtract": "a subtractive reset becomes Loihi's reset to zero in the affine variable "
                      "V' = (V − T + R)/R, i.e. V ← T − R: the overshoot V − T above the "
                      "threshold is lost",
    "max_spikes_per_step": "the one-spike-per-step cap is not enforced: every neuron above its "
                           "threshold fires",
}


def loihi_plan(net: Network) -> dict:
    """How ``net`` maps onto nengo-loihi, or a CapabilityError naming every obstacle.

    On-chip populations: binary spikes, finite thresholds, one decay in (0, 1) (a
    LIF time constant), no clamp, no bias gain, updated every step, reset to a value
    below the threshold or subtractive (approximated). Host readouts: populations
    that never fire (threshold +∞) and feed nothing; the host runs their IR update
    exactly from the chip's spikes. Projections between chip populations must have
    delay 1 (the chip's axon delay); projection gains must be constant; no control
    rules; no nonzero emission of the initial state before step 0 (``emit_initial_state``).
    """
    problems, approximations = [], {}
    outgoing = {p.name: [q for q in net.projections if q.source == p.name] for p in net.populations}
    chip, host, empty = [], [], []
    for pop in net.populations:
        where = f"population '{pop.name}'"
        if pop.size == 0:
            empty.append(pop.name)
            continue
        if any(pop.name not in step for step in net.schedule):
            problems.append(f"{where} does not update every step")
        if np.all(np.isposinf(pop.threshold)) and not outgoing[pop.name]:
            host.append(pop.name)
            if pop.bias_gain is not None and (net.gain(pop.bias_gain).formula or net.gain(pop.bias_gain).steps):
                problems.append(f"{where} has a time-varying bias gain")
            continue
        chip.append(pop.name)
        if pop.spike != "binary":
            problems.append(f"{where} emits graded spikes (Loihi 1 has binary spikes only)")
        if not np.all(np.isfinite(pop.threshold)):
            problems.append(f"{where} has a non-finite threshold")
        if not (pop.size and _uniform(pop.decay) and 0.0 < pop.decay[0] < 1.0):
            problems.append(f"{where} needs one decay in (0, 1) for a LIF time constant")
        if np.any(np.isfinite(pop.v_min)) or np.any(np.isfinite(pop.v_max)):
            problems.append(f"{where} has a state clamp (Loihi 1 has none)")
        if pop.bias_gain is not None:
            problems.append(f"{where} has a bias gain")
        if pop.reset == "none":
            problems.append(f"{where} never resets (Loihi resets every spike)")
        elif pop.reset == "to_value" and np.any(pop.reset_value >= pop.threshold):
            problems.append(f"{where} resets to a value not below its threshold")
        elif pop.reset == "subtract":
            if np.any(pop.reset_value <= 0):
                problems.append(f"{where} has a non-positive subtractive reset")
            approximations["reset_subtract"] = where
        if pop.max_spikes_per_step is not None and pop.max_spikes_per_step < pop.size:
            approximations["max_spikes_per_step"] = where
        if pop.emit_initial_state and np.any(emission_of_state(pop, pop.v_init) != 0):
            # a spike before step 0 would have to be injected into the emulator's axons
            problems.append(f"{where} needs {FEATURES['initial_emission']}")
    chip_set = set(chip)
    for proj in net.projections:           # host readouts feed nothing: every source is on the chip
        where = f"projection '{proj.name}'"
        if proj.target in chip_set and proj.delay != 1:
            problems.append(f"{where} has delay {proj.delay} (between chip neurons only delay 1 exists)")
        if proj.gain is not None:
            gain = net.gain(proj.gain)
            if gain.formula is not None or gain.steps:
                problems.append(f"{where} has a time-varying gain")
    if net.controls:
        problems.append("control rules (the chip cannot be paused and rewritten every step here)")
    if not chip:
        problems.append("no neurons for the chip")
    if problems:
        raise CapabilityError("target 'nengo-loihi' cannot run this network (it runs the 'lif' family): "
                              + "; ".join(problems))
    return {"chip": chip, "host": host, "empty": empty, "approximations": approximations}


class NengoLoihiBackend(Backend):
    name = "nengo-loihi"
    description = ("nengo-loihi's Loihi 1 emulator (integer arithmetic, its own discretization); "
                   "the lif family")

    OPTIONS = ("dt", "emulator", "check_every", "max_events", "sample_populations", "seed")

    @classmethod
    def available(cls) -> tuple[bool, str]:
        for package in ("nengo", "nengo_loihi"):
            if importlib.util.find_spec(package) is None:
                return False, f"{package} is not installed (pip install 'snn-compile[nengo]')"
        return True, ""

    def capabilities(self) -> Capabilities:
        return Capabilities(
            features=frozenset({"binary_spikes", "decay", "reset_to_value", "graded_spikes", "zero_delay",
                                "fixed_point"}),
            max_delay=1,
            notes="binary LIF neurons on the chip; graded and delay-0 only into host readouts "
                  "(populations that never fire); approximated: "
                  + "; ".join(f"{k}: {v}" for k, v in LOIHI_APPROXIMATIONS.items()))

    def check(self, net: Network) -> None:
        loihi_plan(net)

    def emit(self, net: Network, out_dir) -> list[Path]:
        """``run_nengo_loihi.py`` plus ``nengo_loihi_network.json``/``.npz``: the script
        rebuilds the chip network with nengo, nengo-loihi and numpy only, runs the
        emulator (``--emulator sim|simreal``) and writes ``nengo_loihi_result.json``
        and ``nengo_loihi_result.npz``."""
        plan = loihi_plan(net)
        return _emit(net, out_dir, loihi_spec(net, plan), target="nengo-loihi", files=LOIHI_FILES,
                     core=_define_loihi_core, parts=_LOIHI_SCRIPT_PARTS, main=_script_loihi_main)

    def run(self, net: Network, steps: int, *, record_every: Optional[int] = None,  # noqa: C901
            progress: bool = False, stop: Optional[StopCallback] = None, dt: float = NENGO_DT,
            emulator: str = "sim", check_every: int = 1000, max_events: int = DEFAULT_MAX_EVENTS,
            sample_populations=None, seed: int = 0, **options) -> Trace:
        """Options: ``dt``; ``emulator`` ("sim": integer Loihi arithmetic after
        nengo-loihi's discretization, the default; "simreal": the same dynamics in
        float, to separate discretization from the chip's semantics);
        ``check_every`` (steps between ``stop`` polls); ``max_events``,
        ``sample_populations``, ``seed``. The emulator runs in chunks that end at
        every state sample and stop poll (``record_every=0`` for long chunks)."""
        if options:
            raise InputError(f"unknown option(s) {sorted(options)} for target 'nengo-loihi'; "
                             f"known: {', '.join(self.OPTIONS)}", field="options")
        if emulator not in ("sim", "simreal"):
            raise InputError("must be 'sim' or 'simreal'", field="emulator")
        plan = loihi_plan(net)
        steps = int(steps)
        if steps < 0:
            raise InputError("must be ≥ 0", field="steps")
        chip = _loihi_core().LoihiRun(loihi_spec(net, plan, dt), emulator=emulator, seed=seed)
        pops = {p.name: p for p in net.populations}
        names = [p.name for p in net.populations]
        spike_counts = {n: np.zeros(pops[n].size, dtype=np.int64) for n in names}
        events = {n: EventLog(max_events) for n in plan["chip"] if pops[n].record}
        record_every, sample_steps, sample_states = sample_buffers(
            {n: pops[n].size for n in names}, sample_populations, steps, record_every)
        n_samples = sample_steps.size
        gains = GainState(net.gains)
        gains_final = {name: float(gains.value(name, max(steps - 1, 0))) for name in gains.names}

        state = chip.state
        def snapshot() -> Trace:
            return Trace(
                steps=taken, final_state={n: np.array(state(n), dtype=np.float64) for n in names},
                clamp_excess={n: chip.clamp_excess(n) for n in names},
                averages={}, spike_counts={n: c.copy() for n, c in spike_counts.items()},
                updates={n: taken for n in names}, gains_final=gains_final, backend=self.name,
                dtype="int32" if emulator == "sim" else "float32",
                meta={"family": net.family, "neurons": net.neuron_count, "synapses": net.synapse_count,
                      "dt": dt, "emulator": emulator, "chip_populations": plan["chip"],
                      "host_readouts": plan["host"],
                      "approximations": {k: f"{LOIHI_APPROXIMATIONS[k]} ({where})"
                                         for k, where in plan["approximations"].items()},
                      "discretization": chip.discretization()})

        controls = ControlRuntime(net, {n: np.array(state(n), dtype=np.float64) for n in names}, gains)
        controls.context.snapshot = snapshot
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=steps, desc=f"{self.name} {net.family}", unit="step")
        check_every = max(1, int(check_every))
        taken, stopped = 0, False
        started = time.perf_counter()
        while taken < steps and not stopped:
            # chunks end at every state sample and stop poll (the emulator's state is read there)
            ends = [steps, taken + _LOIHI_MAX_CHUNK]
            if n_samples and taken < n_samples * record_every:
                ends.append((taken // record_every + 1) * record_every)
            if stop is not None:
                ends.append((taken // check_every + 1) * check_every)
            chunk = min(ends) - taken
            spikes = chip.run(chunk)
            for j in range(chunk):
                t = taken + j
                for name, fired in spikes.items():
                    idx = fired[j]
                    if idx.size:
                        spike_counts[name][idx] += 1
                        if name in events:
                            events[name].append(t, idx, 1.0)
            taken += chunk
            if n_samples and taken % record_every == 0 and taken // record_every <= n_samples:
                row = taken // record_every - 1
                sample_steps[row] = taken - 1
                for name, rows in sample_states.items():
                    rows[row] = state(name)
            if bar is not None:
                bar.update(chunk)
            if stop is not None and taken % check_every == 0:
                controls.context.step = taken - 1
                if stop(taken - 1, controls.context):
                    stopped = True
                    controls.context.record("stop", reason="stop callback")
        wall = time.perf_counter() - started
        if bar is not None:
            bar.close()
        trace = finish_trace(snapshot(), events, sample_steps, sample_states, taken, record_every, wall,
                             stopped)
        chip.close()
        trace.control_log = controls.context.log
        return trace


def _define_loihi_core(nengo, nengo_loihi, np):  # noqa: C901 - copied into run_nengo_loihi.py
    """The nengo-loihi side of ``nengo-loihi``, built from a plain spec.

    ``LoihiRun`` builds the chip populations as LIF ensembles connected neuron to
    neuron (``synapse=None``: the chip's one-step axon delay), runs
    ``nengo_loihi.Simulator(model, target=emulator)`` in chunks, and updates the
    host readouts from the chip's spikes with the IR's float64 arithmetic. Its
    source is copied verbatim into every emitted run_nengo_loihi.py.
    """
    import warnings
    from types import SimpleNamespace

    def csr_transform(weights, shape):
        if isinstance(weights, dict):
            rows = np.repeat(np.arange(shape[0]), np.diff(weights["indptr"]))
            return nengo.transforms.Sparse(shape, indices=np.column_stack([rows, weights["indices"]]),
                                           init=weights["data"])
        return np.asarray(weights, dtype=np.float64)

    def stores(weights):
        """Any synapse to build? (nengo-loihi cannot build a connection without one.)"""
        data = weights["data"] if isinstance(weights, dict) else np.asarray(weights)
        return bool(np.any(data != 0))

    def matvec(weights, e):
        if isinstance(weights, dict):
            rows = np.repeat(np.arange(weights["shape"][0]), np.diff(weights["indptr"]))
            return np.bincount(rows, weights["data"] * e[weights["indices"]], minlength=weights["shape"][0])
        return weights @ e

    class HostReadout:
        """A population that never fires and feeds nothing: u = δ⊙v + I, v = clamp(u)
        (docs/ir.md §2), I = bias + Σ W·e_src(t − d) from the chip's spikes."""

        def __init__(self, pop, incoming, sizes):
            a = pop["arrays"]
            self.decay, self.bias = a["decay"], a["bias"]
            self.v_min, self.v_max = a["v_min"], a["v_max"]
            self.v = np.array(a["v_init"], dtype=np.float64)
            self.u = np.zeros_like(self.v)
            self.clamped = bool(np.any(np.isfinite(self.v_min)) or np.any(np.isfinite(self.v_max)))
            self.incoming = incoming                  # (source, weights, delay)
            self.sizes = sizes
            self.depth = max((d for _, _, d in incoming), default=0)
            self.past = {src: [] for src, _, _ in incoming}   # fired neurons of the last steps
            self.updates = 0

        def update(self, fired_now):
            """One step; ``fired_now``: source → the neurons that fired in this step."""
            I = self.bias.copy()
            for src, weights, delay in self.incoming:
                history = self.past[src]
                fired = fired_now[src] if delay == 0 else (history[-delay] if len(history) >= delay else None)
                if fired is not None and fired.size:
                    e = np.zeros(self.sizes[src])
                    e[fired] = 1.0
                    I += matvec(weights, e)
            np.multiply(self.decay, self.v, out=self.u)
            self.u += I
            np.minimum(np.maximum(self.u, self.v_min), self.v_max, out=self.v)
            self.updates += 1
            if self.depth:
                for src in self.past:
                    self.past[src] = (self.past[src] + [fired_now[src]])[-self.depth:]

        def clamp_excess(self):
            if not self.clamped or not self.updates:
                return np.zeros(self.v.size)
            return self.u - np.minimum(np.maximum(self.u, self.v_min), self.v_max)

    class LoihiRun:
        """``spec``: dt and populations (kind "chip": tau_rc, bias, v_init, scale,
        offset of V' = (V − offset)/scale; kind "host": the IR fields) and
        projections (weights with any gain folded in, chip targets row-scaled)."""

        def __init__(self, spec, emulator="sim", seed=0):
            dt = float(spec["dt"])
            pops = {p["name"]: p for p in spec["populations"]}
            self.chip = [p["name"] for p in spec["populations"] if p["kind"] == "chip"]
            ensembles, self.probes = {}, {}
            with nengo.Network(label="snn-compile", seed=seed) as model:
                for name in self.chip:
                    a, n = pops[name]["arrays"], int(pops[name]["size"])
                    ensembles[name] = nengo.Ensemble(
                        n, 1, neuron_type=nengo.LIF(tau_rc=float(a["tau_rc"]), tau_ref=0.0,
                                                    min_voltage=float(a["min_voltage"]), amplitude=dt),
                        gain=np.ones(n), bias=np.asarray(a["bias"], dtype=np.float64),
                        encoders=np.ones((n, 1)), label=name)
                    self.probes[name] = nengo.Probe(ensembles[name].neurons)
                for proj in spec["projections"]:
                    if proj["target"] in ensembles and proj["source"] in ensembles and stores(proj["weights"]):
                        shape = (ensembles[proj["target"]].n_neurons, ensembles[proj["source"]].n_neurons)
                        nengo.Connection(ensembles[proj["source"]].neurons, ensembles[proj["target"]].neurons,
                                         transform=csr_transform(proj["weights"], shape), synapse=None,
                                         label=proj["name"])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")    # "model is precomputable" and version notices
                self.sim = nengo_loihi.Simulator(model, dt=dt, target=emulator, progress_bar=False, seed=seed)
            self.emulator = self.sim.sims["emulator"]
            self.maps, self.slices = {}, {}
            for name, ens in ensembles.items():
                blocks = self.sim.model.objs[ens]["out"]
                blocks = blocks if isinstance(blocks, list) else [blocks]
                info = [getattr(b.compartment, "discretize_info", None) for b in blocks]
                self.slices[name] = [(self.emulator.block_info.slices[b], float(i["v_scale"]) if i else 1.0)
                                     for b, i in zip(blocks, info)]
                a = pops[name]["arrays"]
                self.maps[name] = (np.asarray(a["offset"], dtype=np.float64),
                                   np.asarray(a["scale"], dtype=np.float64))
                # nengo-loihi starts every compartment at 0; the chip can hold any initial voltage
                self._write_voltage(name, np.asarray(a["v_init"], dtype=np.float64))
            sizes = {name: int(p["size"]) for name, p in pops.items()}
            self.host = {}
            for name, pop in pops.items():
                if pop["kind"] == "host":
                    incoming = [(q["source"], q["weights"], int(q["delay"])) for q in spec["projections"]
                                if q["target"] == name and q["source"] in ensembles]
                    self.host[name] = HostReadout(pop, incoming, sizes)

        def _write_voltage(self, name, v_prime):
            voltage, start = self.emulator.compartment.voltage, 0
            for sl, v_scale in self.slices[name]:
                n = sl.stop - sl.start
                part = v_prime[start:start + n] * v_scale
                voltage[sl] = np.round(part) if np.issubdtype(voltage.dtype, np.integer) else part
                start += n

        def state(self, name):
            """IR-unit state: V = offset + scale·V' for the chip (V' = voltage / v_scale)."""
            if name in self.host:
                return self.host[name].v
            if name not in self.maps:                  # a population of size 0
                return np.zeros(0)
            voltage = self.emulator.compartment.voltage
            v_prime = np.concatenate([voltage[sl].astype(np.float64) / v_scale
                                      for sl, v_scale in self.slices[name]])
            offset, scale = self.maps[name]
            return offset + scale * v_prime

        def clamp_excess(self, name):
            if name in self.host:
                return self.host[name].clamp_excess()
            return np.zeros(self.maps[name][0].size if name in self.maps else 0)

        def run(self, steps):
            """``steps`` chip steps; returns, per chip population, the fired neurons of each step."""
            self.sim.run_steps(steps)
            fired = {name: [np.flatnonzero(row) for row in np.asarray(self.sim.data[probe])[-steps:]]
                     for name, probe in self.probes.items()}
            self.sim.clear_probes()
            for j in range(steps):
                now = {name: rows[j] for name, rows in fired.items()}
                for readout in self.host.values():
                    readout.update(now)
            return fired

        def discretization(self):
            return {"v_scale": {name: [v for _, v in parts] for name, parts in self.slices.items()}}

        def close(self):
            self.sim.close()

    return SimpleNamespace(LoihiRun=LoihiRun, HostReadout=HostReadout)


@functools.lru_cache(maxsize=None)
def _loihi_core():
    import nengo
    with warnings.catch_warnings():   # nengo-loihi 1.1 warns that it was not tested with nengo 4.1
        warnings.simplefilter("ignore")
        import nengo_loihi
    return _define_loihi_core(nengo, nengo_loihi, np)


def loihi_spec(net: Network, plan: dict, dt: float = NENGO_DT) -> dict:
    """The plain description ``LoihiRun`` builds from (see ``loihi_plan``)."""
    chip = set(plan["chip"])
    populations, row_factors = [], {}
    for pop in net.populations:
        entry = {"name": pop.name, "size": pop.size}
        if pop.size == 0:
            entry.update(kind="empty", arrays={})
        elif pop.name in chip:
            if pop.reset == "subtract":    # threshold → 1, reset → 0: V' = (V − T + R)/R
                scale, offset = pop.reset_value.copy(), pop.threshold - pop.reset_value
            else:                          # V' = (V − r)/(T − r)
                scale, offset = pop.threshold - pop.reset_value, pop.reset_value.copy()
            mapped = lif_map(pop, offset=offset, scale=scale, dt=dt)
            row_factors[pop.name] = mapped["row_factor"]
            entry.update(kind="chip", arrays={
                "tau_rc": np.array(mapped["tau_rc"]), "min_voltage": np.array(_NO_FLOOR),
                "bias": mapped["bias"], "v_init": mapped["v_init"], "scale": scale, "offset": offset})
        else:
            g = net.gain(pop.bias_gain).value if pop.bias_gain is not None else 1.0
            entry.update(kind="host", arrays={"decay": pop.decay.copy(), "bias": pop.bias * g,
                                              "v_min": pop.v_min.copy(), "v_max": pop.v_max.copy(),
                                              "v_init": pop.v_init.copy()})
        populations.append(entry)
    projections = []
    for proj in net.projections:
        g = net.gain(proj.gain).value if proj.gain is not None else 1.0
        W = proj.weights * g if g != 1.0 else proj.weights
        weights = _weights_spec(W, row_factors.get(proj.target))
        if isinstance(weights, dict):
            weights["shape"] = tuple(proj.weights.shape)
        projections.append({"name": proj.name, "source": proj.source, "target": proj.target,
                            "delay": proj.delay, "weights": weights})
    return {"dt": float(dt), "schedule": [list(step) for step in net.schedule],
            "populations": populations, "projections": projections}
