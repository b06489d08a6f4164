"""The ``brian2`` target: any float IR as a Brian2 network, run in Brian2's
runtime mode (``numpy`` code generation by default, ``cython`` on request), or
emitted as a standalone ``run_brian2.py`` that needs only brian2 and numpy.

One IR step is one Brian2 time step (``defaultclock.dt`` = IR ``dt`` × 1 ms);
every state is unitless and every equation is written per step. How each IR
feature maps onto Brian2 (docs/backends.md has the same table):

=============================  ==============================================================
IR feature                     Brian2 mechanism
=============================  ==============================================================
population                     ``NeuronGroup``; per-neuron parameters are ``(constant)``
                               variables set from arrays; code strings are generated from
                               numbers and fixed identifiers only
update (input, leak, clamp)    ``run_regularly`` code ``inp = …; u = decay*v + inp;
                               v = clip(u, v_min, v_max)`` (a discrete map, not an ODE, so
                               it is not left to a state updater)
partial / multi-phase          the update is ``run_on_event`` of a custom event whose
schedule                       condition is ``t_in_timesteps % N == k`` (also part of the
                               threshold), so a population updates only in its phases
fire / emit / reset            Brian2 ``threshold`` (``v > theta``) and ``reset`` code; the
                               reset writes the emission ``out`` (1, v or v − θ) and then
                               resets v
emits every update (θ = −∞)    no threshold: the update code writes ``out`` every update
spike cap (K per update)       a ``network_operation`` between update and threshold marks
                               the K largest v − θ (ties: lowest index) in ``allowed``; the
                               threshold is ``v > theta and allowed``
projection from a spiking      ``Synapses`` with ``on_pre: acc_post += w * out_pre`` on the
population, delay 0            ``spike`` event
projection from a spiking      ``Synapses`` with the same ``on_pre`` on a custom event
population, delay d ≥ 1        ``lagd`` (``out_d != 0``) of the emission history (see below)
projection from a population   ``Synapses`` with a summed variable
that emits every update        ``acc_post = w * out_d_pre (summed)``
delay-d buffers                per-population history variables ``out_1 … out_D`` shifted by
                               a ``run_regularly`` in the ``start`` slot
initial-state emission         ``out`` starts as what ``v_init`` emits, so the first shift
                               makes it e(−1)
update order, delay-0 reads    one ``when`` slot (``groups``) with ``order`` = 100 × the
                               population's position + the sub-step (inputs, update, cap,
                               threshold, reset, monitor), so a delay-0 reader runs after
                               its source's reset within the same step
gains, formula gains           ``(shared)`` variables written every step by a
                               ``network_operation`` (``start`` slot) from the shared
                               ``snn_compile.runtime.GainState``
control rules                  a ``network_operation`` (``end`` slot) calls the shared
                               ``ControlRuntime.after_step``, reading and writing the live
                               state and emission arrays
spike counts, raster           ``SpikeMonitor(record=False)``; recorded populations add an
                               ``EventMonitor`` on an event ``recorded`` (spike, eligible
                               neuron, room left in the log) with the payload ``out``
state samples                  ``StateMonitor`` (``start`` slot, every ``record_every`` steps)
=============================  ==============================================================

Why delayed spikes do not use Brian2's synaptic ``delay``: the spike queue stores
*which* neurons fired, not the graded payload, and a control rule (the restart
of docs/ir.md §4) may rewrite a delayed emission after it was queued. Reading
the payload, and the event, from the emission history reproduces both exactly.

Summation order matches the reference bit for bit: synapses are created in CSR
order, so a summed variable (``bincount``) and ``on_pre`` (``add.at``) add each
row's terms in ascending source order starting from 0, and the input adds the
gain-multiplied projection sums one statement at a time in projection order.
The Cython target is compiled without ``-ffast-math`` and with
``-ffp-contract=off`` (no fused multiply-add), into its own persistent cache
directory (``cache_dir`` option; default ``$SNN_COMPILE_BRIAN2_CACHE`` or
``~/.cache/snn-compile/brian2-cython``): Brian2's cache key ignores compiler
flags, so sharing Brian2's default cache could load modules built with fast math.

The functions between the PORTABLE markers use only numpy and brian2: they are
copied verbatim into the emitted ``run_brian2.py``, so the backend and the
standalone script build the very same network.
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import numpy as np
import scipy.sparse as sp

from snn_compile.errors import InputError
from snn_compile.ir import AdaptiveRestart, Network, RunningAverage
from snn_compile.runtime import ControlRuntime, GainState, emission_of_state
from snn_compile.trace import DEFAULT_MAX_EVENTS, Trace

from .base import FEATURES, Backend, Capabilities, StopCallback
from .reference import _default_sample_interval

SPEC_FORMAT = "snn-compile-brian2"
SPEC_VERSION = 1
CODEGEN_TARGETS = ("numpy", "cython")
#: Environment variable naming the Cython cache directory (see the module docstring).
CACHE_ENV = "SNN_COMPILE_BRIAN2_CACHE"


def default_cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "snn-compile" / "brian2-cython"


# ====================================================================== IR → spec + arrays
def _merged_order(net: Network) -> list[int]:
    """One population order consistent with every schedule phase (Brian2 objects
    have one fixed ``order``). Phases that disagree fall back to the delay-0
    dependencies, the only order within a step that the semantics can observe
    (docs/ir.md §2: a population reads only delay-0 emissions of this step)."""
    names = [p.name for p in net.populations]
    index = {name: i for i, name in enumerate(names)}
    first_seen = {}
    for phase in net.schedule:
        for name in phase:
            first_seen.setdefault(index[name], len(first_seen))

    def toposort(edges: set) -> Optional[list[int]]:
        indegree = {i: 0 for i in range(len(names))}
        for _, b in edges:
            indegree[b] += 1
        ready = sorted((i for i, d in indegree.items() if d == 0), key=first_seen.get)
        out = []
        while ready:
            node = ready.pop(0)
            out.append(node)
            for a, b in sorted(edges):
                if a == node:
                    indegree[b] -= 1
                    if indegree[b] == 0:
                        ready.append(b)
            ready.sort(key=first_seen.get)
        return out if len(out) == len(names) else None

    phase_edges = {(index[phase[a]], index[phase[b]]) for phase in net.schedule
                   for a in range(len(phase)) for b in range(a + 1, len(phase))}
    order = toposort(phase_edges)
    if order is None:   # the IR's validation makes delay-0 edges acyclic
        order = toposort({(index[p.source], index[p.target]) for p in net.projections if p.delay == 0})
    return order


def _csr_triplet(prefix: str, matrix, arrays: dict) -> dict:
    """Store a matrix as CSR (rows, cols, data) in row-major order; returns its shape entry."""
    csr = sp.csr_matrix(matrix, dtype=np.float64)
    csr.sort_indices()
    arrays[f"{prefix}_rows"] = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
    arrays[f"{prefix}_cols"] = csr.indices.astype(np.int64)
    arrays[f"{prefix}_data"] = csr.data.astype(np.float64)
    return {"key": prefix, "shape": list(csr.shape)}


def describe(net: Network, default_steps: Optional[int] = None) -> tuple[dict, dict]:
    """The network as a JSON-able structure plus named arrays: everything the
    portable builder (and the emitted script) needs, and nothing user-written
    reaches Brian2 code (population names only label results)."""
    names = [p.name for p in net.populations]
    index = {name: i for i, name in enumerate(names)}
    gain_index = {g.name: k for k, g in enumerate(net.gains)}
    n_phases = len(net.schedule)
    arrays: dict[str, np.ndarray] = {}
    lags = {name: 0 for name in names}
    for proj in net.projections:
        lags[proj.source] = max(lags[proj.source], proj.delay)

    populations = []
    for i, pop in enumerate(net.populations):
        cap = pop.max_spikes_per_step
        cap = cap if cap is not None and cap < pop.size else None   # a cap ≥ size never binds
        graded = pop.spike == "graded"
        # docs/ir.md §2: a firing neuron is a spike if its threshold is finite or spikes are binary.
        eligible = np.isfinite(pop.threshold) | (not graded)
        for key in ("decay", "bias", "v_min", "v_max", "v_init", "threshold", "reset_value"):
            arrays[f"p{i}_{key}"] = np.asarray(getattr(pop, key), dtype=np.float64)
        arrays[f"p{i}_eligible"] = eligible
        # docs/ir.md §2: e_p(−1), zero unless the population emits its initial state
        arrays[f"p{i}_initial_emission"] = emission_of_state(pop, pop.v_init) if pop.emit_initial_state \
            else np.zeros(pop.size)
        populations.append({
            "name": pop.name, "size": pop.size,
            # every update emits (no comparison): a dense emitter feeds summed variables
            "dense": bool(graded and cap is None and np.all(np.isneginf(pop.threshold))),
            "payload": "binary" if not graded else pop.payload,
            "reset": pop.reset, "cap": cap,
            "unit_decay": bool(np.all(pop.decay == 1.0)),
            "has_bias": bool(np.any(pop.bias != 0.0)),
            "bias_gain": gain_index.get(pop.bias_gain),
            "clamped": bool(np.any(np.isfinite(pop.v_min)) or np.any(np.isfinite(pop.v_max))),
            "lags": lags[pop.name], "record": bool(pop.record),
            "phases": [k for k, phase in enumerate(net.schedule) if pop.name in phase],
        })

    projections = []
    for j, proj in enumerate(net.projections):
        csr = sp.csr_matrix(proj.weights, dtype=np.float64)
        csr.sort_indices()
        arrays[f"j{j}_post"] = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
        arrays[f"j{j}_pre"] = csr.indices.astype(np.int64)
        arrays[f"j{j}_w"] = csr.data.astype(np.float64)
        source = populations[index[proj.source]]
        projections.append({"name": proj.name, "source": index[proj.source], "target": index[proj.target],
                            "delay": proj.delay, "gain": gain_index.get(proj.gain), "nnz": int(csr.nnz),
                            "mechanism": "summed" if source["dense"] else "on_pre"})

    gains = [{"name": g.name, "value": g.value, "steps": list(g.steps), "values": list(g.values),
              "formula": g.formula, "params": dict(g.params)} for g in net.gains]
    controls = []
    for rule in net.controls:
        if isinstance(rule, RunningAverage):
            controls.append({"kind": "RunningAverage", "populations": [index[n] for n in rule.populations]})
        elif isinstance(rule, AdaptiveRestart):
            prob = rule.problem
            entry = {"kind": "AdaptiveRestart", "check_every": rule.check_every,
                     "primal": index[rule.primal], "primal_average": index[rule.primal_average],
                     "dual": index[rule.dual], "dual_average": index[rule.dual_average],
                     "primal_weight_init": rule.primal_weight_init,
                     "beta_sufficient": rule.beta_sufficient, "beta_necessary": rule.beta_necessary,
                     "beta_artificial": rule.beta_artificial,
                     "primal_weight_smoothing": rule.primal_weight_smoothing,
                     "update_primal_weight": rule.update_primal_weight, "matrices": {}}
            k = len(controls)
            for key in ("P", "G", "A"):
                entry["matrices"][key] = _csr_triplet(f"c{k}_{key}", getattr(prob, key), arrays)
            for key in ("q", "h", "b", "lb", "ub"):
                arrays[f"c{k}_{key}"] = np.asarray(getattr(prob, key), dtype=np.float64)
            controls.append(entry)

    terms = []
    for k, term in enumerate(net.readout.terms):
        entry = {"target": term.target, "population": index[term.population], "quantity": term.quantity,
                 "scale": term.scale, "divide_by_gain": gain_index.get(term.divide_by_gain), "matrix": None}
        if term.matrix is not None:
            entry["matrix"] = _csr_triplet(f"r{k}", term.matrix, arrays)
        terms.append(entry)
    for target, offset in net.readout.offsets.items():
        arrays[f"offset_{target}"] = np.asarray(offset, dtype=np.float64)
    scaling = net.provenance.get("scaling")
    scaling_keys = []
    if scaling is not None:
        for key in ("d", "e_ineq", "e_eq", "cost"):
            value = scaling.get(key) if isinstance(scaling, dict) else getattr(scaling, key, None)
            if value is not None:
                arrays[f"scaling_{key}"] = np.asarray(value, dtype=np.float64)
                scaling_keys.append(key)

    spec = {"format": SPEC_FORMAT, "version": SPEC_VERSION, "family": net.family,
            "dt": net.dt, "n_phases": n_phases, "order": _merged_order(net),
            "populations": populations, "projections": projections, "gains": gains,
            "controls": controls,
            "readout": {"terms": terms, "offsets": sorted(net.readout.offsets),
                        "sizes": dict(net.readout.sizes)},
            "scaling": scaling_keys, "default_steps": default_steps}
    return spec, arrays


# ====================================================================== PORTABLE (numpy + brian2)
# Everything from here to the END PORTABLE marker is copied into run_brian2.py.
def configure_brian2(codegen, cache_dir=None):
    """Select the code generation target. Cython: IEEE arithmetic (no fast math,
    no fused multiply-add, so results equal numpy's) in a persistent cache."""
    import brian2 as b2
    if codegen not in ("numpy", "cython"):
        raise ValueError(f"codegen must be 'numpy' or 'cython', got {codegen!r}")
    b2.prefs.codegen.target = codegen
    if codegen == "cython":
        b2.prefs.codegen.runtime.cython.cache_dir = str(cache_dir)
        b2.prefs.codegen.cpp.extra_compile_args_gcc = ["-w", "-O3", "-ffp-contract=off", "-std=c++11"]


def largest_excess(fired, v, threshold, k):
    """The k firing neurons with the largest v − θ; ties go to the lowest index."""
    excess = v[fired] - threshold[fired]
    if k == 1:
        return fired[np.argmax(excess)][None]            # argmax returns the first maximum
    kth = np.partition(excess, excess.size - k)[excess.size - k]
    keep = excess > kth
    ties = np.flatnonzero(excess == kth)[: k - int(keep.sum())]
    keep[ties] = True
    return fired[keep]


def build_network(spec, arrays, *, start_hook=None, end_hook=None, sample_every=0, sampled=(),
                  max_events=0):
    """Brian2 objects for ``spec``/``arrays`` (see the module table), in a ``Network``.

    ``start_hook(step)`` runs before each step's updates (gains), ``end_hook(step)``
    after them (control rules); ``sampled`` population indices get a StateMonitor
    of v every ``sample_every`` steps; populations marked ``record`` keep their
    first ``max_events`` spikes (and a few more from the last step). Returns a
    namespace with the network, the live arrays (writes land in the simulation)
    and the monitors.
    """
    import types

    import brian2 as b2

    step_dt = spec["dt"] * b2.ms
    b2.defaultclock.dt = step_dt
    pops, projs, n_phases = spec["populations"], spec["projections"], spec["n_phases"]
    position = {p: k for k, p in enumerate(spec["order"])}
    incoming = [[j for j, pr in enumerate(projs) if pr["target"] == i and pr["nnz"]]
                for i in range(len(pops))]
    lag_events = [sorted({pr["delay"] for pr in projs if pr["source"] == i and pr["nnz"]
                          and pr["mechanism"] == "on_pre" and pr["delay"] > 0}) for i in range(len(pops))]
    emit_code = {"binary": "out = 1", "state": "out = v", "excess": "out = v - theta"}

    def reset_code(p):
        # After "out = v", an in-place "v -= r" would also change out in Brian2's numpy
        # target (see the input code below), so a state-payload reset reads out (= v).
        if p["reset"] == "subtract":
            return ["v = out - reset_value" if p["payload"] == "state" else "v = v - reset_value"]
        return ["v = reset_value"] if p["reset"] == "to_value" else []

    built = types.SimpleNamespace(groups=[], live=[], spike_monitors={}, event_monitors={},
                                  state_monitors={}, gain_slots=[], step_dt=step_dt, first_step_time=None)
    recording = []                                        # (events kept, recording flag) per recorder
    objects = []

    for i, p in enumerate(pops):
        values = {key: arrays[f"p{i}_{key}"] for key in
                  ("decay", "bias", "v_min", "v_max", "v_init", "threshold", "reset_value")}
        if p["size"] == 0:   # Brian2 has no empty groups; nothing to simulate
            empty = np.zeros(0)
            built.groups.append(None)
            built.live.append({"v": empty, "u": empty, "out": [empty] * (p["lags"] + 1)})
            continue
        base = 100 * position[i]
        model = ["v : 1", "inp : 1", "out : 1"] + [f"out_{d} : 1" for d in range(1, p["lags"] + 1)]
        constants = ["decay"] * (not p["unit_decay"]) + ["bias"] * p["has_bias"] \
            + ["v_min", "v_max"] * p["clamped"] + ["theta"] * (not p["dense"] or p["payload"] == "excess") \
            + ["reset_value"] * (p["reset"] != "none")
        model += [f"{name} : 1 (constant)" for name in constants]
        model += ["u : 1"] * p["clamped"] + ["allowed : boolean"] * (p["cap"] is not None)
        eligible = arrays[f"p{i}_eligible"]
        record = bool(p["record"] and max_events > 0 and not p["dense"] and eligible.any())
        model += ["recording : boolean (shared)"] * record + ["eligible : boolean (constant)"] * \
            (record and not eligible.all())
        model += ["gain_bias : 1 (shared)"] * (p["has_bias"] and p["bias_gain"] is not None)
        for j in incoming[i]:
            model.append(f"acc{j} : 1")
            if projs[j]["gain"] is not None:
                model.append(f"gain{j} : 1 (shared)")

        active = None if len(p["phases"]) == n_phases else \
            " or ".join(f"t_in_timesteps % {n_phases} == {k}" for k in p["phases"])
        events = {f"lag{d}": f"out_{d} != 0" for d in lag_events[i]}
        if active:
            events["update"] = active
        threshold = reset = None
        if not p["dense"]:
            threshold = " and ".join(["v > theta"] + ["allowed"] * (p["cap"] is not None)
                                     + [f"({active})"] * bool(active))
            reset = "\n".join([emit_code[p["payload"]]] + reset_code(p))
            if record:   # spikes (docs/ir.md §2: eligible neurons only) while the log has room
                events["recorded"] = " and ".join([threshold] + ["eligible"] * (not eligible.all())
                                                  + ["recording"])
        group = b2.NeuronGroup(p["size"], "\n".join(model), threshold=threshold, reset=reset,
                               events=events or None, name=f"p{i}")
        group.state_updater.active = False               # no differential equations
        group.v = values["v_init"]
        group.out = arrays[f"p{i}_initial_emission"]     # e(−1): the first step start shifts it to out_1
        if record:
            group.recording = True
            if not eligible.all():
                group.eligible = eligible
        for name in constants:
            group.variables[name].set_value(values["threshold" if name == "theta" else name])

        # Step start: shift the emission history, clear this step's emission and event inputs.
        start = [f"out_{d} = out_{d - 1}" if d > 1 else "out_1 = out" for d in range(p["lags"], 0, -1)]
        if not (p["dense"] and not active):               # a dense, always-updating group rewrites out
            start.append("out = 0")
        start += [f"acc{j} = 0" for j in incoming[i] if projs[j]["mechanism"] == "on_pre"]
        if start:
            group.run_regularly("\n".join(start), when="start", order=2, name=f"p{i}_step_start")
        for d in lag_events[i]:
            group.set_event_schedule(f"lag{d}", when="start", order=3)

        # The update of docs/ir.md §2 steps 1–3, one statement per sum so the order is fixed.
        # Brian2 turns "x = x + y" into the in-place "x += y"; its numpy target would then
        # also change an array that x merely aliases after "x = y", so x never starts as a
        # bare copy of another variable (same sums: bias + t1 = (bias) + t1, 0 + t = t).
        terms = [f"gain{j} * acc{j}" if projs[j]["gain"] is not None else f"acc{j}" for j in incoming[i]]
        if p["has_bias"] and p["bias_gain"] is not None:
            code = ["inp = bias * gain_bias"]
        elif p["has_bias"] and terms:
            code = [f"inp = bias + {terms.pop(0)}"]
        else:
            code = ["inp = bias" if p["has_bias"] else "inp = 0"]
        code += [f"inp = inp + {term}" for term in terms]
        integrate = "v + inp" if p["unit_decay"] else "decay * v + inp"
        code += [f"u = {integrate}", "v = clip(u, v_min, v_max)"] if p["clamped"] else [f"v = {integrate}"]
        if p["dense"]:
            code += [emit_code[p["payload"]]] + reset_code(p)
        if active:
            group.set_event_schedule("update", when="groups", order=base + 49)
            group.run_on_event("update", "\n".join(code), when="groups", order=base + 50)
        else:
            group.run_regularly("\n".join(code), when="groups", order=base + 50, name=f"p{i}_update")
        if threshold:
            group.set_event_schedule("spike", when="groups", order=base + 70)
            if record:
                group.set_event_schedule("recorded", when="groups", order=base + 75)
            group.resetter["spike"].when, group.resetter["spike"].order = "groups", base + 80

        live = {"v": group.variables["v"].get_value(),
                "u": group.variables["u"].get_value() if p["clamped"] else group.variables["v"].get_value(),
                "out": [group.variables["out"].get_value()]
                + [group.variables[f"out_{d}"].get_value() for d in range(1, p["lags"] + 1)]}
        if p["has_bias"] and p["bias_gain"] is not None:
            built.gain_slots.append((p["bias_gain"], group.variables["gain_bias"].get_value()))
        for j in incoming[i]:
            if projs[j]["gain"] is not None:
                built.gain_slots.append((projs[j]["gain"], group.variables[f"gain{j}"].get_value()))
        if p["cap"] is not None:
            allowed = group.variables["allowed"].get_value()
            objects.append(b2.NetworkOperation(_cap_operation(live["v"], values["threshold"], allowed, p["cap"]),
                                               when="groups", order=base + 60, name=f"p{i}_spike_cap"))
        if threshold:                                     # spike counts only
            built.spike_monitors[i] = b2.SpikeMonitor(group, record=False, when="groups",
                                                      order=base + 90, name=f"p{i}_spike_counts")
            objects.append(built.spike_monitors[i])
        if record:                                        # after the reset has written out
            mon = built.event_monitors[i] = b2.EventMonitor(group, "recorded", variables=["out"],
                                                            when="groups", order=base + 91,
                                                            name=f"p{i}_spike_events")
            recording.append((mon.variables["N"].get_value(), group.variables["recording"].get_value()))
            objects.append(mon)
        if i in sampled and sample_every:
            built.state_monitors[i] = b2.StateMonitor(group, "v", record=True, dt=sample_every * step_dt,
                                                      when="start", order=0, name=f"p{i}_samples")
            objects.append(built.state_monitors[i])
        built.groups.append(group)
        built.live.append(live)
        objects.append(group)

    for j, pr in enumerate(projs):
        if not pr["nnz"]:
            continue                                      # adds exactly nothing
        source, target = built.groups[pr["source"]], built.groups[pr["target"]]
        payload = "out" if pr["delay"] == 0 else f"out_{pr['delay']}"
        order = 100 * position[pr["target"]] + 10
        if pr["mechanism"] == "summed":
            model = f"w : 1 (constant)\nacc{j}_post = w * {payload}_pre : 1 (summed)"
            syn = b2.Synapses(source, target, model, name=f"j{j}")
            updater = syn.summed_updaters[f"acc{j}_post"]
            updater.when, updater.order = "groups", order
        else:
            syn = b2.Synapses(source, target, "w : 1 (constant)", on_pre=f"acc{j}_post += w * {payload}_pre",
                              on_event="spike" if pr["delay"] == 0 else f"lag{pr['delay']}", name=f"j{j}")
            syn.pre.when, syn.pre.order = "groups", order
        syn.connect(i=arrays[f"j{j}_pre"], j=arrays[f"j{j}_post"])   # CSR order: see the module doc
        syn.variables["w"].set_value(arrays[f"j{j}_w"])
        objects.append(syn)

    clock_step = b2.defaultclock.variables["timestep"].get_value()

    def at_start():
        step = int(clock_step[0])
        if built.first_step_time is None:
            built.first_step_time = time.perf_counter()   # code generation is over
        if start_hook is not None:
            start_hook(step)

    def at_end():
        for kept, flag in recording:
            if flag[0] and kept[0] >= max_events:
                flag[0] = False
        if end_hook is not None:
            end_hook(int(clock_step[0]))

    objects.append(b2.NetworkOperation(at_start, when="start", order=1, name="host_step_start"))
    if end_hook is not None or recording:
        objects.append(b2.NetworkOperation(at_end, when="end", order=0, name="host_step_end"))
    built.net = b2.Network(*objects)
    return built


def _cap_operation(v, threshold, allowed, k):
    """docs/ir.md §2 step 4: of the neurons with v > θ, only the k largest v − θ may fire."""
    def mark_allowed():
        fired = np.flatnonzero(v > threshold)
        if fired.size > k:
            fired = largest_excess(fired, v, threshold, k)
        allowed[:] = False
        allowed[fired] = True
    return mark_allowed


def run_steps(built, steps):
    """Run ``steps`` network steps; returns the steps taken and the stepping wall time."""
    built.first_step_time = None
    built.net.run(steps * built.step_dt)
    done = time.perf_counter()
    taken = int(round(float(built.net.t / built.step_dt)))
    wall = done - built.first_step_time if built.first_step_time is not None else 0.0
    return taken, wall


def spike_events(built, i, max_events):
    """(steps, neurons, payloads) of population i's first ``max_events`` spikes."""
    mon = built.event_monitors.get(i)
    if mon is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0)
    steps = np.round(np.asarray(mon.t_[:]) / float(built.step_dt)).astype(np.int64)
    return (steps[:max_events], np.asarray(mon.i[:max_events], np.int32),
            np.asarray(mon.out[:max_events], np.float64))


