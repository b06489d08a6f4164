"""The ``nir`` target: export a network to NIR (a ``.nir`` HDF5 file, package
``nir``) as faithfully as NIR allows, list exactly what it cannot say, and
re-run the written graph with ``snn_compile.nir_interpreter``.

Mapping (the time unit is the network's ``dt``; forward Euler with one step of
``dt``, which is also how ``snn_compile.nir_interpreter`` reads a graph):

==========================  ===============================================================
IR                          NIR
==========================  ===============================================================
binary population, δ = 1    ``IF``  (r = 1/dt, v_threshold = θ, v_reset below)
binary population, δ ≠ 1    ``LIF`` (τ = dt/(1 − δ), r = 1/(1 − δ), v_leak = 0, v_threshold = θ)
graded population, δ = 1    ``I``   (r = 1/dt): outputs its state v every step
graded population, δ ≠ 1    ``LI``  (τ, r as LIF, v_leak = 0): outputs v every step
reset ``to_value`` r        v_reset = r (exact)
reset ``subtract`` r        v_reset = θ − r (a loss)
reset ``none`` (binary)     v_reset = θ (a loss)
bias b · g_b                ``Affine`` "bias:P" (zero weights, bias g_b·b) fed by the
                            graph's ``Input`` "input" (size 1), so the graph runs with no input
projection W, gain g        ``Linear`` "w:NAME" (g·W as a dense array); from a graded
                            ``excess`` source an ``Affine`` with bias −g·W·θ
delay d ≥ 2                 ``Delay`` "delay:NAME" of (d − 1)·dt before the weights (exact)
delay 1                     a plain edge (exact: Euler reads the previous step)
delay 0                     a plain edge (a loss: read one step late)
readout target T            ``Affine`` "readout:T:i" per term (scale·M/g, offset and the
                            preconditioning map folded in) → ``Output`` "readout:T", i.e.
                            the user's x, y, z, z_box — when every term of T reads the
                            state of a graded population
recorded population, or     ``Output`` "output:P" (its spikes, or v for LI/I); every
one with no outlet          population gets one if the graph would have no Output at all
==========================  ===============================================================

With these parameters an Euler step of an LIF is v ← δ·v + I (dt/τ = 1 − δ and
(dt/τ)·r = 1): the IR's update, so the weights and biases are the IR's own.
A consumer that integrates exactly instead gets the decay exp(−(1 − δ)) per
step (0.9990005 for δ = 0.999; 0.37 for δ = 0, where Euler gives 0).

Gains with schedules or formulas are frozen at their step-0 value (with the
AdaptiveRestart rule's ω₀ and epoch 1). Weights are stored dense: a projection
costs rows × columns float64 values whatever its sparsity (``costs`` in the
sidecar file says how many).

Everything NIR cannot say is returned by ``nir_losses(net)`` (also stored in
the graph's metadata and in ``OUT.nir.losses.json``); ``nir_equivalent(net)``
is the same list as an IR network: the network the export actually computes,
which ``tests/test_nir.py`` runs on the reference backend against the
interpreter. The target is lossy by design: ``check`` refuses only what cannot
be written at all (a population mixing δ = 1 and δ ≠ 1; graded ``excess``
spikes with an infinite threshold feeding a projection).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import scipy.sparse as sp

from snn_compile.errors import CapabilityError, InputError
from snn_compile.ir import AdaptiveRestart, Gain, Network, RunningAverage
from snn_compile.nir_interpreter import simulate_nir  # noqa: F401  (the run half of the API)
from snn_compile.runtime import AverageState, ControlContext, GainState
from snn_compile.trace import DEFAULT_MAX_EVENTS, EventLog, Trace, default_record_every

from .base import Backend, Capabilities, StopCallback

FORMAT = "snn-compile/nir-export"
FORMAT_VERSION = 1
#: File name used when ``emit`` is given a folder.
DEFAULT_FILE = "network.nir"
LOSSES_SUFFIX = ".losses.json"
INPUT_NODE = "input"


# ---------------------------------------------------------------- helpers
def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if sp.issparse(matrix) else matrix, dtype=np.float64)


def _baked_gains(net: Network) -> dict[str, float]:
    """Every gain's value at step 0 (formula gains with ω₀ and epoch 1, as the reference starts)."""
    gains = GainState(net.gains)
    for rule in net.controls:
        if isinstance(rule, AdaptiveRestart):
            gains.primal_weight = rule.primal_weight_init
            gains.epoch_step = 1
    values = gains.values(0)
    return {name: float(values[i]) for i, name in enumerate(gains.names)}


