"""Targets ``loihi`` and ``lava``: the network as a Lava process graph.

``loihi`` runs a quantized network (docs/ir.md §5) with bit-accurate
``fixed_pt`` process models, bit-identical to the fixed-point reference;
``lava`` runs the float fields with ``floating_pt`` models. Both simulate on
the CPU with ``Loihi2SimCfg``; ``emit`` writes a deployment folder whose
``run.py`` rebuilds the graph and runs it (``--hw``: ``Loihi2HwCfg``).

The graph (``compile_graph``): one Lava process per population, holding the
synapses of its incoming projections, connected source → target by ports that
carry emission rings; one IR step is ``substeps`` Lava time steps so that
delay-0 projections read same-step emissions despite Lava's one-step
latency. Details in ``backends/_lava_processes.py`` and docs/backends.md
"Loihi / Lava". Lava itself runs in a worker subprocess
(``backends/_lava_runner.py``) with a timeout and full cleanup.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import scipy.sparse as sp

from snn_compile.errors import CapabilityError, InputError
from snn_compile.ir import Network, RunningAverage, save_network
from snn_compile.runtime import GainState, emission_of_state
from snn_compile.trace import DEFAULT_MAX_EVENTS, Trace, default_record_every

from . import _lava_runner as runner
from .base import FEATURES, Backend, Capabilities, StopCallback

#: IR features the process models execute (filtered by what this version of FEATURES knows).
_SUPPORTED = ("binary_spikes", "graded_spikes", "graded_excess", "always_emit", "decay", "bias_gain",
              "state_clamp", "reset_subtract", "reset_to_value", "max_spikes_per_step", "zero_delay",
              "delays", "multi_phase_schedule", "partial_schedule", "gain_schedules", "formula_gains",
              "control:RunningAverage", "control:AdaptiveRestart", "readout:average", "initial_emission")
#: Products the int64 executor forms must stay below this (docs/ir.md §5.1).
_PRODUCT_LIMIT = 2 ** 61
#: Steps a deployment's run.py runs when the backend never ran the network.
DEFAULT_DEPLOYMENT_STEPS = 1000


# ---------------------------------------------------------------- IR → process graph
def schedule_levels(net: Network) -> tuple[dict, dict, int]:
    """Per population and schedule phase: does it update, and at which sub-step.

    A population's level is 0 without delay-0 inputs, else one more than the
    highest level among its delay-0 sources in that phase; sub-steps per IR step
    = highest level + 1 (a message sent at Lava step τ is read at τ + 1)."""
    phases = len(net.schedule)
    updates = {p.name: [False] * phases for p in net.populations}
    level = {p.name: [0] * phases for p in net.populations}
    for k, phase in enumerate(net.schedule):
        for name in phase:                      # listed order: delay-0 sources come first (validated)
            updates[name][k] = True
            level[name][k] = max([level[proj.source][k] + 1 for proj in net.incoming(name)
                                  if proj.delay == 0], default=0)
    substeps = 1 + max(max(levels) for levels in level.values())
    return updates, level, substeps


def _components(net: Network) -> list[list[int]]:
    index = {p.name: i for i, p in enumerate(net.populations)}
    parent = list(range(len(net.populations)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for proj in net.projections:
        a, b = root(index[proj.source]), root(index[proj.target])
        parent[max(a, b)] = min(a, b)
    groups: dict = {}
    for i in range(len(net.populations)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _fixed_payload(pop, fixed, v: np.ndarray) -> np.ndarray:
    """docs/ir.md §5.5 emission of states v, every neuron above threshold, no cap."""
    from snn_compile.ir.fixed_point import shift_round
    fired = v > fixed.threshold
    if pop.spike == "binary":
        return fired.astype(np.int64)
    value = v - fixed.threshold if pop.payload == "excess" else v
    limit = 2 ** 62 if fixed.payload_bits is None else 2 ** (fixed.payload_bits - 1) - 1
    return np.where(fired, np.clip(shift_round(value, fixed.payload_shift), -limit, limit), 0)


def _check_products(net: Network) -> None:
    """Refuse a quantized network whose int64 products could overflow (as reference_fixed does)."""
    spec = net.fixed_point
    shift = spec.gain_mantissa_bits - 1
    bounds = {}
    for pop, fixed in zip(net.populations, spec.populations):
        if pop.spike == "binary":
            bounds[pop.name] = 1
        else:
            limit = 2 ** 62 if fixed.payload_bits is None else 2 ** (fixed.payload_bits - 1) - 1
            bounds[pop.name] = min(limit, 2 * fixed.state_limit)
        if pop.bias_gain is not None and np.any(fixed.bias_mantissa != 0):
            if int(np.abs(fixed.bias_mantissa).max()) << shift >= _PRODUCT_LIMIT:
                raise CapabilityError(f"population '{pop.name}': bias mantissa × gain mantissa may "
                                      f"overflow int64")
    for proj, fixed in zip(net.projections, spec.projections):
        for ws in fixed.slices:
            M = ws.mantissa
            rows = np.asarray(abs(M).sum(axis=1)).ravel() if sp.issparse(M) else np.abs(M).sum(axis=1)
            bound = int(rows.max()) * bounds[proj.source] if rows.size else 0
            if bound << shift >= _PRODUCT_LIMIT:
                raise CapabilityError(f"projection '{proj.name}': |mantissa| row sum × payload × gain "
                                      f"mantissa may overflow int64 (lower the state or gain bits)")


def compile_graph(net: Network, *, fixed: bool) -> tuple[dict, dict]:
    """The process graph of ``net``: (graph.json structure, graph.npz arrays).

    ``fixed``: integer parameters from ``net.fixed_point`` for the ``fixed_pt``
    models; otherwise the float fields for the ``floating_pt`` models.
    """
    if fixed and net.fixed_point is None:
        raise CapabilityError("fixed-point Lava models need a quantized network "
                              "(snn_compile.passes.quantize.quantize)")
    if fixed:
        _check_products(net)
    gains = GainState(net.gains)
    updates, level, substeps = schedule_levels(net)
    index = {p.name: i for i, p in enumerate(net.populations)}
    depth = {p.name: 1 for p in net.populations}
    for proj in net.projections:               # e(t − d) must survive d more steps
        depth[proj.source] = max(depth[proj.source], proj.delay + 1)
    averaged = {name for rule in net.controls if isinstance(rule, RunningAverage) for name in rule.populations}
    spec = net.fixed_point if fixed else None
    proj_fixed = dict(zip((p.name for p in net.projections), spec.projections)) if fixed else {}

    entries, arrays = [], {}
    for i, pop in enumerate(net.populations):
        incoming = net.incoming(pop.name)
        sources = list(dict.fromkeys(index[p.source] for p in incoming if p.source != pop.name))
        cap = pop.max_spikes_per_step
        entry = {
            "name": pop.name, "size": pop.size, "role": pop.role, "depth": depth[pop.name],
            "updates": updates[pop.name], "level": level[pop.name], "sources": sources,
            "spike": pop.spike, "payload": pop.payload, "reset": pop.reset,
            "max_spikes": int(cap) if cap is not None and cap < pop.size else None,
            "record": bool(pop.record), "averaged": pop.name in averaged,
            "bias_gain": None if pop.bias_gain is None else gains.index(pop.bias_gain),
            "projections": []}
        key = f"p{i}."
        arrays[key + "counted"] = np.isfinite(pop.threshold) | (pop.spike == "binary")
        ring = np.zeros((depth[pop.name], pop.size), dtype=np.int64 if fixed else np.float64)
        if fixed:
            pf = spec.populations[i]
            entry.update(state_bits=pf.state_bits, scale_exponent=pf.scale_exponent,
                         payload_bits=pf.payload_bits, payload_shift=pf.payload_shift,
                         decay_bits=pf.decay_bits, decay_form=pf.decay_form)
            for name in ("v_init", "v_min", "v_max", "threshold", "reset_value", "decay",
                         "bias_mantissa", "bias_exponent"):
                arrays[key + name] = np.asarray(getattr(pf, name), dtype=np.int64)
            if getattr(pop, "emit_initial_state", False):      # e_p(−1), docs/ir.md §2
                ring[-1 % ring.shape[0]] = _fixed_payload(pop, pf, pf.v_init)
        else:
            for name in ("v_init", "decay", "bias", "v_min", "v_max", "threshold", "reset_value"):
                arrays[key + name] = np.asarray(getattr(pop, name), dtype=np.float64)
            if getattr(pop, "emit_initial_state", False):
                ring[-1 % ring.shape[0]] = emission_of_state(pop, pop.v_init)
        arrays[key + "ring_init"] = ring
        for j, proj in enumerate(incoming):
            proj_entry = {"name": proj.name, "delay": proj.delay,
                          "source": None if proj.source == pop.name else sources.index(index[proj.source]),
                          "gain": None if proj.gain is None else gains.index(proj.gain), "slices": 0}
            if fixed:
                slices = proj_fixed[proj.name].slices
                proj_entry["slices"] = len(slices)
                for k, ws in enumerate(slices):
                    arrays[f"{key}w{j}.s{k}"] = ws.mantissa if sp.issparse(ws.mantissa) \
                        else np.asarray(ws.mantissa, dtype=np.int64)
                    arrays[f"{key}w{j}.s{k}.exponent"] = np.asarray(ws.exponent, dtype=np.int64)
            else:
                arrays[f"{key}w{j}"] = proj.weights
            entry["projections"].append(proj_entry)
        entries.append(entry)

    components = _components(net)
    graph = {"format": runner.GRAPH_FORMAT, "version": runner.GRAPH_VERSION,
             "arithmetic": "fixed" if fixed else "float", "substeps": substeps,
             "phases": len(net.schedule), "gains": [g.name for g in net.gains],
             "links": [[components[c][0], components[c + 1][0]] for c in range(len(components) - 1)],
             "populations": entries}
    if fixed:
        graph.update(accumulator_bits=spec.accumulator_bits, accumulator_stage=spec.accumulator_stage,
                     gain_mantissa_bits=spec.gain_mantissa_bits, hardware=spec.hardware)
    return graph, arrays


def write_job(net: Network, folder, *, fixed: bool) -> list[Path]:
    """The files the Lava worker runs from: the process graph and the IR (host side)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    graph, arrays = compile_graph(net, fixed=fixed)
    paths = runner.save_graph(folder, graph, arrays)
    ir_dir = save_network(net, folder / runner.IR_DIR)
    return paths + sorted(ir_dir.iterdir())