def spike_counts(built, i, eligible):
    if i not in built.spike_monitors:
        return np.zeros(eligible.size, dtype=np.int64)
    counts = built.spike_monitors[i].variables["count"].get_value().astype(np.int64)
    return counts * eligible


def update_count(phases, n_phases, steps):
    """How many of steps 0 … steps−1 update a population with these phases."""
    return sum(len(range(k, steps, n_phases)) for k in phases)


def clamp_excess(built, spec, arrays, i, steps):
    """c = u − clamp(u) of the population's last update (docs/ir.md §2 step 3)."""
    p = spec["populations"][i]
    if not p["clamped"] or update_count(p["phases"], spec["n_phases"], steps) == 0:
        return np.zeros(p["size"])
    u = built.live[i]["u"]
    return u - np.minimum(np.maximum(u, arrays[f"p{i}_v_min"]), arrays[f"p{i}_v_max"])
# ====================================================================== END PORTABLE


# ====================================================================== script-only rules
# These mirror docs/ir.md §2.1 (formula gains), §3 (readout) and §4 (control rules)
# for the standalone script, which cannot import snn_compile. They are written
# with the same floating-point operations, in the same order, as snn_compile's.
SCRIPT_RULES = r'''
def csr_matvec(arrays, entry, x):
    """M @ x for a matrix stored as row-major (rows, cols, data); rows add in column order."""
    key = entry["key"]
    return np.bincount(arrays[key + "_rows"], arrays[key + "_data"] * x[arrays[key + "_cols"]],
                       minlength=entry["shape"][0])


def csr_rmatvec(arrays, entry, x):
    """M.T @ x, adding each output in ascending row order."""
    key = entry["key"]
    return np.bincount(arrays[key + "_cols"], arrays[key + "_data"] * x[arrays[key + "_rows"]],
                       minlength=entry["shape"][1])


class Gains:
    """g(t) of docs/ir.md §2 (piecewise constant) and §2.1 (apdhg); the restart rule
    sets epoch_step t and primal_weight ω."""

    def __init__(self, specs):
        self.specs, self.epoch_step, self.primal_weight = specs, None, 1.0

    def values(self, step):
        out = []
        for g in self.specs:
            if g["formula"] == "apdhg":
                t = step + 1 if self.epoch_step is None else self.epoch_step
                L, k, s = g["params"]["L"], g["params"]["k"], g["params"]["s"]
                b = 2.0 / (t + 1)
                tau = 1.0 / (b * L / s + self.primal_weight * k / np.sqrt(s))
                term = {"b": b, "1-b": 1.0 - b, "tau": tau, "tau*b": tau * b, "tau*(1-b)": tau * (1.0 - b),
                        "sigma": np.sqrt(s) * self.primal_weight / k}[g["params"]["term"]]
                out.append(1.0 * (g["value"] * term))
            else:
                value = g["value"]
                for s, v in zip(g["steps"], g["values"]):
                    if step >= s:
                        value = v
                out.append(1.0 * value)
        return out


def kkt_error(arrays, rule, x, v):
    """KKT(x, v) of docs/ir.md §4."""
    k, mats = rule["index"], rule["matrices"]
    q, h, b, lb, ub = (arrays[f"c{k}_{key}"] for key in ("q", "h", "b", "lb", "ub"))
    m_g = mats["G"]["shape"][0]
    z, y = v[:m_g], v[m_g:]
    g = (csr_matvec(arrays, mats["P"], x) + q + csr_rmatvec(arrays, mats["G"], z)
         + csr_rmatvec(arrays, mats["A"], y))
    zeta = -g
    free_lo, free_hi = ~np.isfinite(lb), ~np.isfinite(ub)
    zeta[free_lo] = np.maximum(zeta[free_lo], 0.0)
    zeta[free_hi] = np.minimum(zeta[free_hi], 0.0)
    r_d = g + zeta
    r_p = np.concatenate([np.maximum(csr_matvec(arrays, mats["G"], x) - h, 0.0),
                          csr_matvec(arrays, mats["A"], x) - b])
    gap = (x @ csr_matvec(arrays, mats["P"], x) + q @ x + h @ z + b @ y
           + lb[~free_lo] @ np.minimum(zeta[~free_lo], 0.0) + ub[~free_hi] @ np.maximum(zeta[~free_hi], 0.0))
    return float(np.sqrt(r_p @ r_p + r_d @ r_d + gap * gap))


class Controls:
    """RunningAverage and AdaptiveRestart (docs/ir.md §4), run after every step."""

    def __init__(self, spec, arrays, built, gains):
        self.spec, self.arrays, self.built, self.gains = spec, arrays, built, gains
        self.averages, self.counts, self.restarts, self.restart_count = {}, {}, [], 0
        for k, rule in enumerate(spec["controls"]):
            if rule["kind"] == "RunningAverage":
                for i in rule["populations"]:
                    self.averages.setdefault(i, np.zeros(spec["populations"][i]["size"]))
                    self.counts.setdefault(i, 0)
            else:
                rule = dict(rule, index=k)
                gains.primal_weight, gains.epoch_step = rule["primal_weight_init"], 1
                x_r, v_r = self.state(rule["primal"]).copy(), self.state(rule["dual"]).copy()
                rule.update(t=1, x_r=x_r, v_r=v_r, kkt_r=kkt_error(arrays, rule, x_r, v_r), kkt_prev=np.inf)
                self.restarts.append(rule)

    def state(self, i):
        return self.built.live[i]["v"]

    def after_step(self, step):
        n = self.spec["n_phases"]
        for i, mean in self.averages.items():
            if step % n in self.spec["populations"][i]["phases"]:
                self.counts[i] += 1
                scratch = self.state(i) - mean
                scratch /= self.counts[i]
                mean += scratch
        for rule in self.restarts:
            self.restart(rule, step)

    def restart(self, rule, step):
        rule["t"] += 1
        self.gains.epoch_step = rule["t"]
        if (step + 1) % rule["check_every"]:
            return
        x, v = self.state(rule["primal"]).copy(), self.state(rule["dual"]).copy()
        x_avg, v_avg = self.state(rule["primal_average"]).copy(), self.state(rule["dual_average"]).copy()
        kkt_cur, kkt_avg = kkt_error(self.arrays, rule, x, v), kkt_error(self.arrays, rule, x_avg, v_avg)
        x_c, v_c, kkt_c = (x_avg, v_avg, kkt_avg) if kkt_avg < kkt_cur else (x, v, kkt_cur)
        fire = (kkt_c <= rule["beta_sufficient"] * rule["kkt_r"]
                or (kkt_c <= rule["beta_necessary"] * rule["kkt_r"] and kkt_c > rule["kkt_prev"])
                or rule["t"] >= rule["beta_artificial"] * (step + 1))
        rule["kkt_prev"] = kkt_c
        if not fire:
            return
        omega = self.gains.primal_weight
        if rule["update_primal_weight"]:
            dx, dv = float(np.linalg.norm(x_c - rule["x_r"])), float(np.linalg.norm(v_c - rule["v_r"]))
            if dx > 1e-10:
                ratio = dv / dx if dv > 1e-10 else omega / 10.0
                theta = rule["primal_weight_smoothing"]
                omega = float(np.exp(theta * np.log(ratio) + (1.0 - theta) * np.log(omega)))
                self.gains.primal_weight = omega
        for i, value in ((rule["primal"], x_c), (rule["primal_average"], x_c), (rule["dual"], v_c),
                         (rule["dual_average"], v_c)):
            self.state(i)[...] = value
            self.set_latest_emission(i, value, step)
        rule.update(x_r=x_c.copy(), v_r=v_c.copy(), kkt_r=kkt_error(self.arrays, rule, x_c, v_c),
                    kkt_prev=np.inf, t=1)
        self.gains.epoch_step = 1
        self.restart_count += 1

    def set_latest_emission(self, i, v, step):
        """What state v emits (docs/ir.md §2 steps 4–5, no cap) replaces the latest emission."""
        p, n = self.spec["populations"][i], self.spec["n_phases"]
        lags = [lag for lag in range(step + 1) if (step - lag) % n in p["phases"]]
        if not lags or lags[0] >= len(self.built.live[i]["out"]):
            return
        theta = self.arrays[f"p{i}_threshold"]
        fired = v > theta
        if p["payload"] == "binary":
            emitted = fired.astype(v.dtype)
        else:
            emitted = np.where(fired, v if p["payload"] == "state" else v - theta, 0.0)
        self.built.live[i]["out"][lags[0]][...] = emitted


def decode(spec, arrays, quantities, gains_final):
    """The readout of docs/ir.md §3, then the scaling map back to the user's QP."""
    out = {t: np.zeros(n) for t, n in spec["readout"]["sizes"].items()}
    for term in spec["readout"]["terms"]:
        q = quantities[term["quantity"]][term["population"]]
        value = q if term["matrix"] is None else csr_matvec(arrays, term["matrix"], q)
        value = term["scale"] * value
        if term["divide_by_gain"] is not None:
            value = value / gains_final[term["divide_by_gain"]]
        out[term["target"]] = out[term["target"]] + value if term["target"] in out else value
    for target in spec["readout"]["offsets"]:
        offset = arrays["offset_" + target]
        out[target] = out.get(target, np.zeros_like(offset)) + offset
    if not spec["scaling"]:
        return out
    s = {key: arrays["scaling_" + key] for key in spec["scaling"]}
    c = float(s["cost"]) if "cost" in s else 1.0
    factor = lambda v, key: s.get(key, np.ones_like(v))  # noqa: E731
    maps = {"x": lambda v: factor(v, "d") * v, "y": lambda v: factor(v, "e_eq") * v / c,
            "z": lambda v: factor(v, "e_ineq") * v / c, "z_box": lambda v: v / (factor(v, "d") * c)}
    return {t: maps[t](np.asarray(v, dtype=np.float64)) if t in maps else v for t, v in out.items()}
'''