def _gain(baked: dict, name: Optional[str]) -> float:
    return 1.0 if name is None else baked[name]


def _leaky(pop) -> bool:
    """True: LIF/LI (every δ ≠ 1); False: IF/I (every δ = 1)."""
    unit = pop.decay == 1.0
    if unit.all():
        return False
    if unit.any():
        raise CapabilityError(f"target 'nir' cannot export population '{pop.name}': it mixes "
                              f"decay 1 and decay ≠ 1, and a NIR neuron node has either a finite "
                              f"τ for every neuron (LIF/LI) or none (IF/I)")
    return True


def _can_fire(pop) -> bool:
    return bool(np.any(pop.threshold < np.inf))


def _outgoing(net: Network) -> dict[str, list]:
    out = {p.name: [] for p in net.populations}
    for proj in net.projections:
        out[proj.source].append(proj)
    return out


def _graded_exact(pop, has_outgoing: bool) -> bool:
    """An LI/I node (output v every step, no spikes) emits and counts what the IR does,
    spike caps aside: the population emits v every update, or it never spikes and feeds nothing."""
    if pop.payload == "state" and bool(np.all(np.isneginf(pop.threshold))):
        return True
    return not has_outgoing and not np.any(np.isfinite(pop.threshold))


def check_exportable(net: Network) -> None:
    """Raise ``CapabilityError`` for what NIR cannot hold even approximately."""
    outgoing = _outgoing(net)
    for pop in net.populations:
        _leaky(pop)
        if pop.spike == "graded" and pop.payload == "excess" and outgoing[pop.name] \
                and not np.all(np.isfinite(pop.threshold)):
            raise CapabilityError(f"target 'nir' cannot export population '{pop.name}': graded "
                                  f"spikes with payload v − θ need a finite θ to fold −W·θ into "
                                  f"an Affine bias")


