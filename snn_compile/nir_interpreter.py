"""A small discrete-time interpreter for NIR graphs (package ``nir``).

NIR describes continuous-time dynamics and leaves their discretisation to the
consumer. This interpreter fixes one, so that an exported graph can be re-run
and compared with the network it came from (``backends/nir_export.py``):

**Time.** Steps k = 0, 1, 2, … of length ``dt`` (from the argument, else the
graph's ``metadata["dt"]``). Every value is a 1-D float64 vector.

**Edges.** An edge carries its source's output unchanged; the edges into one
node are summed. Nodes fall into three groups:

* *sources of a step*: ``Input`` (the external input of step k, zero unless
  given), neuron nodes (their output of step k − 1; zero before step 0) and
  ``Delay`` nodes whose delays are all ≥ one step;
* *stateless maps*, evaluated in topological order: ``Affine`` (W x + b),
  ``Linear`` (W x), ``Scale`` (s ⊙ x), ``Threshold`` ([x > θ] as 0/1),
  ``Flatten`` (identity on vectors), ``Output`` (identity, recorded) and a
  ``Delay`` with some zero delays. A loop of stateless maps is refused;
* *neuron nodes* (``LIF``, ``IF``, ``I``, ``LI``, ``CubaLIF``, ``CubaLI``):
  their summed input I_k of step k updates their state by forward Euler.

So a path neuron → stateless maps → neuron takes exactly one step: the input of
step k is computed from the neuron outputs of step k − 1 (explicit Euler), and
a ``Delay`` of d·dt adds d steps (its output at step k is its input of step
k − d; zero before). ``delay / dt`` must be a whole number.

**Neuron updates** (a = dt/τ; Euler step, then threshold test, then reset):

=========  ===============================================================  ========
node       update of step k                                                 output
=========  ===============================================================  ========
LIF        v ← v + a·(v_leak − v + R·I_k); z = [v > v_threshold];           z
           v ← v_reset where z
IF         v ← v + dt·R·I_k; z and reset as LIF                              z
LI         v ← v + a·(v_leak − v + R·I_k)                                   v
I          v ← v + dt·R·I_k                                                 v
CubaLIF    i ← i + (dt/τ_syn)·(w_in ⊙ I_k − i), then v as LIF with i for I   z
CubaLI     i as CubaLIF, then v as LI with i for I                          v
=========  ===============================================================  ========

A spike is the value 1 for one step (a Dirac impulse of area dt, in NIR's
continuous reading). States start at 0 unless ``initial_state`` is given
(NIR has no initial state); ``initial_state="metadata"`` takes each neuron
node's ``metadata["v_init"]`` where present.

**Outputs.** After the last step the stateless maps are evaluated once more on
the final neuron outputs (with zero external input); ``Output`` values are
read then ("the value the next step would see"). ``record_outputs=True``
keeps that value after every step.

Unsupported: convolutions, pooling, nested graphs, multi-dimensional shapes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Union

import numpy as np

from .errors import InputError

#: Neuron node types and whether they emit spikes (else their output is v).
NEURON_TYPES = {"LIF": True, "IF": True, "CubaLIF": True, "LI": False, "I": False, "CubaLI": False}
STATELESS_TYPES = ("Affine", "Linear", "Scale", "Threshold", "Flatten", "Output")

#: A delay within this relative distance of a whole number of steps counts as whole.
_STEP_TOLERANCE = 1e-9


def _vector(value, name: str, field_: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise InputError(f"only 1-D parameters are supported, got shape {arr.shape}",
                         source=f"NIR node '{name}'", field=field_)
    return arr


def _shape_size(shape, name: str) -> int:
    dims = np.asarray(shape).reshape(-1)
    if dims.size != 1:
        raise InputError(f"only 1-D data is supported, got shape {dims.tolist()}",
                         source=f"NIR node '{name}'")
    return int(dims[0])


class _Neuron:
    """One neuron node: per-step coefficients precomputed from its parameters."""

    def __init__(self, name: str, node, dt: float):
        kind = type(node).__name__
        self.name, self.kind, self.spiking = name, kind, NEURON_TYPES[kind]
        vec = lambda attr: _vector(getattr(node, attr), name, attr)  # noqa: E731
        r = vec("r")
        self.size = r.size
        if kind in ("IF", "I"):
            self.keep, self.drive, self.rest = np.ones_like(r), dt * r, np.zeros_like(r)
        else:
            a = dt / vec("tau_mem" if kind.startswith("Cuba") else "tau")
            self.keep, self.drive, self.rest = 1.0 - a, a * r, a * vec("v_leak")
        self.syn_keep = self.syn_drive = None
        if kind.startswith("Cuba"):
            a_syn = dt / vec("tau_syn")
            self.syn_keep, self.syn_drive = 1.0 - a_syn, a_syn * vec("w_in")
        if self.spiking:
            self.threshold, self.v_reset = vec("v_threshold"), vec("v_reset")
        for arr in (self.keep, self.drive, self.rest):
            if arr.shape != (self.size,):
                raise InputError("parameters must all have the same shape", source=f"NIR node '{name}'")
        self.v = np.zeros(self.size)
        self.current = np.zeros(self.size) if self.syn_keep is not None else None
        self.output = np.zeros(self.size)
        self.spike_counts = np.zeros(self.size, dtype=np.int64)

    def update(self, I: np.ndarray) -> Optional[np.ndarray]:
        """One Euler step with input I; returns the indices that spiked (spiking nodes)."""
        if self.current is not None:
            self.current = self.syn_keep * self.current + self.syn_drive * I
            I = self.current
        self.v = self.keep * self.v + self.drive * I + self.rest
        if not self.spiking:
            self.output = self.v
            return None
        fired = self.v > self.threshold
        self.v = np.where(fired, self.v_reset, self.v)
        self.output = fired.astype(np.float64)
        indices = np.flatnonzero(fired)
        self.spike_counts[indices] += 1
        return indices


class _Delay:
    """y(k) = x(k − d) per element, from a ring of the last max(d) + 1 inputs."""

    def __init__(self, name: str, node, dt: float):
        steps = _vector(node.delay, name, "delay") / dt
        whole = np.round(steps)
        if np.any(np.abs(steps - whole) > _STEP_TOLERANCE * np.maximum(1.0, np.abs(steps))) \
                or np.any(whole < 0):
            raise InputError(f"delays {node.delay} are not non-negative multiples of dt = {dt:g}",
                             source=f"NIR node '{name}'", field="delay")
        self.steps = whole.astype(np.int64)
        self.size = self.steps.size
        self.depth = int(self.steps.max(initial=0)) + 1
        self.ring = np.zeros((self.depth, self.size))
        self.columns = np.arange(self.size)
        self.instant = bool(np.any(self.steps == 0))   # then it needs this step's input

    def head(self, k: int) -> np.ndarray:
        return self.ring[(k - self.steps) % self.depth, self.columns]

    def through(self, k: int, x: np.ndarray) -> np.ndarray:
        return np.where(self.steps == 0, x, self.head(k))

    def push(self, k: int, x: np.ndarray):
        self.ring[k % self.depth] = x


@dataclass
class NIRRun:
    """What ``simulate_nir`` returns. Dicts are keyed by node name.

    ``states``: neuron states v after the last step (``currents``: synaptic
    currents of Cuba nodes); ``outputs``: every non-Input node's output after the last
    step; ``graph_outputs``: the ``Output`` nodes' values after the last step;
    ``spike_counts``/``events``: spikes of spiking neuron nodes (events only for
    the nodes named in ``record``: (steps, neurons)); ``samples[node] = (steps,
    states)``; ``output_history[node]``: Output values after every step.
    """

    steps: int
    dt: float
    states: dict = field(default_factory=dict)
    currents: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    graph_outputs: dict = field(default_factory=dict)
    spike_counts: dict = field(default_factory=dict)
    events: dict = field(default_factory=dict)
    samples: dict = field(default_factory=dict)
    output_history: dict = field(default_factory=dict)


class NIRSimulator:
    """Steps one NIR graph (semantics: module docstring). ``step()`` advances one
    step; ``states``, ``outputs()`` and ``graph_outputs()`` read it at any time."""

    def __init__(self, graph, dt: Optional[float] = None, *,
                 inputs: Optional[Mapping[str, np.ndarray]] = None,
                 initial_state: Union[None, str, Mapping[str, np.ndarray]] = None,
                 record: tuple = ()):
        import nir

        if dt is None:
            dt = (graph.metadata or {}).get("dt")
            if dt is None:
                raise InputError("NIR graphs do not fix a time step: pass dt", field="dt")
        self.dt = float(dt)
        if not (np.isfinite(self.dt) and self.dt > 0):
            raise InputError(f"must be a positive number, got {dt}", field="dt")
        self.nodes = dict(graph.nodes)
        self.neurons: dict[str, _Neuron] = {}
        self.delays: dict[str, _Delay] = {}
        self.input_sizes: dict[str, int] = {}
        for name, node in self.nodes.items():
            kind = type(node).__name__
            if kind not in NEURON_TYPES and kind not in STATELESS_TYPES + ("Input", "Delay"):
                raise InputError(f"node type {kind} is not supported by the NIR interpreter "
                                 f"(supported: Input, Output, Delay, {', '.join(STATELESS_TYPES[:-1])}, "
                                 f"{', '.join(NEURON_TYPES)})", source=f"NIR node '{name}'")
        for name, node in self.nodes.items():
            kind = type(node).__name__
            if kind in NEURON_TYPES:
                self.neurons[name] = _Neuron(name, node, self.dt)
            elif isinstance(node, nir.Delay):
                self.delays[name] = _Delay(name, node, self.dt)
            elif isinstance(node, nir.Input):
                self.input_sizes[name] = _shape_size(node.input_type["input"], name)
        # Predecessors in edge order: the edges into a node are summed in this order.
        self.preds: dict[str, list[str]] = {name: [] for name in self.nodes}
        for src, dst in graph.edges:
            if src not in self.nodes or dst not in self.nodes:
                raise InputError(f"edge ({src!r}, {dst!r}) names an unknown node", source="NIR graph")
            self.preds[dst].append(src)
        self.order = self._stateless_order()
        self.sizes = {name: self._node_size(name, node) for name, node in self.nodes.items()
                      if name not in self.input_sizes}
        self.inputs = {name: np.asarray(value, dtype=np.float64) for name, value in (inputs or {}).items()}
        unknown = set(self.inputs) - set(self.input_sizes)
        if unknown:
            raise InputError(f"no Input node(s) named {sorted(unknown)}", field="inputs")
        self._set_initial_state(initial_state)
        self.record = {name: ([], []) for name in record}
        for name in self.record:
            if name not in self.neurons or not self.neurons[name].spiking:
                raise InputError(f"{name!r} is not a spiking neuron node", field="record")
        self.k = 0
        self.values: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------ set-up
    def _stateless_order(self) -> list[str]:
        """Stateless maps (and instant delays) in an order where every input is ready."""
        sources = set(self.neurons) | set(self.input_sizes) | \
            {name for name, d in self.delays.items() if not d.instant}
        pending = [name for name in self.nodes if name not in sources]
        order, ready = [], set(sources)
        while pending:
            progress = [name for name in pending if all(p in ready for p in self.preds[name])]
            if not progress:
                raise InputError(f"the nodes {sorted(pending)} form a loop without a neuron or a "
                                 f"delay (an algebraic loop)", source="NIR graph")
            order += progress
            ready.update(progress)
            pending = [name for name in pending if name not in ready]
        return order

    def _set_initial_state(self, initial_state):
        if initial_state is None:
            return
        if isinstance(initial_state, str):
            if initial_state != "metadata":
                raise InputError(f"must be None, 'metadata' or a dict, got {initial_state!r}",
                                 field="initial_state")
            initial_state = {name: self.nodes[name].metadata["v_init"] for name in self.neurons
                             if "v_init" in (self.nodes[name].metadata or {})}
        for name, value in initial_state.items():
            if name not in self.neurons:
                raise InputError(f"{name!r} is not a neuron node", field="initial_state")
            v = _vector(value, name, "initial_state")
            if v.shape != (self.neurons[name].size,):
                raise InputError(f"expected {self.neurons[name].size} values for {name!r}",
                                 field="initial_state")
            self.neurons[name].v = v.copy()

    # ------------------------------------------------------------ stepping
    def _input_value(self, name: str, k: int) -> np.ndarray:
        size = self.input_sizes[name]
        value = self.inputs.get(name)
        if value is None:
            return np.zeros(size)
        row = value if value.ndim == 1 else (value[k] if k < len(value) else np.zeros(size))
        return np.broadcast_to(row, (size,)).astype(np.float64)

    def _gather(self, name: str, values: dict, size: int) -> np.ndarray:
        total = None
        for src in self.preds[name]:
            total = values[src] if total is None else total + values[src]
        return np.zeros(size) if total is None else total

    def _node_size(self, name: str, node) -> int:
        if name in self.neurons:
            return self.neurons[name].size
        if name in self.delays:
            return self.delays[name].size
        weight = getattr(node, "weight", None)
        if weight is not None:
            return np.shape(weight)[-1]
        if hasattr(node, "scale"):
            return np.size(node.scale)
        if hasattr(node, "threshold"):
            return np.size(node.threshold)
        return _shape_size(node.input_type["input"], name)

    def _evaluate(self, k: int, external: bool) -> dict:
        """Values of every node for step k's input phase (neurons: their latest output)."""
        values: dict[str, np.ndarray] = {}
        for name in self.input_sizes:
            values[name] = self._input_value(name, k) if external else np.zeros(self.input_sizes[name])
        for name, neuron in self.neurons.items():
            values[name] = neuron.output
        for name, delay in self.delays.items():
            if not delay.instant:
                values[name] = delay.head(k)
        for name in self.order:
            node = self.nodes[name]
            x = self._gather(name, values, self.sizes[name])
            kind = type(node).__name__
            if name in self.delays:
                values[name] = self.delays[name].through(k, x)
            elif kind == "Affine":
                values[name] = np.asarray(node.weight, dtype=np.float64) @ x + node.bias
            elif kind == "Linear":
                values[name] = np.asarray(node.weight, dtype=np.float64) @ x
            elif kind == "Scale":
                values[name] = node.scale * x
            elif kind == "Threshold":
                values[name] = (x > node.threshold).astype(np.float64)
            else:                                           # Flatten, Output: identity
                values[name] = x
        return values

    def step(self):
        """Advance one step: evaluate the stateless maps, update neurons, shift delays."""
        k = self.k
        values = self._evaluate(k, external=True)
        for name, delay in self.delays.items():
            delay.push(k, self._gather(name, values, delay.size))
        for name, neuron in self.neurons.items():
            fired = neuron.update(self._gather(name, values, neuron.size))
            if name in self.record and fired.size:
                steps, ids = self.record[name]
                steps.append(np.full(fired.size, k, dtype=np.int64))
                ids.append(fired.astype(np.int32))
        self.k += 1

    # ------------------------------------------------------------ reading
    @property
    def states(self) -> dict[str, np.ndarray]:
        return {name: n.v for name, n in self.neurons.items()}

    def outputs(self) -> dict[str, np.ndarray]:
        """Every node's output as the next step would see it (Inputs excluded)."""
        values = self._evaluate(self.k, external=False)
        return {name: v for name, v in values.items() if name not in self.input_sizes}

    def graph_outputs(self) -> dict[str, np.ndarray]:
        import nir
        values = self.outputs()
        return {name: values[name] for name, node in self.nodes.items() if isinstance(node, nir.Output)}

    def events(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for name, (steps, ids) in self.record.items():
            out[name] = (np.concatenate(steps) if steps else np.empty(0, np.int64),
                         np.concatenate(ids) if ids else np.empty(0, np.int32))
        return out


def simulate_nir(graph, steps: int, *, dt: Optional[float] = None,
                 inputs: Optional[Mapping[str, np.ndarray]] = None,
                 initial_state: Union[None, str, Mapping[str, np.ndarray]] = None,
                 record: tuple = (), record_every: int = 0,
                 record_outputs: bool = False) -> NIRRun:
    """Run ``graph`` (a ``nir.NIRGraph``) for ``steps`` steps of ``dt``.

    ``inputs[name]``: a vector (constant) or a (steps × size) array per Input
    node; ``initial_state``: None (zeros), "metadata" or {neuron node: v0};
    ``record``: spiking nodes whose spike events to keep; ``record_every``:
    state-sample interval (0: none); ``record_outputs``: Output values after
    every step.
    """
    steps = int(steps)
    if steps < 0:
        raise InputError("must be ≥ 0", field="steps")
    sim = NIRSimulator(graph, dt, inputs=inputs, initial_state=initial_state, record=tuple(record))
    sample_steps, samples = [], {name: [] for name in sim.neurons}
    history = {name: [] for name in sim.graph_outputs()} if record_outputs else {}
    for _ in range(steps):
        sim.step()
        if record_every and sim.k % record_every == 0:
            sample_steps.append(sim.k - 1)
            for name, neuron in sim.neurons.items():
                samples[name].append(neuron.v.copy())
        if record_outputs:
            for name, value in sim.graph_outputs().items():
                history[name].append(value)
    outputs = sim.outputs()
    return NIRRun(
        steps=steps, dt=sim.dt,
        states={name: n.v.copy() for name, n in sim.neurons.items()},
        currents={name: n.current.copy() for name, n in sim.neurons.items() if n.current is not None},
        outputs=outputs,
        graph_outputs={name: outputs[name] for name in sim.graph_outputs()},
        spike_counts={name: n.spike_counts.copy() for name, n in sim.neurons.items() if n.spiking},
        events=sim.events(),
        samples={name: (np.array(sample_steps, dtype=np.int64),
                        np.array(rows).reshape(len(sample_steps), sim.neurons[name].size))
                 for name, rows in samples.items()} if record_every else {},
        output_history={name: np.array(rows).reshape(steps, -1) for name, rows in history.items()})


__all__ = ["NIRRun", "NIRSimulator", "simulate_nir", "NEURON_TYPES"]