SCRIPT_MAIN = r'''
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="network steps (default: from network.json)")
    parser.add_argument("--codegen", choices=("numpy", "cython"), default="numpy")
    parser.add_argument("--cache-dir", default=os.environ.get("SNN_COMPILE_BRIAN2_CACHE") or
                        str(Path.home() / ".cache" / "snn-compile" / "brian2-cython"),
                        help="persistent Cython build cache")
    parser.add_argument("--output", default=None, help="result file (default: result.json here)")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent
    spec = json.loads((here / "network.json").read_text())
    with np.load(here / "network.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    steps = args.steps if args.steps is not None else spec["default_steps"]
    configure_brian2(args.codegen, args.cache_dir)

    gains = Gains(spec["gains"])
    used = {"values": gains.values(0)}
    controls = {}

    def start_hook(step):
        used["values"] = values = gains.values(step)
        for k, slot in gain_slots:
            slot[0] = values[k]

    def end_hook(step):
        controls["rules"].after_step(step)

    pops = spec["populations"]
    built = build_network(spec, arrays, start_hook=start_hook,
                          end_hook=end_hook if spec["controls"] else None)
    gain_slots = built.gain_slots
    controls["rules"] = Controls(spec, arrays, built, gains)
    taken, wall = run_steps(built, steps)

    n = len(pops)
    eligible = [arrays[f"p{i}_eligible"] for i in range(n)]
    counts = [spike_counts(built, i, eligible[i]) for i in range(n)]
    updates = [update_count(p["phases"], spec["n_phases"], taken) for p in pops]
    quantities = {
        "state": [built.live[i]["v"].copy() for i in range(n)],
        "clamp_excess": [clamp_excess(built, spec, arrays, i, taken) for i in range(n)],
        "average": [controls["rules"].averages.get(i) for i in range(n)],
        "spike_rate": [counts[i] / updates[i] if updates[i] else np.zeros(pops[i]["size"]) for i in range(n)],
    }
    solution = decode(spec, arrays, quantities, used["values"])
    result = {"steps": taken, "codegen": args.codegen, "wall_time_s": wall,
              "restarts": controls["rules"].restart_count,
              "solution": {k: v.tolist() for k, v in solution.items()},
              "final_state": {p["name"]: quantities["state"][i].tolist() for i, p in enumerate(pops)},
              "spike_counts": {p["name"]: counts[i].tolist() for i, p in enumerate(pops)}}
    output = Path(args.output) if args.output else here / "result.json"
    output.write_text(json.dumps(result, indent=1))
    print(f"{taken} steps in {wall:.2f} s; result written to {output}")


if __name__ == "__main__":
    main()
'''