# ---------------------------------------------------------------- the loss list
def nir_losses(net: Network) -> list[dict]:
    """What the NIR export of ``net`` cannot say: one dict per (feature, place),
    with ``feature`` (a ``backends.base.FEATURES`` name, or ``initial_state``,
    ``reset_none``, ``readout:<quantity>``), ``where``, ``ir`` (what the IR
    does) and ``nir`` (what the export does instead)."""
    check_exportable(net)
    losses: list[dict] = []
    baked = _baked_gains(net)

    def lose(feature: str, where: str, ir: str, nir: str):
        losses.append({"feature": feature, "where": where, "ir": ir, "nir": nir})

    outgoing = _outgoing(net)
    for pop in net.populations:
        if pop.size == 0:          # nothing to lose in an empty population
            continue
        where = f"population '{pop.name}'"
        if np.any(np.isfinite(pop.v_min)) or np.any(np.isfinite(pop.v_max)):
            lose("state_clamp", where, "clamps the state to [v_min, v_max] every update",
                 "no clamp: the state is unbounded (its clamp excess reads 0)")
        if np.any(pop.v_init != 0.0):
            lose("initial_state", where, "starts from v_init",
                 "NIR has no initial state (consumers and simulate_nir start at 0); v_init is "
                 "kept in the node's metadata['v_init']")
        fires = _can_fire(pop)
        if pop.spike == "binary":
            if fires and pop.reset == "subtract":
                lose("reset_subtract", where, "v ← v − r after a spike",
                     "LIF/IF reset to the fixed value v_reset = θ − r (exact only when v = θ at the spike)")
            if fires and pop.reset == "none":
                lose("reset_none", where, "keeps v after a spike",
                     "LIF/IF always reset: to v_reset = θ")
        else:
            if not _graded_exact(pop, bool(outgoing[pop.name])):
                payload = "v − θ" if pop.payload == "excess" else "v"
                instead = ("an LI/I node outputs v at every step and the Affine adds −W·θ, so "
                           "targets receive W·(v − θ) also where v ≤ θ") if pop.payload == "excess" \
                    else "an LI/I node outputs its state v at every step, whatever θ"
                instead += "; no spikes are counted"
                lose("graded_spikes", where, f"emits the graded payload {payload} only where v > θ", instead)
            if fires and pop.reset != "none":
                lose(f"reset_{pop.reset}", where, f"reset '{pop.reset}' after a spike",
                     "dropped: an LI/I node has no threshold and no reset")
        cap = pop.max_spikes_per_step
        if fires and cap is not None and cap < pop.size and \
                (pop.spike == "binary" or outgoing[pop.name] or np.any(np.isfinite(pop.threshold))):
            lose("max_spikes_per_step", where, f"at most {cap} neuron(s) fire per update (largest v − θ first)",
                 "no cap: every neuron above threshold spikes" if pop.spike == "binary"
                 else "no cap: every neuron's state is output at every step")
    for proj in net.projections:
        if proj.delay == 0 and min(proj.weights.shape) > 0:
            lose("zero_delay", f"projection '{proj.name}'", "reads the source's emission of the same step",
                 "a plain edge: the target reads the source's output of the previous step")
    if len(net.schedule) > 1:
        lose("multi_phase_schedule", f"{len(net.schedule)} steps per cycle",
             "populations update in the phases the schedule lists", "every node updates at every step")
    always = set.intersection(*(set(step) for step in net.schedule))
    for pop in net.populations:
        if pop.name not in always:
            lose("partial_schedule", f"population '{pop.name}'", "updates only in some steps of the cycle",
                 "updates at every step")
    for gain in net.gains:
        if gain.formula is not None:
            lose("formula_gains", f"gain '{gain.name}'",
                 f"{gain.formula} term '{gain.params['term']}' recomputed every step",
                 f"frozen at its step-0 value {baked[gain.name]:.6g}")
        elif gain.steps:
            lose("gain_schedules", f"gain '{gain.name}'", f"changes value at steps {list(gain.steps)}",
                 f"frozen at its step-0 value {baked[gain.name]:.6g}")
    for rule in net.controls:
        if isinstance(rule, AdaptiveRestart):
            lose("control:AdaptiveRestart", "controls",
                 "restarts states and updates the primal weight on the host",
                 "dropped: no restarts; formula gains keep ω₀")
        elif isinstance(rule, RunningAverage):
            lose("control:RunningAverage", "controls", "running mean of the states of "
                 + ", ".join(rule.populations),
                 "not in the graph: the host running it averages the states (NIRBackend.run does, "
                 "over every step)")
    for term in net.readout.terms:
        pop = net.population(term.population)
        if pop.size and (term.quantity != "state" or pop.spike == "binary"):
            what = f"the state of spiking population '{pop.name}'" if term.quantity == "state" \
                else f"the {term.quantity} of '{pop.name}'"
            lose(f"readout:{term.quantity}", f"readout term for '{term.target}'", f"reads {what}",
                 f"not a graph output (no Output 'readout:{term.target}'); the host reads it from "
                 f"the run" + (" (always 0: no clamps)" if term.quantity == "clamp_excess" else ""))
    if getattr(net, "fixed_point", None) is not None:
        lose("fixed_point", "network", "integer arithmetic (rounding, saturation) of a quantized network",
             "float64 values of the dequantized parameters, float arithmetic")
    return losses


def format_losses(losses: list[dict]) -> str:
    """The loss list as text, one line per loss."""
    if not losses:
        return "NIR export is exact for this network (no losses)."
    lines = [f"NIR cannot express {len(losses)} thing(s) in this network:"]
    lines += [f"  - {loss['feature']} at {loss['where']}: IR {loss['ir']}; NIR: {loss['nir']}"
              for loss in losses]
    return "\n".join(lines)


# ---------------------------------------------------------------- the export
def _unique(name: str, taken: set) -> str:
    name = name.replace("/", "_") or "_"
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}#{i}", i + 1
    taken.add(candidate)
    return candidate