# ---------------------------------------------------------------- the targets
class LavaBackend(Backend):
    """Target ``lava``: the process graph with float64 ``floating_pt`` models."""

    name = "lava"
    description = "Lava process graph on the CPU simulator (Loihi2SimCfg, floating_pt models)"
    fixed = False
    OPTIONS = ("check_every", "max_events", "sample_populations", "timeout", "stall_timeout", "hardware",
               "max_chunk", "fail_at_step")

    def __init__(self):
        self._quantized: dict = {}            # id(float net) -> (float net, quantized net)
        self._last_run: Optional[tuple] = None  # (the network run, steps taken)

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("lava") is None or importlib.util.find_spec("lava.magma") is None:
            return False, "lava-nc is not installed (pip install 'snn-compile[lava]')"
        return True, ""

    def capabilities(self) -> Capabilities:
        features = {f for f in _SUPPORTED if f in FEATURES} | ({"fixed_point"} if self.fixed else set())
        return Capabilities(
            features=frozenset(features), dtypes=("int64",) if self.fixed else ("float64",),
            notes="one Lava process per population (its input synapses inside), one IR step = "
                  "'substeps' Lava steps; host-side controls between chunks of steps")

    def check(self, net: Network) -> None:
        missing = self.capabilities().missing(net)
        if missing:
            raise CapabilityError(f"target '{self.name}' cannot run this network: it lacks "
                                  + "; ".join(missing))
        if self.fixed and net.fixed_point is not None:
            _check_products(net)

    def _executed(self, net: Network) -> Network:
        """The network the models run (``loihi`` quantizes a float network for Loihi 2)."""
        return net

    def run(self, net: Network, steps: int, *, record_every: Optional[int] = None,
            progress: bool = False, stop: Optional[StopCallback] = None, check_every: int = 100,
            max_events: int = DEFAULT_MAX_EVENTS, sample_populations=None, timeout: Optional[float] = None,
            stall_timeout: Optional[float] = runner.DEFAULT_STALL_TIMEOUT, hardware: bool = False,
            max_chunk: Optional[int] = None, fail_at_step: Optional[int] = None, **options) -> Trace:
        """Options: ``check_every`` (steps between ``stop`` polls), ``max_events``,
        ``sample_populations``, ``timeout`` (seconds for the whole run; None: no limit),
        ``stall_timeout`` (seconds without progress before the run counts as hung),
        ``hardware`` (True: ``Loihi2HwCfg``, needs lava-loihi), ``max_chunk`` (longest
        run of IR steps between host interventions), ``fail_at_step`` (fault injection:
        a process raises at that step, to exercise the error path)."""
        if options:
            raise InputError(f"unknown option(s) {sorted(options)} for target '{self.name}'; "
                             f"known: {', '.join(self.OPTIONS)}", field="options")
        steps = int(steps)
        if steps < 0:
            raise InputError("must be ≥ 0", field="steps")
        executed = self._executed(net)
        self.check(executed)
        if hardware and importlib.util.find_spec("lava.utils.loihi2_profiler") is None:
            raise CapabilityError(f"target '{self.name}' option hardware=True needs Intel's lava-loihi "
                                  f"(Loihi2HwCfg), which is not installed")
        settings = {"record_every": default_record_every(steps) if record_every is None else int(record_every),
                    "sample_populations": sample_populations, "max_events": int(max_events),
                    "poll_every": max(1, int(check_every)) if stop is not None else None,
                    "hardware": bool(hardware), "max_chunk": max_chunk, "fail_at_step": fail_at_step,
                    "backend_name": self.name}
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=steps, desc=f"{self.name} {net.family}", unit="step")
        try:
            with tempfile.TemporaryDirectory(prefix=f"snn-{self.name}-job-") as job:
                write_job(executed, job, fixed=self.fixed)
                trace = runner.supervise(
                    job, steps, settings, net=executed, stop=stop, timeout=timeout,
                    stall_timeout=stall_timeout, temporary_job=True,
                    progress=None if bar is None else (lambda done: bar.update(done - bar.n)))
        finally:
            if bar is not None:
                bar.close()
        if executed is not net:
            trace.meta["lava"]["quantized_for"] = executed.fixed_point.hardware
        self._last_run = (net, trace.steps)
        return trace

    # ------------------------------------------------------------ deployment folder
    def emit(self, net: Network, out_dir) -> list[Path]:
        """A self-contained deployment folder (see its README.md): graph.json/graph.npz,
        ir/, _lava_processes.py and _lava_runner.py (copies), run.py, resources.txt/.json,
        deployment.json."""
        from snn_compile.hardware import load_hardware
        from snn_compile.passes.mapping import map_network

        executed = self._executed(net)
        self.check(executed)
        out = Path(out_dir)
        written = write_job(executed, out, fixed=self.fixed)
        here = Path(__file__).resolve().parent
        for module in ("_lava_processes.py", "_lava_runner.py"):
            shutil.copyfile(here / module, out / module)
            written.append(out / module)
        (out / "run.py").write_text(RUN_PY.format(target=self.name))
        steps = self._last_run[1] if self._last_run is not None and self._last_run[0] is net \
            else DEFAULT_DEPLOYMENT_STEPS
        graph = json.loads((out / runner.GRAPH_JSON).read_text())
        hw_name = executed.fixed_point.hardware if executed.fixed_point is not None else "loihi2"
        mapping = map_network(executed, load_hardware(hw_name), steps=steps)
        lava_lines = _lava_summary(graph)
        (out / "resources.txt").write_text(mapping.format() + "\n\nLava process graph\n" + lava_lines + "\n")
        (out / "resources.json").write_text(json.dumps(
            {"mapping": mapping.to_dict(), "lava": _lava_facts(graph)}, indent=1, default=_json_default))
        info = {"format": "snn-compile/lava-deployment", "version": 1, "target": self.name,
                "arithmetic": graph["arithmetic"], "steps": int(steps), "substeps": graph["substeps"],
                "processes": len(graph["populations"]), "hardware": hw_name, "family": executed.family,
                "lava_nc": _version("lava-nc")}
        (out / runner.DEPLOYMENT_JSON).write_text(json.dumps(info, indent=1))
        (out / "README.md").write_text(_readme(self.name, info, graph, lava_lines))
        written += [out / name for name in ("run.py", "resources.txt", "resources.json",
                                            runner.DEPLOYMENT_JSON, "README.md")]
        return sorted(written)