SCRIPT_HEADER = '''"""Run a snn-compile network on Brian2 without snn-compile (needs brian2 and numpy).

Generated by snn-compile's brian2 target. The network's structure is in
network.json and its numbers in network.npz, both next to this file. The
gains, control rules and readout below mirror docs/ir.md §2.1, §3 and §4.

    python run_brian2.py [--steps N] [--codegen numpy|cython] [--output result.json]

The result (decoded x, y, z, z_box in the user's variables, final states and
spike counts per population) is written as JSON (non-finite numbers as NaN/Infinity).
"""
import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
'''

#: Portable functions copied into the emitted script, in this order.
_PORTABLE = ("configure_brian2", "largest_excess", "build_network", "_cap_operation", "run_steps",
             "spike_counts", "update_count", "clamp_excess")


def script_source() -> str:
    """The complete text of run_brian2.py."""
    module = globals()
    parts = [SCRIPT_HEADER] + [inspect.getsource(module[name]) for name in _PORTABLE]
    return "\n\n\n".join(part.strip("\n") for part in parts + [SCRIPT_RULES, SCRIPT_MAIN]) + "\n"


# ====================================================================== the backend
class _Emissions:
    """The ``EmissionAccess`` control rules get: the live out / out_d history arrays."""

    def __init__(self, spec: dict, built, names: list[str], clock):
        self._spec, self._built, self._clock = spec, built, clock
        self._index = {name: i for i, name in enumerate(names)}

    def _slot(self, population: str, lag: int) -> np.ndarray:
        history = self._built.live[self._index[population]]["out"]
        if not 0 <= lag < len(history):
            raise ValueError(f"population {population!r} keeps emissions of the last "
                             f"{len(history)} step(s) only (lag {lag} requested)")
        return history[lag]

    def emission(self, population: str, lag: int) -> np.ndarray:
        view = self._slot(population, lag).view()
        view.flags.writeable = False
        return view

    def set_emission(self, population: str, values, lag: int) -> None:
        self._slot(population, lag)[...] = values

    def last_update(self, population: str) -> int:
        p = self._spec["populations"][self._index[population]]
        n, step = self._spec["n_phases"], self._clock()
        return next((t for t in range(step, max(step - n, -1), -1) if t % n in p["phases"]), -1)

    def depth(self, population: str) -> int:
        return len(self._built.live[self._index[population]]["out"])