def _neuron_node(pop, dt: float):
    import nir

    leaky = _leaky(pop)
    theta = pop.threshold
    metadata = {"population": pop.name, "role": pop.role, "v_init": pop.v_init.copy()}
    ones = np.ones(pop.size)
    if leaky:
        tau, r = dt / (1.0 - pop.decay), 1.0 / (1.0 - pop.decay)
    if pop.spike == "graded":
        return (nir.LI(tau=tau, r=r, v_leak=np.zeros(pop.size), metadata=metadata) if leaky
                else nir.I(r=ones / dt, metadata=metadata))
    finite = np.isfinite(theta)
    if pop.reset == "to_value":
        v_reset = pop.reset_value.copy()
    elif pop.reset == "subtract":
        v_reset = np.where(finite, theta - pop.reset_value, 0.0)
    else:
        v_reset = np.where(finite, theta, 0.0)
    if leaky:
        return nir.LIF(tau=tau, r=r, v_leak=np.zeros(pop.size), v_threshold=theta.copy(),
                       v_reset=v_reset, metadata=metadata)
    return nir.IF(r=ones / dt, v_threshold=theta.copy(), v_reset=v_reset, metadata=metadata)


def _readout_factors(net: Network) -> dict[str, np.ndarray]:
    """The diagonal preconditioning map back to the user's variables, per target."""
    from snn_compile.decode import unscale
    return unscale(net, {t: np.ones(size) for t, size in net.readout.sizes.items()})