class LoihiBackend(LavaBackend):
    """Target ``loihi``: Loihi 2 fixed point, bit-accurate ``fixed_pt`` models (a float
    network is quantized for ``hardware_configs/loihi2.yaml`` first)."""

    name = "loihi"
    description = "Intel Loihi 2 as a Lava process graph: bit-accurate fixed_pt models on Loihi2SimCfg"
    fixed = True

    def _executed(self, net: Network) -> Network:
        if net.fixed_point is not None:
            return net
        cached = self._quantized.get(id(net))
        if cached is None or cached[0] is not net:
            from snn_compile.hardware import load_hardware
            from snn_compile.passes.quantize import quantize
            cached = (net, quantize(net, load_hardware("loihi2"))[0])
            self._quantized[id(net)] = cached
        return cached[1]


def _lava_facts(graph: dict) -> dict:
    pops = graph["populations"]
    return {"arithmetic": graph["arithmetic"], "substeps_per_network_step": graph["substeps"],
            "processes": len(pops), "connections": sum(len(p["sources"]) for p in pops),
            "links": len(graph["links"]),
            "populations": {p["name"]: {"neurons": p["size"], "ring_depth": p["depth"],
                                        "levels": p["level"], "sources": [pops[s]["name"] for s in p["sources"]],
                                        "projections": len(p["projections"])} for p in pops}}