@contextmanager
def _brian2_settings(codegen: str, cache_dir):
    """Brian2's preferences and default clock are global: restore them afterwards."""
    import brian2 as b2
    keys = ("codegen.target", "codegen.runtime.cython.cache_dir", "codegen.cpp.extra_compile_args_gcc")
    saved = {key: b2.prefs[key] for key in keys}
    saved_dt = b2.defaultclock.dt
    try:
        configure_brian2(codegen, cache_dir)
        yield b2
    finally:
        for key, value in saved.items():
            b2.prefs[key] = value
        b2.defaultclock.dt = saved_dt


class Brian2Backend(Backend):
    name = "brian2"
    description = "Brian2 (runtime mode, numpy or cython code generation); emits a standalone script"

    OPTIONS = ("codegen", "cache_dir", "check_every", "max_events", "sample_populations")

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("brian2") is None:
            return False, "brian2 is not installed (pip install 'snn-compile[brian2]')"
        return True, ""

    def capabilities(self) -> Capabilities:
        return Capabilities(features=frozenset(FEATURES) - {"fixed_point"}, dtypes=("float64",),
                            notes="float64 in Brian2's runtime mode; identical spikes to the reference")

    def run(self, net: Network, steps: int, *, record_every: Optional[int] = None,
            progress: bool = False, stop: Optional[StopCallback] = None, codegen: str = "numpy",
            cache_dir=None, check_every: int = 100, max_events: int = DEFAULT_MAX_EVENTS,
            sample_populations=None, **options) -> Trace:
        """Options: ``codegen`` (``numpy``, or ``cython``: compiled, first build slow,
        then cached in ``cache_dir``), ``check_every`` (steps between ``stop``
        polls), ``max_events`` (stored spike events per recorded population),
        ``sample_populations`` (names to sample; default all)."""
        if options:
            raise InputError(f"unknown option(s) {sorted(options)} for target 'brian2'; "
                             f"known: {', '.join(self.OPTIONS)}", field="options")
        if codegen not in CODEGEN_TARGETS:
            raise InputError(f"must be one of {CODEGEN_TARGETS}, got {codegen!r}", field="codegen")
        self.check(net)
        steps = int(steps)
        if steps < 0:
            raise InputError("must be ≥ 0", field="steps")
        check_every = max(1, int(check_every))
        names = [p.name for p in net.populations]
        sampled = names if sample_populations is None else list(sample_populations)
        unknown = [name for name in sampled if name not in names]
        if unknown:
            raise InputError(f"unknown population(s) {unknown}", field="sample_populations")
        if record_every is None:
            record_every = _default_sample_interval(steps, sum(net.population(n).size for n in sampled) * 8)
        record_every = int(record_every)
        if record_every <= 0 or steps // record_every == 0:
            record_every = 0                              # no sample would be taken

        spec, arrays = describe(net)
        cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        with _brian2_settings(codegen, cache_dir):
            return self._run(net, spec, arrays, steps, record_every, [names.index(n) for n in sampled],
                             progress, stop, check_every, max_events, codegen)

    def _run(self, net, spec, arrays, steps, record_every, sampled, progress, stop, check_every,
             max_events, codegen) -> Trace:
        names = [p.name for p in net.populations]
        pops = spec["populations"]
        eligible = [arrays[f"p{i}_eligible"] for i in range(len(pops))]
        gains = GainState(net.gains)
        used = {"values": list(gains.values(0))}
        state = {"taken": 0, "stopped": False}
        gain_slots: list = []

        def start_hook(step):
            values = gains.values(step)
            for k, slot in gain_slots:
                slot[0] = values[k]
            used["values"] = list(values)              # keep g(t) even if a rule rescales a gain

        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=steps, desc=f"brian2 {net.family}", unit="step")
        bar_every = max(1, steps // 200)

        def end_hook(step):
            state["taken"] = step + 1
            if controls.active:
                controls.after_step(step, phases[step % len(phases)])
            if stop is not None and (step + 1) % check_every == 0:
                controls.context.step = step
                if stop(step, controls.context):
                    state["stopped"] = True
                    controls.context.record("stop", reason="stop callback")
                    built.net.stop()
            if bar is not None and (step + 1) % bar_every == 0:
                bar.update(bar_every)

        built = build_network(spec, arrays, start_hook=start_hook, end_hook=end_hook,
                              sample_every=record_every, sampled=sampled, max_events=max_events)
        gain_slots.extend(built.gain_slots)
        phases = [tuple(phase) for phase in net.schedule]
        controls = ControlRuntime(net, {name: built.live[i]["v"] for i, name in enumerate(names)}, gains,
                                  _Emissions(spec, built, names, lambda: state["taken"] - 1))

        def snapshot() -> Trace:
            taken = state["taken"]
            return Trace(
                steps=taken,
                final_state={name: built.live[i]["v"].copy() for i, name in enumerate(names)},
                clamp_excess={name: clamp_excess(built, spec, arrays, i, taken)
                              for i, name in enumerate(names)},
                averages={n: a.mean.copy() for n, a in controls.averages.items()},
                spike_counts={name: spike_counts(built, i, eligible[i]) for i, name in enumerate(names)},
                updates={name: update_count(p["phases"], spec["n_phases"], taken)
                         for name, p in zip(names, pops)},
                gains_final={g.name: float(used["values"][k]) for k, g in enumerate(net.gains)},
                control_log=controls.context.log, backend=self.name, dtype="float64",
                meta={"family": net.family, "neurons": net.neuron_count, "synapses": net.synapse_count,
                      "codegen": codegen})

        controls.context.snapshot = snapshot
        started = time.perf_counter()
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported, not warned
            if steps:
                taken, wall = run_steps(built, steps)
                state["taken"] = taken
            else:
                wall = 0.0
        if bar is not None:
            bar.update(state["taken"] - bar.n)
            bar.close()

        trace = snapshot()
        trace.stopped_early, trace.wall_time = state["stopped"], wall
        trace.meta["setup_s"] = time.perf_counter() - started - wall
        for i, name in enumerate(names):
            if pops[i]["record"]:
                trace.events[name] = spike_events(built, i, max_events)
                trace.events_truncated |= int(trace.spike_counts[name].sum()) > trace.events[name][0].size
        if record_every:
            kept = trace.steps // record_every
            for i in sampled:
                mon = built.state_monitors.get(i)                   # none for an empty population
                states = np.asarray(mon.v[:], dtype=np.float64).T[1:] if mon is not None else \
                    np.zeros((kept, 0))                             # row 0 is the initial state
                if states.shape[0] < kept:                          # the last sample is the final state
                    states = np.vstack([states, built.live[i]["v"][None, :]])
                states = states[:kept]
                trace.samples[names[i]] = (np.arange(1, kept + 1, dtype=np.int64) * record_every - 1,
                                           states.copy())
            trace.record_every = record_every
        return trace

    def emit(self, net: Network, out_dir) -> list[Path]:
        """``run_brian2.py`` + ``network.npz`` + ``network.json``: rebuild and run the
        network with only brian2 and numpy installed."""
        from snn_compile.api import DEFAULT_STEPS
        self.check(net)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        spec, arrays = describe(net, default_steps=DEFAULT_STEPS.get(net.family, 100_000))
        paths = [out / "network.json", out / "network.npz", out / "run_brian2.py"]
        paths[0].write_text(json.dumps(_json_safe(spec), indent=1, allow_nan=True))
        np.savez(paths[1], **arrays)
        paths[2].write_text(script_source())
        return paths


def _json_safe(value):
    """numpy scalars → Python numbers (inf stays a float: json writes Infinity)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