def build_graph(net: Network):
    """The ``nir.NIRGraph`` of ``net`` (mapping: module docstring) and its loss list."""
    import nir

    losses = nir_losses(net)
    baked = _baked_gains(net)
    dt = net.dt
    taken = {INPUT_NODE}
    nodes: dict = {INPUT_NODE: nir.Input(input_type=np.array([1]))}
    edges: list = []
    pop_node = {p.name: _unique(p.name, taken) for p in net.populations}
    for pop in net.populations:
        nodes[pop_node[pop.name]] = _neuron_node(pop, dt)

    incoming = {p.name: [] for p in net.populations}
    for proj in net.projections:
        incoming[proj.target].append(proj)
    bias_node = {}
    for pop in net.populations:   # bias edges first: the reference sums the bias first too
        if np.any(pop.bias != 0.0) or not incoming[pop.name]:
            bias_node[pop.name] = _unique(f"bias:{pop.name}", taken)
    if not bias_node and net.populations:   # a NIR graph needs an edge out of its Input
        bias_node[net.populations[0].name] = _unique(f"bias:{net.populations[0].name}", taken)
    for pop in net.populations:
        if pop.name in bias_node:
            name = bias_node[pop.name]
            nodes[name] = nir.Affine(weight=np.zeros((pop.size, 1)),
                                     bias=_gain(baked, pop.bias_gain) * pop.bias)
            edges += [(INPUT_NODE, name), (name, pop_node[pop.name])]

    proj_nodes = {}
    for proj in net.projections:
        source = net.population(proj.source)
        W = _gain(baked, proj.gain) * _dense(proj.weights)
        w_name = _unique(f"w:{proj.name}", taken)
        if source.spike == "graded" and source.payload == "excess":
            nodes[w_name] = nir.Affine(weight=W, bias=-(W @ source.threshold))
        else:
            nodes[w_name] = nir.Linear(weight=W)
        delay_name = None
        if proj.delay >= 2:   # the delay sits before the weights so that an Affine bias is not delayed
            delay_name = _unique(f"delay:{proj.name}", taken)
            nodes[delay_name] = nir.Delay(delay=np.full(source.size, (proj.delay - 1) * dt))
            edges += [(pop_node[proj.source], delay_name), (delay_name, w_name)]
        else:
            edges.append((pop_node[proj.source], w_name))
        edges.append((w_name, pop_node[proj.target]))
        proj_nodes[proj.name] = {"weights": w_name, "delay": delay_name}

    readout_nodes = {}
    expressible = {}
    for term in net.readout.terms:
        pop = net.population(term.population)
        ok = pop.size == 0 or (term.quantity == "state" and pop.spike == "graded")
        expressible[term.target] = expressible.get(term.target, True) and ok
    factors = _readout_factors(net)
    for target, size in net.readout.sizes.items():
        terms = [t for t in net.readout.terms if t.target == target]
        offset = net.readout.offsets.get(target)
        if size == 0 or not expressible.get(target, True) or (not terms and offset is None):
            continue
        out_name = _unique(f"readout:{target}", taken)
        nodes[out_name] = nir.Output(output_type=np.array([size]))
        offset = np.zeros(size) if offset is None else offset
        sources = [(t.population, t) for t in terms] or [(None, None)]
        for i, (pop_name, term) in enumerate(sources):
            name = _unique(f"readout:{target}:{i}", taken)
            bias = factors[target] * offset if i == 0 else np.zeros(size)
            if term is None:      # offsets only: a constant from the Input
                nodes[name] = nir.Affine(weight=np.zeros((size, 1)), bias=bias)
                edges += [(INPUT_NODE, name), (name, out_name)]
                continue
            pop = net.population(pop_name)
            M = np.eye(pop.size) if term.matrix is None else _dense(term.matrix)
            scale = term.scale / _gain(baked, term.divide_by_gain)
            nodes[name] = nir.Affine(weight=factors[target][:, None] * scale * M, bias=bias)
            edges += [(pop_node[pop_name], name), (name, out_name)]
        readout_nodes[target] = out_name

    sources = {src for src, _ in edges}
    observed = [p for p in net.populations if p.record or pop_node[p.name] not in sources]
    if not observed and not readout_nodes:      # a NIR graph needs at least one Output
        observed = list(net.populations)
    for pop in observed:
        name = _unique(f"output:{pop.name}", taken)
        nodes[name] = nir.Output(output_type=np.array([pop.size]))
        edges.append((pop_node[pop.name], name))
        readout_nodes[f"population:{pop.name}"] = name

    info = {
        "format": FORMAT, "version": FORMAT_VERSION, "dt": dt, "family": net.family,
        "qp_hash": net.provenance.get("qp_hash"),
        "discretisation": "forward Euler, one step of dt; spikes are 1 for one step; an edge "
                          "reads its source's output of the previous step (snn_compile.nir_interpreter)",
        "populations": {p.name: {"node": pop_node[p.name], "type": type(nodes[pop_node[p.name]]).__name__,
                                 "record": bool(p.record)} for p in net.populations},
        "projections": proj_nodes, "bias": bias_node, "outputs": readout_nodes,
        "gains": baked, "losses": losses, "costs": dense_costs(net),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=edges,
                         metadata={"dt": dt, "snn_compile": json.dumps(info, allow_nan=False)})
    return graph, losses


def dense_costs(net: Network) -> dict:
    """What storing every matrix dense costs: values stored vs nonzeros."""
    rows = []
    for proj in net.projections:
        shape = proj.weights.shape
        rows.append({"projection": proj.name, "shape": list(shape), "nonzeros": proj.nnz,
                     "stored": int(shape[0] * shape[1])})
    stored = sum(r["stored"] for r in rows)
    nnz = sum(r["nonzeros"] for r in rows)
    return {"projections": rows, "stored_values": stored, "nonzeros": nnz,
            "dense_bytes": 8 * stored, "fill": (nnz / stored) if stored else 1.0}


def export_nir(net: Network, path=None):
    """``(graph, losses)``; with ``path`` also writes ``path`` (``nir.write``) and
    ``path + '.losses.json'`` (losses and dense-storage costs)."""
    graph, losses = build_graph(net)
    if path is not None:
        import nir
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        nir.write(path, graph)
        sidecar = {"format": FORMAT + "/losses", "version": FORMAT_VERSION, "nir_file": path.name,
                   "losses": losses, "costs": dense_costs(net)}
        losses_path(path).write_text(json.dumps(sidecar, indent=1, allow_nan=False))
    return graph, losses


def losses_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + LOSSES_SUFFIX)


def export_info(graph) -> dict:
    """The snn-compile block of an exported graph's metadata (KeyError for a foreign graph)."""
    return json.loads(graph.metadata["snn_compile"])