def _lava_summary(graph: dict) -> str:
    facts = _lava_facts(graph)
    lines = [f"  {facts['processes']} PopulationProcess(es), {facts['connections']} port connection(s), "
             f"{graph['substeps']} Lava time step(s) per network step, {graph['arithmetic']} models",
             f"  (the mapping's chip time estimate counts one time step per network step: multiply it "
             f"by {graph['substeps']}; these sub-steps serve the delay-0 projections)"]
    for name, p in facts["populations"].items():
        lines.append(f"  {name:>12}: {p['neurons']} neurons, emission ring depth {p['ring_depth']}, "
                     f"sub-step(s) {p['levels']}, inputs from {', '.join(p['sources']) or 'itself only'}")
    return "\n".join(lines)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


RUN_PY = '''#!/usr/bin/env python3
"""Run this {target} deployment (generated by snn-compile; see README.md).

    python run.py [--steps N] [--hw] [--timeout S] [--out DIR]

Rebuilds the Lava process graph from graph.json/graph.npz and the host program
from ir/, runs it (Loihi2SimCfg, or Loihi2HwCfg with --hw), and writes
result/solution.npz (x, y, z, z_box in the problem's variables) and result/trace.
All numbers are loaded from the files next to this script.
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

if __name__ == "__main__":
    try:
        import _lava_runner
    except ImportError as exc:
        sys.exit(f"run.py needs lava-nc and the snn_compile host library (pip install snn-compile[lava]): {{exc}}")
    sys.exit(_lava_runner.deployment_main(HERE, sys.argv[1:]))
'''