# ---------------------------------------------------------------- the loss list as an IR
def nir_equivalent(net: Network) -> Network:
    """The IR network the NIR export computes: ``net`` with every loss of
    ``nir_losses`` applied (gains frozen and folded in, clamps, caps, restarts
    and initial states dropped, delay 0 → 1, one phase, graded populations
    emitting v every step, resets to the fixed value). Run on the reference
    backend it matches the interpreter's run of the export to rounding."""
    from snn_compile.ir import Population, Projection

    check_exportable(net)
    baked = _baked_gains(net)
    extra_bias = {p.name: np.zeros(p.size) for p in net.populations}
    projections = []
    for proj in net.projections:
        source = net.population(proj.source)
        W = _gain(baked, proj.gain) * _dense(proj.weights)
        if source.spike == "graded" and source.payload == "excess":
            extra_bias[proj.target] -= W @ source.threshold
        projections.append(Projection(proj.source, proj.target, W, delay=max(proj.delay, 1),
                                      name=proj.name))
    populations = []
    for pop in net.populations:
        fields = dict(name=pop.name, size=pop.size, role=pop.role, decay=pop.decay,
                      bias=_gain(baked, pop.bias_gain) * pop.bias + extra_bias[pop.name],
                      v_init=np.zeros(pop.size), record=pop.record)
        if pop.spike == "graded":
            fields.update(threshold=-np.inf, spike="graded", payload="state", reset="none")
        else:
            finite = np.isfinite(pop.threshold)
            reset_value = {"to_value": pop.reset_value,
                           "subtract": np.where(finite, pop.threshold - pop.reset_value, 0.0),
                           "none": np.where(finite, pop.threshold, 0.0)}[pop.reset]
            fields.update(threshold=pop.threshold, spike="binary", reset="to_value",
                          reset_value=reset_value)
        populations.append(Population(**fields))
    gains = [Gain(name, value) for name, value in baked.items()]
    controls = [rule for rule in net.controls if isinstance(rule, RunningAverage)]
    extra = {"fixed_point": None} if hasattr(net, "fixed_point") else {}
    return dataclasses.replace(net, populations=populations, projections=projections, gains=gains,
                               schedule=[[p.name for p in net.populations]], controls=controls, **extra)


# ---------------------------------------------------------------- running an exported graph
def run_graph(net: Network, graph, steps: int, *, record_every: Optional[int] = None,
              progress: bool = False, stop: Optional[StopCallback] = None, check_every: int = 100,
              initial_state: str = "zero", max_events: int = DEFAULT_MAX_EVENTS,
              backend_name: str = "nir") -> Trace:
    """Simulate an exported ``graph`` of ``net`` with the NIR interpreter and
    return a ``Trace`` keyed by population (so ``decode_solution`` works)."""
    from snn_compile.nir_interpreter import NIRSimulator

    if initial_state not in ("zero", "metadata"):
        raise InputError(f"must be 'zero' or 'metadata', got {initial_state!r}", field="initial_state")
    steps = int(steps)
    if steps < 0:
        raise InputError("must be ≥ 0", field="steps")
    info = export_info(graph)
    node_of = {pop: entry["node"] for pop, entry in info["populations"].items()}
    sim = NIRSimulator(graph, dt=info["dt"], initial_state=None if initial_state == "zero" else "metadata")
    neurons = {pop: sim.neurons[node] for pop, node in node_of.items()}
    gains_final = {name: float(value) for name, value in info["gains"].items()}
    averaged = [name for rule in net.controls if isinstance(rule, RunningAverage) for name in rule.populations]
    averages = {name: AverageState(np.zeros(neurons[name].size)) for name in averaged}
    logs = {pop.name: EventLog(max_events) for pop in net.populations if pop.record}
    spiking_logs = {name: log for name, log in logs.items() if neurons[name].spiking}
    if record_every is None:
        record_every = default_record_every(steps) if steps else 0
    record_every = int(record_every)
    sample_steps: list[int] = []
    samples = {pop: [] for pop in neurons} if record_every > 0 else {}

    def snapshot() -> Trace:
        return Trace(
            steps=sim.k, final_state={p: n.v.copy() for p, n in neurons.items()},
            clamp_excess={p: np.zeros(n.size) for p, n in neurons.items()},
            averages={p: a.mean.copy() for p, a in averages.items()},
            spike_counts={p: (n.spike_counts.copy() if n.spiking else np.zeros(n.size, np.int64))
                          for p, n in neurons.items()},
            updates={p: sim.k for p in neurons}, gains_final=dict(gains_final),
            backend=backend_name, dtype="float64",
            meta={"family": net.family, "neurons": net.neuron_count, "synapses": net.synapse_count,
                  "nir_losses": info["losses"], "initial_state": initial_state})

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc=f"nir {net.family}", unit="step")
    check_every = max(1, int(check_every))
    stopped = False
    started = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore"):   # divergence is reported, not warned
        for t in range(steps):
            sim.step()
            for name, avg in averages.items():
                avg.update(neurons[name].v)
            for name, log in spiking_logs.items():
                fired = np.flatnonzero(neurons[name].output)
                if fired.size:
                    log.append(t, fired, 1.0)
            if samples and sim.k % record_every == 0:
                sample_steps.append(t)
                for name, rows in samples.items():
                    rows.append(neurons[name].v.copy())
            if bar is not None:
                bar.update(1)
            if stop is not None and sim.k % check_every == 0:
                ctx = ControlContext(net, {p: n.v for p, n in neurons.items()},
                                     GainState([Gain(k, v) for k, v in gains_final.items()]), averages)
                ctx.step, ctx.snapshot = t, snapshot
                if stop(t, ctx):
                    stopped = True
                    break
    if bar is not None:
        bar.close()
    trace = snapshot()
    trace.wall_time, trace.stopped_early = time.perf_counter() - started, stopped
    trace.events = {name: log.arrays() for name, log in logs.items()}
    trace.events_truncated = any(log.truncated for log in logs.values())
    trace.samples = {name: (np.array(sample_steps, dtype=np.int64),
                            np.array(rows).reshape(len(sample_steps), neurons[name].size))
                     for name, rows in samples.items()}
    trace.record_every = record_every if samples else 0
    return trace


class NIRBackend(Backend):
    name = "nir"
    description = ("exports to NIR (.nir; lossy, the loss list says what is dropped) and re-runs "
                   "the written graph with snn_compile.nir_interpreter")
    #: ``-o`` names the artifact file itself (see the report's proposal for api.run_and_write).
    output_kind = "file"

    OPTIONS = ("initial_state", "check_every", "max_events", "path")

    @classmethod
    def available(cls) -> tuple[bool, str]:
        missing = [m for m in ("nir", "h5py") if importlib.util.find_spec(m) is None]
        return (not missing, f"needs the package(s) {', '.join(missing)} (pip install nir)" if missing else "")

    def capabilities(self) -> Capabilities:
        return Capabilities(
            features=frozenset({"binary_spikes", "graded_spikes", "always_emit", "decay", "bias_gain",
                                "reset_to_value", "delays"}),
            notes="lossy export: these features map exactly (graded populations as LI/I nodes that "
                  "output v every step); check() refuses only what cannot be written at all and "
                  "nir_losses(net) lists every approximation")

    def check(self, net: Network) -> None:
        check_exportable(net)

    def emit(self, net: Network, out_path) -> list[Path]:
        """Write ``out_path`` (a ``.nir`` file; a folder gets ``network.nir``) and its loss list."""
        out_path = Path(out_path)
        if out_path.is_dir():
            out_path = out_path / DEFAULT_FILE
        export_nir(net, out_path)
        return [out_path, losses_path(out_path)]

    def report(self, net: Network, qp, steps: int, *, path=None) -> str:
        """What the CLI prints after ``-o OUT.nir``: the loss list and its measured effect
        (the reference run against the interpreter's run of the written file)."""
        return format_losses(nir_losses(net)) + "\n" + \
            format_comparison(compare_with_reference(net, qp, steps, path=path))

    def run(self, net: Network, steps: int, *, record_every: Optional[int] = None,
            progress: bool = False, stop: Optional[StopCallback] = None, check_every: int = 100,
            initial_state: str = "zero", max_events: int = DEFAULT_MAX_EVENTS, path=None,
            **options) -> Trace:
        """Export ``net`` (to ``path``, else a temporary file), read it back with
        ``nir.read`` and run it. ``initial_state``: "zero" (NIR's reading) or
        "metadata" (the IR's v_init, kept in node metadata)."""
        import nir

        if options:
            raise InputError(f"unknown option(s) {sorted(options)} for target 'nir'; "
                             f"known: {', '.join(self.OPTIONS)}", field="options")
        self.check(net)
        with tempfile.TemporaryDirectory(prefix="snn-nir-") as tmp:
            file = Path(path) if path is not None else Path(tmp) / DEFAULT_FILE
            export_nir(net, file)
            graph = nir.read(file)
        return run_graph(net, graph, steps, record_every=record_every, progress=progress, stop=stop,
                         check_every=check_every, initial_state=initial_state, max_events=max_events,
                         backend_name=self.name)