def _readme(target: str, info: dict, graph: dict, lava_lines: str) -> str:
    fixed = graph["arithmetic"] == "fixed"
    return f"""# snn-compile deployment: target `{target}`

A {info['family']} network compiled for {'Intel Loihi 2 (fixed point, quantized for ' + info['hardware'] + ')' if fixed else 'Lava in float64'},
as a Lava process graph.

    python run.py                 # Loihi2SimCfg on the CPU, {info['steps']} network steps
    python run.py --steps 500     # another step budget
    python run.py --hw            # Loihi2HwCfg on a Loihi 2 system (needs Intel's lava-loihi)

`run.py` writes `result/solution.npz` (x, y, z, z_box in the problem's own
variables), `result/solution.json` and `result/trace/` (final states, spike
counts, spike events). It needs `lava-nc` ({info['lava_nc']} here) and the
`snn_compile` package for the host side (gain values, control rules, readout).

## Files

| file | content |
|---|---|
| `graph.json`, `graph.npz` | the process graph: one `PopulationProcess` per population with its {'integer (state LSBs, weight mantissas and exponents)' if fixed else 'float64'} parameters and input synapses, and the port connections |
| `ir/` | the network (host side: gains, control rules, readout, preconditioning map) |
| `_lava_processes.py` | the Lava process and its `{'fixed_pt' if fixed else 'floating_pt'}` process model (a copy of the version that compiled this folder) |
| `_lava_runner.py` | the host program: runs the graph in a worker process, chunk by chunk, with the control rules between chunks |
| `resources.txt`, `resources.json` | cores, memory, time and energy estimate on the chip config, and the Lava graph |
| `deployment.json` | target, step budget, sub-steps, versions |

## Timing

One network step is {graph['substeps']} Lava time step(s). A Lava message sent at time
step τ is read at τ + 1, so a population updates at the sub-step after its
latest same-step (delay-0) source; each process sends its last emissions
(a ring of `depth` rows) every Lava step and targets read the row of the
delay they need.

```text
{lava_lines}
```

## Hardware

The process models are Python (`PyLoihiProcessModel`) models: with `--hw`,
`Loihi2HwCfg` runs them on the host CPU of the Loihi system next to any
neuro-core models, since this folder contains no neuro-core (microcode) models.
On a machine without lava-loihi, `--hw` says so and exits with status 3.
"""