# ---------------------------------------------------------------- measured effect
def compare_with_reference(net: Network, qp, steps: int, *, initial_state: str = "zero",
                           path=None) -> dict:
    """Run ``net`` on the reference backend and its NIR export (written, re-read,
    interpreted) for ``steps`` steps; decoded x and spike trains side by side."""
    from snn_compile.backends.reference import simulate
    from snn_compile.classical import reference_solution
    from snn_compile.decode import decode_solution

    ref = simulate(net, steps, record_every=0)
    out = NIRBackend().run(net, steps, record_every=0, initial_state=initial_state, path=path)
    x_ref = decode_solution(net, ref, qp).x
    x_nir = decode_solution(net, out, qp).x
    x_star = reference_solution(qp).x
    norm = lambda v: float(np.linalg.norm(v, np.inf)) if np.all(np.isfinite(v)) else math.inf  # noqa: E731
    spikes = {}
    for name, (ref_steps, ref_ids, _) in ref.events.items():
        nir_steps, nir_ids, _ = out.events.get(name, (np.empty(0, np.int64), np.empty(0, np.int32), None))
        size = net.population(name).size
        ref_set = set(zip(ref_steps.tolist(), ref_ids.tolist()))
        nir_set = set(zip(nir_steps.tolist(), nir_ids.tolist()))
        spikes[name] = {"reference_counts": ref.spike_counts[name].tolist(),
                        "nir_counts": out.spike_counts[name].tolist(),
                        "reference_total": len(ref_set), "nir_total": len(nir_set),
                        "coincident": len(ref_set & nir_set),
                        "first_difference_step": _first_difference(ref_set, nir_set), "size": size}
    return {"steps": int(steps), "initial_state": initial_state, "family": net.family,
            "x_reference": x_ref.tolist(), "x_nir": x_nir.tolist(), "x_optimum": x_star.tolist(),
            "x_difference_inf": norm(x_nir - x_ref),
            "x_error_reference_inf": norm(x_ref - x_star), "x_error_nir_inf": norm(x_nir - x_star),
            "spikes": spikes, "losses": out.meta["nir_losses"]}


def _first_difference(a: set, b: set) -> Optional[int]:
    diff = a ^ b
    return min(step for step, _ in diff) if diff else None


def format_comparison(report: dict) -> str:
    lines = [f"measured over {report['steps']} steps (NIR run: interpreter, initial state "
             f"{report['initial_state']}):",
             f"  decoded x: reference {np.round(report['x_reference'], 6).tolist()}, "
             f"NIR {np.round(report['x_nir'], 6).tolist()}, optimum {np.round(report['x_optimum'], 6).tolist()}",
             f"  |x_nir − x_ref|∞ = {report['x_difference_inf']:.3g}; |x − x*|∞: reference "
             f"{report['x_error_reference_inf']:.3g}, NIR {report['x_error_nir_inf']:.3g}"]
    for name, s in report["spikes"].items():
        lines.append(f"  spikes of '{name}': reference {s['reference_total']}, NIR {s['nir_total']}, "
                     f"coincident (same step and neuron) {s['coincident']}, first difference at step "
                     f"{s['first_difference_step']}")
    return "\n".join(lines)
