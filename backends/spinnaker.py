"""SpiNNaker target: a binary-spike (``lif`` family) network as a PyNN project
for sPyNNaker, executed under NEST for verification.

``emit(net, folder)`` writes a self-contained folder:

* ``network.npz`` + ``network.json`` — cell parameters, connection lists,
  host filters, readout and preconditioning maps (no numbers in code);
* ``run.py`` — a PyNN script: ``python run.py --sim nest`` (``pyNN.nest``) or
  ``--sim spinnaker`` (``pyNN.spiNNaker``); it records spikes, rebuilds the
  IR's filter populations on the host from the spike times, applies the
  readout and the preconditioning map exactly as ``snn_compile.decode`` does
  and saves spikes + solution;
* ``resources.json`` / ``resources.txt`` — ``map_network`` on ``spinnaker1``
  for the part that runs on the chip.

``run(net, steps)`` emits into a temporary folder and runs the script under
NEST in a fresh process (NEST and PyNN keep global state), then turns the
recorded spikes into a ``Trace``. ``map_on_virtual_board(net)`` runs the same
script under sPyNNaker with ``virtual_board = True`` in a temporary HOME: the
full mapping (partitioning, placement, routing, data generation) runs, no
board is needed and no data is recorded.

Mapping of one IR step (docs/ir.md §2) onto a PyNN cell (docs/backends.md):

* one step = one timestep ``ts`` (1 ms); δ = exp(−ts/τ_m) → τ_m = −ts/ln δ;
* each spiking neuron is normalised (theory §1C) to V' = (V − base)/R with
  R its subtractive reset (base = T − R) or, for a reset to value r, R = T − r
  (base = r): threshold 1, reset 0; then V_mV = ``mv_per_unit``·V', so
  v_rest = v_reset = 0 mV, v_thresh = ``mv_per_unit``; the leak toward the
  IR's 0 becomes a bias b' = (b − (1 − δ)·base)/R, carried by ``i_offset``;
  incoming weights are divided by the target's R;
* ``cm = (1 − δ)·τ_m/ts`` so that one step of ``i_offset`` I adds ts·I mV in
  NEST's exact integration *and* in sPyNNaker's closed form, and a delta
  weight w adds w mV in both simulators (NEST's iaf_psc_delta jumps by w;
  sPyNNaker's delta input is the current w/ts for one step);
* PyNN's minimum delay is one timestep: an IR delay d ≥ 1 is d·ts. The IR's
  filter populations (threshold +∞, fed by delay-0 projections) never spike:
  they are computed on the host from the recorded spike times;
* weights are quantized as sPyNNaker stores static synapses: 16-bit
  magnitudes with a per-synapse-type left shift s, w_q = rint(|w|·2^(15−s))/2^(15−s),
  s chosen from the largest possible summed input of that type (which never
  overflows; the script passes it to sPyNNaker as ``max_expected_summed_weight``
  so the chip uses the same s); cell parameters are rounded to s16.15.

What PyNN cells cannot express is approximated and reported (json, Trace.meta):
the subtractive reset becomes a hard reset to v_reset, and the
one-spike-per-step rule is dropped (benchmarks/bench_spinnaker_reset.py
measures both).
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import scipy.sparse as sp

from snn_compile.errors import BackendUnavailable, CapabilityError, InputError, SnnCompileError
from snn_compile.ir import Network, Population, Projection
from snn_compile.trace import Trace, default_record_every

from .base import Backend, Capabilities, StopCallback

#: Standard cells the emitter can target (measured in docs/backends.md: delta wins).
CELLS = ("IF_curr_delta", "IF_curr_exp")
DEFAULT_CELL = "IF_curr_delta"
#: sPyNNaker's default timestep; one IR step.
TIMESTEP_MS = 1.0
#: Millivolts per normalised unit (threshold − reset of every cell), unless a
#: network needs less to stay inside s16.15 (``auto_mv_per_unit``).
MV_PER_UNIT = 10.0
#: IF_curr_exp only: synaptic time constant as a fraction of the timestep, short
#: so that almost all of a PSC's charge lands in one step.
TAU_SYN_FRACTION = 0.1
#: s16.15 (sPyNNaker's REAL / S1615): resolution and largest magnitude.
S1615_LSB = 2.0 ** -15
S1615_MAX = 2.0 ** 16
#: Magnitude bits of a static synapse's weight field.
WEIGHT_BITS = 16
#: Delay slots on a core without delay-extension cores (hardware_configs/spinnaker1.yaml).
MAX_DELAY_STEPS = 32
#: The project format written by ``emit`` and read by run.py.
PROJECT_FORMAT = "snn-compile/pynn-project"
PROJECT_VERSION = 1

#: The temporary sPyNNaker configuration for ``map_on_virtual_board`` (sPyNNaker
#: 1!7.4.1 keys: spinn_machine.cfg [Machine] virtual_board / version — 5 is a
#: 48-chip SpiNN-5 board; spinn_utilities.cfg [Reports] default_report_file_path;
#: spinnaker.cfg [Mode] mode = Production writes no optional reports).
VIRTUAL_BOARD_CFG = """\
[Machine]
virtual_board = True
version = 5

[Reports]
default_report_file_path = {reports}

[Mode]
mode = Production
"""


class SimulatorError(SnnCompileError):
    """The emitted script failed under its simulator (message: the command's last output)."""


# ============================================================== the emitted script
RUN_SCRIPT = r'''#!/usr/bin/env python
"""PyNN script emitted by snn-compile (target 'spinnaker').

    python run.py --sim nest          # pyNN.nest (verification on a PC)
    python run.py --sim spinnaker     # pyNN.spiNNaker (the machine your .spynnaker.cfg names)

Options: --steps N (default: the network's step hint), --sample-every K (record
the membrane voltage every K steps; 0: not at all), --out FILE.npz (default
results_<sim>.npz next to this script; a FILE.json summary is written too).

Reads network.json / network.npz next to this file. One network step is one
timestep. After the run, the network's filter populations (exponential filters
of the spike trains) are rebuilt on the host from the recorded spike times and
the readout and preconditioning map give the QP solution x, y, z, z_box in the
user's variables, as snn_compile.decode does. Needs numpy and PyNN only.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FORMAT = "snn-compile/pynn-project"

#: step of a recorded spike = rint(time / timestep) - offset: NEST stamps a spike
#: with the end of the step that produced it, sPyNNaker with its timer tick.
SPIKE_TIME_OFFSET = {"nest": 1, "spinnaker": 0}
#: same for voltage samples (NEST's multimeter samples at the end of a step).
SAMPLE_TIME_OFFSET = {"nest": 1, "spinnaker": 0}
CELL_PARAMETERS = ("tau_m", "cm", "v_rest", "v_reset", "v_thresh", "i_offset")


def load_project(folder=HERE):
    folder = Path(folder)
    spec = json.loads((folder / "network.json").read_text())
    if spec.get("format") != FORMAT:
        raise SystemExit(f"{folder / 'network.json'}: not a {FORMAT} file")
    with np.load(folder / "network.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return spec, arrays


# ---------------------------------------------------------------- the PyNN run
def run_pynn(sim_name, spec, arrays, steps, sample_every=0):
    """Build the populations and projections, run ``steps`` timesteps; return
    spikes {pop: (steps, neurons)}, voltage samples {pop: (steps, V in IR units)}
    and, for sPyNNaker, a summary of its mapping."""
    ts = float(spec["timestep_ms"])
    if sim_name == "nest":
        import pyNN.nest as sim
        max_delay = max([ts] + [p["max_delay_steps"] * ts for p in spec["projections"]])
        # on-grid iaf_psc_delta: spikes and inputs on the timestep grid, as on SpiNNaker
        sim.setup(timestep=ts, min_delay=ts, max_delay=max_delay, threads=1, verbosity="error",
                  spike_precision="on_grid")
    elif sim_name == "spinnaker":
        import pyNN.spiNNaker as sim
        sim.setup(timestep=ts)
    else:
        raise SystemExit(f"unknown simulator {sim_name!r} (nest, spinnaker)")
    cell_class = getattr(sim, spec["cell"])
    if sim_name == "nest" and not hasattr(cell_class, "variable_map"):
        # PyNN 0.13's pyNN.nest IF_curr_delta lacks the name of NEST's voltage
        cell_class.variable_map, cell_class.scale_factors = {"v": "V_m"}, {"v": 1}
    populations = {}
    for pop in spec["populations"]:
        key = pop["key"]
        params = {name: arrays[f"{key}.{name}"] for name in CELL_PARAMETERS}
        params["tau_refrac"] = 0.0
        if spec["cell"] == "IF_curr_exp":
            params["tau_syn_E"] = params["tau_syn_I"] = float(spec["tau_syn_ms"])
        extra = {}
        if sim_name == "spinnaker":
            # the ring-buffer shift the weights were quantized for (see network.json)
            extra["additional_parameters"] = {
                "max_expected_summed_weight": pop["max_expected_summed_weight"]}
        cells = sim.Population(pop["size"], cell_class(**params), label=pop["name"],
                               initial_values={"v": arrays[f"{key}.v_init"]}, **extra)
        cells.record("spikes")
        if sample_every:
            cells.record("v", sampling_interval=sample_every * ts)
        populations[pop["name"]] = cells
    for proj in spec["projections"]:
        for receptor in ("excitatory", "inhibitory"):
            key = f"{proj['key']}.{receptor}"
            if key not in arrays or not len(arrays[key]):
                continue
            sim.Projection(populations[proj["source"]], populations[proj["target"]],
                           sim.FromListConnector(arrays[key], column_names=["weight", "delay"]),
                           synapse_type=sim.StaticSynapse(), receptor_type=receptor,
                           label=f"{proj['name']}.{receptor}")
    started = time.perf_counter()
    sim.run(steps * ts)
    run_seconds = time.perf_counter() - started

    mapping = spinnaker_mapping(populations) if sim_name == "spinnaker" else None
    recorded = not (mapping and mapping["virtual_board"])
    spikes, voltages = {}, {}
    for pop in spec["populations"]:
        name, key = pop["name"], pop["key"]
        if not recorded:
            spikes[name] = (np.empty(0, np.int64), np.empty(0, np.int64))
            continue
        segment = populations[name].get_data("spikes").segments[0]
        step_list, neuron_list = [], []
        for train in segment.spiketrains:
            times = np.asarray(train.rescale("ms").magnitude, dtype=np.float64)
            step_list.append(np.rint(times / ts).astype(np.int64) - SPIKE_TIME_OFFSET[sim_name])
            neuron_list.append(np.full(times.size, int(train.annotations["source_index"]), np.int64))
        if step_list:
            step_arr, neuron_arr = np.concatenate(step_list), np.concatenate(neuron_list)
        else:
            step_arr, neuron_arr = np.empty(0, np.int64), np.empty(0, np.int64)
        keep = (step_arr >= 0) & (step_arr < steps)
        order = np.lexsort((neuron_arr[keep], step_arr[keep]))
        spikes[name] = (step_arr[keep][order], neuron_arr[keep][order])
        if sample_every:
            signal = populations[name].get_data("v").segments[0].filter(name="v")[0]
            sample_steps = (np.rint(np.asarray(signal.times.rescale("ms").magnitude) / ts)
                            .astype(np.int64) - SAMPLE_TIME_OFFSET[sim_name])
            order = np.argsort(np.asarray(signal.array_annotations["channel_index"]))
            values_mv = np.asarray(signal.magnitude, dtype=np.float64)[:, order]
            wanted = (sample_steps >= 0) & (sample_steps < steps) & ((sample_steps + 1) % sample_every == 0)
            # V (IR units) = base + unit * V_mV / mv_per_unit
            values = arrays[f"{key}.base"] + arrays[f"{key}.unit"] * values_mv[wanted] / spec["mv_per_unit"]
            voltages[name] = (sample_steps[wanted], values)
    sim.end()
    return spikes, voltages, mapping, run_seconds


def spinnaker_mapping(populations):
    """Cores and chips sPyNNaker placed the network on, and the ring-buffer shifts it
    chose per population (read before sim.end())."""
    from spinn_utilities.config_holder import get_config_bool
    from spynnaker.pyNN.data import SpynnakerDataView
    cores_by_vertex = {}
    chips, app_chips = set(), set()
    for placement in SpynnakerDataView.iterate_placemements():
        vertex = placement.vertex
        label = vertex.app_vertex.label if vertex.app_vertex is not None else vertex.label
        label = str(label or type(vertex).__name__)
        cores_by_vertex[label] = cores_by_vertex.get(label, 0) + 1
        chips.add((placement.x, placement.y))
        if label in populations:
            app_chips.add((placement.x, placement.y))
    return {"virtual_board": bool(get_config_bool("Machine", "virtual_board")),
            "cores": int(sum(cores_by_vertex.values())), "chips": len(chips),
            "application_cores": int(sum(n for k, n in cores_by_vertex.items() if k in populations)),
            "application_chips": len(app_chips),
            "machine_chips": int(SpynnakerDataView.get_machine().n_chips),
            "cores_by_vertex": cores_by_vertex,
            "ring_buffer_shifts": {name: [int(v) for v in pop._vertex.get_ring_buffer_shifts()]
                                   for name, pop in populations.items()}}


# ---------------------------------------------------------------- host side
def spikes_by_step(spikes):
    """{pop: {step: sorted neuron indices}}"""
    out = {}
    for name, (step_arr, neuron_arr) in spikes.items():
        order = np.lexsort((neuron_arr, step_arr))
        step_arr, neuron_arr = step_arr[order], neuron_arr[order]
        first, starts = np.unique(step_arr, return_index=True)
        bounds = list(starts[1:]) + [step_arr.size]
        out[name] = {int(t): neuron_arr[s:e] for t, s, e in zip(first, starts, bounds)}
    return out


def filter_states(spec, arrays, spikes, steps, sample_every=0, checkpoints=()):
    """Run the host filters  r(t) = decay*r(t-1) + bias + sum_j W_j s_j(t - d_j)  over
    ``steps`` steps (docs/ir.md §2 for a population that never fires).
    Returns (final {name: r}, samples {name: (steps, states)} every ``sample_every``
    steps, {checkpoint step: {name: r}})."""
    fired = spikes_by_step(spikes)
    filters = []
    for flt in spec["filters"]:
        key = flt["key"]
        inputs = []
        for j, inp in enumerate(flt["inputs"]):
            rows, cols, vals = (arrays[f"{key}.in{j}.{part}"] for part in ("rows", "cols", "vals"))
            order = np.argsort(cols, kind="stable")
            rows, cols, vals = rows[order], cols[order], vals[order]
            ptr = np.searchsorted(cols, np.arange(inp["source_size"] + 1))
            inputs.append((fired.get(inp["source"], {}), int(inp["delay"]), rows, vals, ptr))
        filters.append((flt["name"], arrays[f"{key}.decay"], arrays[f"{key}.bias"],
                        arrays[f"{key}.v_init"].astype(np.float64).copy(), inputs))
    wanted = set(int(t) for t in checkpoints)
    at = {}
    n_samples = steps // sample_every if sample_every else 0
    sample_steps = np.arange(1, n_samples + 1, dtype=np.int64) * sample_every - 1 if n_samples else None
    samples = {name: np.zeros((n_samples, r.size)) for name, _, _, r, _ in filters}
    for t in range(steps):
        for name, decay, bias, r, inputs in filters:
            current = bias.astype(np.float64).copy()
            for by_step, delay, rows, vals, ptr in inputs:
                neurons = by_step.get(t - delay)
                if neurons is None:
                    continue
                for k in neurons:
                    current[rows[ptr[k]:ptr[k + 1]]] += vals[ptr[k]:ptr[k + 1]]
            r *= decay
            r += current
        if n_samples and (t + 1) % sample_every == 0:
            for name, _, _, r, _ in filters:
                samples[name][(t + 1) // sample_every - 1] = r
        if t in wanted:
            at[t] = {name: r.copy() for name, _, _, r, _ in filters}
    final = {name: r for name, _, _, r, _ in filters}
    return final, ({name: (sample_steps, s) for name, s in samples.items()} if n_samples else {}), at


def _matvec(arrays, key, shape, vector):
    rows, cols, vals = (arrays[f"{key}.{part}"] for part in ("rows", "cols", "vals"))
    return np.bincount(rows, weights=vals * vector[cols], minlength=shape[0]).astype(np.float64)


def decode(spec, arrays, final_state, spike_counts, updates):
    """The readout (docs/ir.md §3) and the preconditioning map back to the user's
    QP, as snn_compile.decode.readout / unscale compute them."""
    readout = spec["readout"]
    out = {target: np.zeros(size) for target, size in readout["sizes"].items()}
    for term in readout["terms"]:
        name = term["population"]
        if term["quantity"] == "state":
            q = np.asarray(final_state[name], dtype=np.float64)
        else:  # spike_rate
            n = updates.get(name, 0)
            q = spike_counts[name].astype(np.float64) / n if n else np.zeros(len(spike_counts[name]))
        value = q if term["matrix"] is None else _matvec(arrays, term["matrix"], term["shape"], q)
        value = term["scale"] * value
        out[term["target"]] = out[term["target"]] + value if term["target"] in out else value
    for target, key in readout["offsets"].items():
        offset = arrays[key]
        out[target] = out.get(target, np.zeros_like(offset)) + offset
    scaling = readout["scaling"]
    if scaling is None:
        return out
    get = lambda name: arrays[scaling[name]] if scaling.get(name) else None  # noqa: E731
    d, e_ineq, e_eq = get("d"), get("e_ineq"), get("e_eq")
    c = 1.0 if scaling.get("cost") is None else float(scaling["cost"])
    ones = lambda v, factor: np.ones_like(v) if factor is None else factor  # noqa: E731
    result = {}
    for target, v in out.items():
        if target == "x":
            result[target] = ones(v, d) * v
        elif target == "y":
            result[target] = ones(v, e_eq) * v / c
        elif target == "z":
            result[target] = ones(v, e_ineq) * v / c
        elif target == "z_box":
            result[target] = v / (ones(v, d) * c)
        else:
            result[target] = v.copy()
    return result


def spike_counts_of(spec, spikes):
    counts = {}
    for pop in spec["populations"]:
        counts[pop["name"]] = np.bincount(spikes[pop["name"]][1], minlength=pop["size"]).astype(np.int64)
    for flt in spec["filters"]:
        counts[flt["name"]] = np.zeros(flt["size"], np.int64)   # filters never fire
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", required=True, choices=("nest", "spinnaker"))
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--sample-every", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    spec, arrays = load_project()
    steps = spec["steps_hint"] if args.steps is None else args.steps
    if steps < 1 or args.sample_every < 0:
        raise SystemExit("--steps must be >= 1 and --sample-every >= 0")
    out = Path(args.out) if args.out else HERE / f"results_{args.sim}.npz"
    started = time.perf_counter()
    spikes, voltages, mapping, run_seconds = run_pynn(args.sim, spec, arrays, steps, args.sample_every)
    final, _, _ = filter_states(spec, arrays, spikes, steps)
    counts = spike_counts_of(spec, spikes)
    updates = {name: steps for name in counts}
    solution = decode(spec, arrays, final, counts, updates)
    saved = {}
    for name, (step_arr, neuron_arr) in spikes.items():
        saved[f"spikes.{name}.steps"], saved[f"spikes.{name}.neurons"] = step_arr, neuron_arr
    for name, (step_arr, values) in voltages.items():
        saved[f"v.{name}.steps"], saved[f"v.{name}.values"] = step_arr, values
    for name, r in final.items():
        saved[f"filter.{name}"] = r
    for target, value in solution.items():
        saved[f"solution.{target}"] = value
    np.savez(out, **saved)
    summary = {"simulator": args.sim, "steps": steps, "cell": spec["cell"],
               "spikes": {name: int(c.sum()) for name, c in counts.items()},
               "run_seconds": run_seconds, "total_seconds": time.perf_counter() - started,
               "spinnaker": mapping, "solution": {k: v.tolist() for k, v in solution.items()}}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print(f"{args.sim}: {steps} steps, {sum(summary['spikes'].values())} spikes; "
          f"x = {np.array2string(solution.get('x', np.zeros(0)), precision=5)}; wrote {out}")


if __name__ == "__main__":
    main()
'''


def script_module() -> types.ModuleType:
    """``RUN_SCRIPT`` as an importable module (its host-side functions are the ones
    ``run`` uses, so the script and the backend cannot drift apart)."""
    global _SCRIPT_MODULE
    if _SCRIPT_MODULE is None:
        module = types.ModuleType("snn_compile_pynn_run")
        module.__file__ = "<snn-compile run.py>"
        exec(compile(RUN_SCRIPT, module.__file__, "exec"), module.__dict__)
        _SCRIPT_MODULE = module
    return _SCRIPT_MODULE


_SCRIPT_MODULE: Optional[types.ModuleType] = None


# ============================================================== what can be mapped
@dataclass
class _Plan:
    """The network split into what runs as PyNN cells and what runs on the host."""

    spiking: list                 # Population: binary spikes, finite thresholds
    filters: list                 # Population: never fire (threshold +∞); host-side
    chip_projections: list        # spiking → spiking, delay ≥ 1
    filter_inputs: dict           # filter name → [Projection from a spiking population]
    approximations: list = field(default_factory=list)


def _is_filter(pop: Population) -> bool:
    return bool(np.all(np.isposinf(pop.threshold)))


def analyse(net: Network) -> _Plan:
    """Split ``net`` for PyNN or raise ``CapabilityError`` naming everything it cannot express."""
    problems, approximations = [], []
    spiking, filters = [], []
    if net.fixed_point is not None:
        approximations.append("the network's own fixed-point spec is not used: the float "
                              "parameters are re-quantized the way sPyNNaker stores them")
    for pop in net.populations:
        where = f"population '{pop.name}'"
        if np.any(np.isfinite(pop.v_min)) or np.any(np.isfinite(pop.v_max)):
            problems.append(f"state clamps v_min / v_max ({where}; standard cells have none)")
        if pop.bias_gain is not None:
            problems.append(f"biases multiplied by a gain ({where})")
        if _is_filter(pop):
            filters.append(pop)
            continue
        if pop.spike != "binary" or np.any(~np.isfinite(pop.threshold)):
            kind = "graded spikes" if pop.spike == "graded" else "neurons that emit every update"
            problems.append(f"{kind} ({where}): SpiNNaker's standard cells send binary spikes; "
                            f"compile with family 'lif' (binary spikes, threshold and reset)")
            continue
        spiking.append(pop)
        if np.any(pop.decay <= 0.0) or np.any(pop.decay >= 1.0):
            problems.append(f"decay outside (0, 1) ({where}): a PyNN cell's leak is "
                            f"exp(−dt/τ_m) with 0 < τ_m < ∞")
        if pop.reset == "none":
            problems.append(f"no reset ({where}): PyNN cells always reset after a spike")
        elif pop.reset == "subtract":
            if np.any(pop.reset_value <= 0):
                problems.append(f"a subtractive reset ≤ 0 ({where})")
            approximations.append(
                f"{where}: the subtractive reset V ← V − R is approximated by PyNN's hard reset "
                f"V ← v_reset after the normalisation V' = (V − T + R)/R (theory §1C): the "
                f"overshoot above threshold is lost at every spike")
        elif np.any(pop.reset_value >= pop.threshold):
            problems.append(f"a reset value ≥ threshold ({where})")
        if pop.max_spikes_per_step is not None and pop.max_spikes_per_step < pop.size:
            approximations.append(
                f"{where}: the rule max_spikes_per_step = {pop.max_spikes_per_step} is dropped: "
                f"PyNN cells fire independently, several in one step")
    spiking_names = {p.name for p in spiking}
    filter_names = {p.name for p in filters}
    chip, filter_inputs = [], {p.name: [] for p in filters}
    for proj in net.projections:
        where = f"projection '{proj.name or proj.source + '→' + proj.target}'"
        if proj.gain is not None:
            problems.append(f"gains ({where})")
        if proj.source in filter_names:
            continue          # a population that never fires emits exactly 0
        if proj.source not in spiking_names:
            continue          # its source is already reported above
        if proj.target in filter_names:
            filter_inputs[proj.target].append(proj)
        elif proj.target in spiking_names:
            if proj.delay == 0:
                problems.append(f"delay-0 projections between spiking populations ({where}; "
                                f"PyNN's minimum delay is one timestep)")
            elif proj.delay > MAX_DELAY_STEPS:
                problems.append(f"delays above {MAX_DELAY_STEPS} steps ({where})")
            chip.append(proj)
    if len(net.schedule) != 1 or set(net.schedule[0]) != {p.name for p in net.populations}:
        problems.append("a schedule other than one step in which every population updates")
    if net.controls:
        problems.append(f"control rules ({', '.join(type(c).__name__ for c in net.controls)})")
    for gain in net.gains:
        if gain.steps or gain.formula is not None:
            problems.append(f"gain schedules / formula gains (gain '{gain.name}')")
    for term in net.readout.terms:
        where = f"readout term for '{term.target}'"
        if term.divide_by_gain is not None:
            problems.append(f"readout divided by a gain ({where})")
        if term.population in filter_names and term.quantity == "state":
            continue
        if term.population in spiking_names and term.quantity == "spike_rate":
            continue
        problems.append(f"readout of the {term.quantity} of population '{term.population}' "
                        f"({where}; only host filters' states and spike rates are recorded)")
    if not spiking:
        problems.append("no spiking population")
    if problems:
        raise CapabilityError("target 'spinnaker' cannot run this network: it lacks "
                              + "; ".join(dict.fromkeys(problems)))
    return _Plan(spiking, filters, chip, filter_inputs, approximations)


# ============================================================== translation
def _s1615(values, enabled: bool) -> np.ndarray:
    """Round to the s16.15 grid the way sPyNNaker's data spec encodes a REAL."""
    values = np.asarray(values, dtype=np.float64)
    return np.round(values / S1615_LSB) * S1615_LSB if enabled else values.copy()


def ring_buffer_shift(max_summed_weight: float) -> int:
    """sPyNNaker's left shift for one synapse type (PopulationVertex.get_ring_buffer_shifts):
    the smallest s ≥ 0 with max_summed_weight < 2^s."""
    if max_summed_weight <= 0:
        return 0
    s = int(math.ceil(max(0.0, math.log2(max_summed_weight))))
    return s + 1 if 2.0 ** s <= max_summed_weight else s


@dataclass
class _CellPopulation:
    name: str
    size: int
    record: bool
    params: dict            # PyNN parameters (mV, ms, nF, nA), as the simulators receive them
    v_init: np.ndarray      # mV
    base: np.ndarray        # V_IR = base + unit · V_mV / mv_per_unit
    unit: np.ndarray
    decay: np.ndarray       # δ = exp(−ts/τ_m) as NEST computes it
    step_bias_mv: np.ndarray  # i_offset's increment per step in NEST's exact integration
    max_summed: list = field(default_factory=lambda: [0.0, 0.0])   # per receptor, cell units


@dataclass
class PyNNProject:
    """Everything ``emit`` writes, in memory."""

    spec: dict
    arrays: dict
    cells: dict             # name → _CellPopulation
    weights_mv: dict        # chip projection name → (target × source) mV weights used
    quantization: dict
    plan: _Plan


def _exp_psc_gain(tau_m, tau_syn, cm, ts):
    """mV added to V during the step after an iaf_psc_exp input of 1 nA arrives (NEST's
    exact propagator; the remaining e^(−ts/τ_syn) of the charge follows later)."""
    return (tau_syn * tau_m / (tau_m - tau_syn)) * (np.exp(-ts / tau_m) - np.exp(-ts / tau_syn)) / cm


def _normalisation(pop: Population) -> tuple[np.ndarray, np.ndarray]:
    """(base, R) of theory §1C's change V' = (V − base)/R: threshold → 1, reset → 0."""
    if pop.reset == "subtract":
        return pop.threshold - pop.reset_value, pop.reset_value.copy()
    return pop.reset_value.copy(), pop.threshold - pop.reset_value


def auto_mv_per_unit(net: Network, plan: Optional[_Plan] = None) -> float:
    """``MV_PER_UNIT``, or less where a cell's voltage would leave half of s16.15's range:
    the initial voltage, the bias equilibrium b'/(1 − δ) and the largest summed input
    Σ|w'|/(1 − δ) (sPyNNaker's closed form holds α = I·R + V_rest) in normalised units."""
    plan = plan or analyse(net)
    peak = 1.0
    for pop in plan.spiking:
        base, R = _normalisation(pop)
        leak = 1.0 - pop.decay
        bias_units = (pop.bias - leak * base) / R
        summed = np.zeros(pop.size)
        for proj in plan.chip_projections:
            if proj.target == pop.name:
                W = abs(sp.csr_matrix(proj.weights, dtype=np.float64))
                summed += np.asarray(W.sum(axis=1)).reshape(-1)
        summed /= R
        peak = max(peak, float(np.max(np.abs((pop.v_init - base) / R), initial=0.0)),
                   float(np.max(np.abs(bias_units) / leak, initial=0.0)),
                   float(np.max(summed / leak, initial=0.0)))
    return min(MV_PER_UNIT, 0.5 * S1615_MAX / peak)


def translate(net: Network, *, cell: str = DEFAULT_CELL, quantize: bool = True,
              mv_per_unit: Optional[float] = None, v_reset_units: float = 0.0,
              timestep_ms: float = TIMESTEP_MS) -> PyNNProject:
    """The PyNN project of ``net`` (see the module docstring for the mapping).
    ``mv_per_unit`` None: ``auto_mv_per_unit``."""
    if cell not in CELLS:
        raise InputError(f"unknown cell {cell!r}; known: {', '.join(CELLS)}", field="cell")
    plan = analyse(net)
    if mv_per_unit is None:
        mv_per_unit = auto_mv_per_unit(net, plan)
    for name, value in (("mv_per_unit", mv_per_unit), ("timestep_ms", timestep_ms)):
        if not (np.isfinite(value) and value > 0):
            raise InputError("must be a positive number", field=name)
    if not (np.isfinite(v_reset_units) and -1.0 < v_reset_units < 1.0):
        raise InputError("must lie strictly between −1 and 1 (threshold)", field="v_reset_units")
    ts, span = float(timestep_ms), float(mv_per_unit)
    tau_syn = TAU_SYN_FRACTION * ts
    arrays: dict[str, np.ndarray] = {}
    cells: dict[str, _CellPopulation] = {}
    warn: list[str] = []

    for i, pop in enumerate(plan.spiking):
        base, R = _normalisation(pop)
        decay = pop.decay
        bias_units = (pop.bias - (1.0 - decay) * base) / R          # the leak toward 0 as a bias
        tau_m = _s1615(-ts / np.log(decay), quantize)
        decay_q = np.exp(-ts / tau_m)
        cm = _s1615((1.0 - decay_q) * tau_m / ts, quantize)
        i_offset = _s1615(span * bias_units * cm / ((1.0 - decay_q) * tau_m), quantize)
        params = {"tau_m": tau_m, "cm": cm, "v_rest": np.zeros(pop.size),
                  "v_reset": _s1615(np.full(pop.size, span * v_reset_units), quantize),
                  "v_thresh": _s1615(np.full(pop.size, span), quantize), "i_offset": i_offset}
        v_init = _s1615(span * (pop.v_init - base) / R, quantize)
        cells[pop.name] = _CellPopulation(
            pop.name, pop.size, pop.record, params, v_init, base, R, decay_q,
            (1.0 - decay_q) * tau_m / cm * i_offset)
        key = f"pop{i}"
        for name, value in params.items():
            arrays[f"{key}.{name}"] = value
        arrays[f"{key}.v_init"], arrays[f"{key}.base"], arrays[f"{key}.unit"] = v_init, base, R

    # ---- weights in the cell's units, then sPyNNaker's 16-bit quantization
    raw: dict[str, sp.coo_matrix] = {}
    for proj in plan.chip_projections:
        target = cells[proj.target]
        W = sp.coo_matrix(proj.weights, dtype=np.float64)
        W.eliminate_zeros()
        w_mv = span * W.data / target.unit[W.row]
        if cell == "IF_curr_exp":
            p = target.params
            gain = _exp_psc_gain(p["tau_m"], tau_syn, p["cm"], ts)
            w_cell = w_mv / gain[W.row]
        else:
            w_cell = w_mv
        raw[proj.name] = sp.coo_matrix((w_cell, (W.row, W.col)), shape=W.shape)
    quantization: dict[str, dict] = {}
    for name, target in cells.items():
        incoming = [raw[p.name] for p in plan.chip_projections if p.target == name]
        report = {}
        for r, receptor in enumerate(("excitatory", "inhibitory")):
            sums = np.zeros(target.size)
            for W in incoming:
                chosen = W.data > 0 if r == 0 else W.data < 0
                np.add.at(sums, W.row[chosen], np.abs(W.data[chosen]))
            target.max_summed[r] = float(sums.max()) if sums.size else 0.0
            shift = ring_buffer_shift(target.max_summed[r])
            report[receptor] = {"max_summed_weight": target.max_summed[r], "shift": shift,
                                "lsb": 2.0 ** (shift - (WEIGHT_BITS - 1)),
                                "max_abs_error": 0.0, "max_rel_error": 0.0, "zeroed": 0}
        quantization[name] = report
    weights_mv: dict[str, sp.csr_matrix] = {}
    for j, proj in enumerate(plan.chip_projections):
        W = raw[proj.name]
        target = cells[proj.target]
        report = quantization[proj.target]
        w = W.data.copy()
        if quantize:
            for receptor, chosen in (("excitatory", w > 0), ("inhibitory", w < 0)):
                rep = report[receptor]
                scale = 2.0 ** (WEIGHT_BITS - 1 - rep["shift"])
                q = np.sign(w[chosen]) * np.rint(np.abs(w[chosen]) * scale) / scale
                err = np.abs(q - w[chosen])
                if err.size:
                    rep["max_abs_error"] = max(rep["max_abs_error"], float(err.max()))
                    rep["max_rel_error"] = max(rep["max_rel_error"],
                                               float(err.max() / np.abs(w[chosen]).max()))
                    rep["zeroed"] += int(np.sum(q == 0))
                w[chosen] = q
        delays_ms = np.full(w.size, proj.delay * ts)
        key = f"proj{j}"
        for receptor, chosen in (("excitatory", w > 0), ("inhibitory", w < 0)):
            arrays[f"{key}.{receptor}"] = np.column_stack(
                [W.col[chosen], W.row[chosen], w[chosen], delays_ms[chosen]]).astype(np.float64)
        if cell == "IF_curr_exp":
            p = target.params
            w_used_mv = w * _exp_psc_gain(p["tau_m"], tau_syn, p["cm"], ts)[W.row]
        else:
            w_used_mv = w
        weights_mv[proj.name] = sp.csr_matrix((w_used_mv, (W.row, W.col)), shape=W.shape)

    for name, report in quantization.items():
        zeroed = sum(report[k]["zeroed"] for k in ("excitatory", "inhibitory"))
        if zeroed:
            warn.append(f"population '{name}': {zeroed} synapses round to 0 in sPyNNaker's 16-bit "
                        f"weights (their row sums need shifts {report['excitatory']['shift']}/"
                        f"{report['inhibitory']['shift']}); they are dropped in both simulators")

    # ---- s16.15 range on the chip (sPyNNaker's closed form computes α = I·R + V_rest)
    for name, c in cells.items():
        R_m = c.params["tau_m"] / c.params["cm"]
        peaks = {"v_init": np.abs(c.v_init).max(initial=0.0),
                 "bias equilibrium I·R": np.abs(c.params["i_offset"] * R_m).max(initial=0.0)}
        if cell == "IF_curr_delta":
            peaks["largest summed input w/ts·R"] = max(c.max_summed) / ts * R_m.max(initial=0.0)
        headroom = {k: float(v) / S1615_MAX for k, v in peaks.items()}
        quantization[name]["s1615_range_used"] = headroom
        for what, used in headroom.items():
            if used >= 1.0:
                warn.append(f"population '{name}': {what} reaches {used * S1615_MAX:.4g} mV, beyond "
                            f"s16.15's ±{S1615_MAX:g} on SpiNNaker (NEST is unaffected)")

    # ---- host filters and readout
    spiking_sizes = {p.name: p.size for p in plan.spiking}
    filter_specs = []
    for i, pop in enumerate(plan.filters):
        key = f"filter{i}"
        arrays[f"{key}.decay"], arrays[f"{key}.bias"] = pop.decay, pop.bias
        arrays[f"{key}.v_init"] = pop.v_init
        inputs = []
        for j, proj in enumerate(plan.filter_inputs[pop.name]):
            W = sp.coo_matrix(proj.weights, dtype=np.float64)
            arrays[f"{key}.in{j}.rows"] = W.row.astype(np.int64)
            arrays[f"{key}.in{j}.cols"] = W.col.astype(np.int64)
            arrays[f"{key}.in{j}.vals"] = W.data
            inputs.append({"source": proj.source, "source_size": spiking_sizes[proj.source],
                           "delay": proj.delay, "name": proj.name})
        filter_specs.append({"name": pop.name, "size": pop.size, "key": key, "inputs": inputs})
    terms = []
    for i, term in enumerate(net.readout.terms):
        entry = {"target": term.target, "population": term.population, "quantity": term.quantity,
                 "scale": term.scale, "matrix": None, "shape": None}
        if term.matrix is not None:
            M = sp.coo_matrix(term.matrix, dtype=np.float64)
            key = f"readout{i}"
            arrays[f"{key}.rows"], arrays[f"{key}.cols"] = M.row.astype(np.int64), M.col.astype(np.int64)
            arrays[f"{key}.vals"] = M.data
            entry["matrix"], entry["shape"] = key, list(M.shape)
        terms.append(entry)
    offsets = {}
    for target, value in net.readout.offsets.items():
        arrays[f"offset.{target}"] = np.asarray(value, dtype=np.float64)
        offsets[target] = f"offset.{target}"
    scaling = net.provenance.get("scaling")
    scaling_spec = None
    if scaling is not None:
        scaling_spec = {}
        for name in ("d", "e_ineq", "e_eq"):
            value = scaling.get(name) if isinstance(scaling, dict) else getattr(scaling, name, None)
            if value is not None:
                arrays[f"scaling.{name}"] = np.asarray(value, dtype=np.float64)
                scaling_spec[name] = f"scaling.{name}"
        cost = scaling.get("cost") if isinstance(scaling, dict) else getattr(scaling, "cost", None)
        scaling_spec["cost"] = None if cost is None else float(cost)

    for message in warn:
        warnings.warn(message, stacklevel=3)
    params = net.provenance.get("params", {})
    spec = {
        "format": PROJECT_FORMAT, "version": PROJECT_VERSION, "cell": cell,
        "timestep_ms": ts, "mv_per_unit": span, "tau_syn_ms": tau_syn if cell == "IF_curr_exp" else None,
        "steps_hint": int(params.get("steps_hint", 1000)), "quantized": bool(quantize),
        "populations": [{"name": p.name, "size": p.size, "key": f"pop{i}", "record": p.record,
                         "max_expected_summed_weight": list(cells[p.name].max_summed)}
                        for i, p in enumerate(plan.spiking)],
        "projections": [{"name": p.name, "source": p.source, "target": p.target, "key": f"proj{j}",
                         "max_delay_steps": p.delay} for j, p in enumerate(plan.chip_projections)],
        "filters": filter_specs,
        "readout": {"terms": terms, "offsets": offsets, "sizes": dict(net.readout.sizes),
                    "scaling": scaling_spec},
        "approximations": plan.approximations, "warnings": warn, "quantization": quantization,
        "source": {"family": net.family, "qp_hash": net.provenance.get("qp_hash"),
                   "params": params},
    }
    return PyNNProject(spec, arrays, cells, weights_mv, quantization, plan)


def pynn_equivalent_network(net: Network, **options) -> Network:
    """The IR network that the emitted IF_curr_delta cells execute exactly (up to
    NEST's ``≥`` against the IR's ``>`` at threshold and float rounding): each
    spiking population in the cell's millivolts, hard reset to v_reset, no spike
    cap, the s16.15 / 16-bit values; filters, their inputs and the readout
    unchanged. The reference backend running it is what NEST must reproduce."""
    project = translate(net, **options)
    if project.spec["cell"] != "IF_curr_delta":
        raise InputError("only IF_curr_delta cells are an IR network (exp synapses filter their input)",
                         field="cell")
    populations = []
    for pop in net.populations:
        c = project.cells.get(pop.name)
        if c is None:
            populations.append(pop)
            continue
        populations.append(Population(
            pop.name, pop.size, role=pop.role, decay=c.decay, bias=c.step_bias_mv,
            v_init=c.v_init, threshold=c.params["v_thresh"], spike="binary", reset="to_value",
            reset_value=c.params["v_reset"], max_spikes_per_step=None, record=pop.record))
    projections = []
    for proj in net.projections:
        if proj.name in project.weights_mv:
            projections.append(Projection(proj.source, proj.target, project.weights_mv[proj.name],
                                          delay=proj.delay, name=proj.name))
        else:
            projections.append(proj)
    provenance = dict(net.provenance)
    provenance["warnings"] = list(net.provenance.get("warnings", [])) + [
        "PyNN-equivalent network: spiking populations in mV with a hard reset and no spike cap"]
    return Network(populations=populations, projections=projections, gains=list(net.gains),
                   schedule=net.schedule, readout=net.readout, dt=net.dt, provenance=provenance)


def chip_network(net: Network) -> Network:
    """The part of ``net`` that SpiNNaker runs: spiking populations and the projections
    between them (filters and readout stay on the host)."""
    plan = analyse(net)
    names = {p.name for p in plan.spiking}
    return Network(populations=plan.spiking, projections=plan.chip_projections,
                   schedule=[[n for n in net.schedule[0] if n in names]], dt=net.dt,
                   provenance={"family": net.family, "params": net.provenance.get("params", {})})


# ============================================================== the backend
class SpiNNakerBackend(Backend):
    name = "spinnaker"
    description = ("PyNN project for SpiNNaker (sPyNNaker standard cells, binary spikes); "
                   "runs under NEST for verification")

    OPTIONS = ("cell", "quantize", "mv_per_unit", "v_reset_units", "timestep_ms", "check_every",
               "timeout_s", "workdir", "max_events")

    @classmethod
    def available(cls) -> tuple[bool, str]:
        missing = [name for name in ("pyNN", "nest") if importlib.util.find_spec(name) is None]
        if missing:
            return False, (f"running needs {' and '.join(missing)} (pip install PyNN "
                           f"nest-simulator); emitting the PyNN project needs neither")
        return True, ""

    def capabilities(self) -> Capabilities:
        return Capabilities(
            features=frozenset({"binary_spikes", "decay", "reset_to_value", "reset_subtract",
                                "max_spikes_per_step", "delays", "fixed_point"}),
            max_delay=MAX_DELAY_STEPS,
            notes="binary-spike networks (family 'lif'); subtractive reset approximated by a hard "
                  "reset, the one-spike-per-step rule dropped; filter populations (threshold +∞) "
                  "are computed on the host from the recorded spikes; 16-bit weights, s16.15 state")

    def check(self, net: Network) -> None:
        analyse(net)

    # ------------------------------------------------------------ emit
    def emit(self, net: Network, out_dir, *, steps: Optional[int] = None, **options) -> list[Path]:
        """Write network.npz/json, run.py and the resource report into ``out_dir``.
        Options: ``cell``, ``quantize``, ``mv_per_unit``, ``v_reset_units``, ``timestep_ms``;
        ``steps`` overrides the step hint (the script's default and the report's solve length)."""
        from snn_compile.passes.mapping import ResourceError, map_network

        project = translate(net, **options)
        if steps is not None:
            project.spec["steps_hint"] = int(steps)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / "network.npz", **project.arrays)
        (out / "network.json").write_text(json.dumps(project.spec, indent=1, allow_nan=False))
        (out / "run.py").write_text(RUN_SCRIPT)
        chip = chip_network(net)
        try:
            report = map_network(chip, "spinnaker1", steps=project.spec["steps_hint"])
        except ResourceError as exc:     # more than one board: still say how many it needs
            report = map_network(chip, "spinnaker1", steps=project.spec["steps_hint"], max_chips=math.inf)
            report.notes.append(f"does not fit one SpiNN-5 board: {exc}")
        resources = report.to_dict()
        resources["scope"] = ("the spiking populations and their projections (on SpiNNaker); "
                              "filter populations and the readout run on the host")
        (out / "resources.json").write_text(json.dumps(_plain(resources), indent=1))
        (out / "resources.txt").write_text(report.format() + "\n" + f"note: {resources['scope']}\n")
        return sorted(out / name for name in ("network.npz", "network.json", "run.py",
                                              "resources.json", "resources.txt"))

    # ------------------------------------------------------------ run under NEST
    def run(self, net: Network, steps: int, *, record_every: Optional[int] = None,
            progress: bool = False, stop: Optional[StopCallback] = None, check_every: int = 100,
            timeout_s: Optional[float] = None, workdir=None, max_events: Optional[int] = None,
            **options) -> Trace:
        """Emit, run ``run.py --sim nest`` in a fresh process, and read the spikes back.

        ``stop`` is polled every ``check_every`` steps on snapshots rebuilt from the
        recorded run (the filter states are exact at any step); the trace ends after
        the first step where it returns True, as if the run had stopped there.
        ``workdir`` keeps the project and results there (default: a temporary folder).
        Emit options (``cell``, ``quantize``, ...) as in ``emit``."""
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise InputError(f"unknown option(s) {unknown} for target 'spinnaker'; "
                             f"known: {', '.join(self.OPTIONS)}", field="options")
        ok, reason = self.available()
        if not ok:
            raise BackendUnavailable(f"target 'spinnaker' cannot run: {reason}")
        steps = int(steps)
        if steps < 1:
            raise InputError("must be ≥ 1", field="steps")
        check_every = max(1, int(check_every))
        if record_every is None:
            record_every = default_record_every(steps)
        record_every = int(record_every)
        # voltages are sampled every `every` steps: a divisor of the run, of the
        # state-sample interval and of the stop interval, so each needed step is sampled
        every = steps
        for interval in ([record_every] if record_every > 0 else []) + ([check_every] if stop else []):
            every = math.gcd(every, interval)

        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="snn-spinnaker-") as tmp:
            folder = Path(workdir) if workdir is not None else Path(tmp)
            self.emit(net, folder, steps=steps, **options)
            out = folder / "results_nest.npz"
            _run_script(folder, ["--sim", "nest", "--steps", str(steps), "--sample-every", str(every),
                                 "--out", str(out)], cwd=folder, timeout_s=timeout_s)
            with np.load(out, allow_pickle=False) as data:
                results = {k: data[k] for k in data.files}
            summary = json.loads(out.with_suffix(".json").read_text())
            spec, arrays = script_module().load_project(folder)
        wall = time.perf_counter() - started
        trace = self._trace(net, spec, arrays, results, steps, every, record_every,
                            check_every if stop else 0, stop, wall, max_events)
        trace.meta["nest_run_seconds"] = summary["run_seconds"]   # sim.run alone
        return trace

    def _trace(self, net, spec, arrays, results, steps, every, record_every, check_every, stop,
               wall, max_events) -> Trace:
        from snn_compile.runtime import ControlContext, GainState

        script = script_module()
        spikes = {p["name"]: (results[f"spikes.{p['name']}.steps"], results[f"spikes.{p['name']}.neurons"])
                  for p in spec["populations"]}
        voltages = {p["name"]: (results[f"v.{p['name']}.steps"], results[f"v.{p['name']}.values"])
                    for p in spec["populations"] if f"v.{p['name']}.steps" in results}
        checkpoints = range(check_every - 1, steps, check_every) if check_every else ()
        # `every` divides every step asked for below, so the samples hold each exact state
        _, filter_samples, _ = script.filter_states(spec, arrays, spikes, steps, sample_every=every)
        sizes = {p.name: p.size for p in net.populations}

        def voltage_at(name: str, t: int) -> np.ndarray:
            sample_steps, values = voltages[name]
            hit = np.flatnonzero(sample_steps == t)
            return values[hit[0]].copy() if hit.size else np.full(sizes[name], np.nan)

        def state_at(name: str, t: int) -> np.ndarray:
            if name in voltages:
                return voltage_at(name, t)
            sample_steps, values = filter_samples[name]
            return values[(t + 1) // every - 1].copy()

        def snapshot(t: int) -> tuple[Trace, dict]:
            """The run as if it had ended after step t, and its spikes up to t."""
            taken = t + 1
            cut = {name: (s[s <= t], n[s <= t]) for name, (s, n) in spikes.items()}
            return Trace(
                steps=taken, final_state={name: state_at(name, t) for name in sizes},
                clamp_excess={name: np.zeros(size) for name, size in sizes.items()}, averages={},
                spike_counts=script.spike_counts_of(spec, cut), updates={name: taken for name in sizes},
                gains_final={g.name: float(g.value) for g in net.gains}, backend=self.name,
                meta=self._meta(net, spec)), cut

        end, stopped = steps - 1, False
        for t in checkpoints:
            trace_t, _ = snapshot(t)
            ctx = ControlContext(net, {name: trace_t.final_state[name] for name in sizes},
                                 GainState(net.gains), {})
            ctx.step = t
            ctx.snapshot = lambda trace_t=trace_t: trace_t
            if stop(t, ctx):
                end, stopped = t, True
                break
        trace, cut = snapshot(end)
        trace.events, trace.events_truncated = {}, False
        for pop in net.populations:
            if pop.record and pop.name in cut:
                s, n = cut[pop.name]
                if max_events is not None and s.size > max_events:
                    s, n, trace.events_truncated = s[:max_events], n[:max_events], True
                trace.events[pop.name] = (s.astype(np.int64), n.astype(np.int32), np.ones(s.size))
        if record_every > 0:
            kept = (end + 1) // record_every
            rows = np.arange(1, kept + 1) * record_every - 1
            trace.samples = {
                name: (rows.copy(), np.array([state_at(name, t) for t in rows]).reshape(kept, size))
                for name, size in sizes.items()}
            trace.record_every = record_every
        if stopped:
            trace.control_log = [{"event": "stop", "step": end, "reason": "stop callback"}]
        trace.wall_time, trace.stopped_early = wall, stopped
        return trace

    def _meta(self, net: Network, spec: dict) -> dict:
        return {"family": net.family, "neurons": net.neuron_count, "synapses": net.synapse_count,
                "simulator": "nest", "cell": spec["cell"], "timestep_ms": spec["timestep_ms"],
                "approximations": spec["approximations"], "quantized": spec["quantized"],
                "quantization": spec["quantization"]}

    # ------------------------------------------------------------ sPyNNaker, no board
    def map_on_virtual_board(self, net: Network, *, steps: int = 100, timeout_s: float = 900,
                             workdir=None, **options) -> dict:
        """Run the emitted script under sPyNNaker on a virtual SpiNN-5 board: the whole
        mapping (partitioning, placement, routing, data generation) runs, nothing is
        loaded or recorded. The configuration lives in a temporary HOME (never the
        user's). Returns the script's mapping summary (cores, chips, per vertex)."""
        if importlib.util.find_spec("spynnaker") is None:
            raise BackendUnavailable("sPyNNaker is not installed (pip install sPyNNaker)")
        with tempfile.TemporaryDirectory(prefix="snn-spinnaker-vb-") as tmp:
            tmp = Path(tmp)
            folder = Path(workdir) if workdir is not None else tmp / "project"
            self.emit(net, folder, steps=steps, **options)
            home, reports = tmp / "home", tmp / "reports"
            home.mkdir()
            reports.mkdir()
            (home / ".spynnaker.cfg").write_text(VIRTUAL_BOARD_CFG.format(reports=reports))
            env = {k: v for k, v in os.environ.items() if k not in ("XDG_CONFIG_HOME",)}
            env["HOME"] = str(home)
            out = tmp / "virtual_board.npz"
            _run_script(folder, ["--sim", "spinnaker", "--steps", str(int(steps)), "--out", str(out)],
                        cwd=tmp, timeout_s=timeout_s, env=env)
            summary = json.loads(out.with_suffix(".json").read_text())
        mapping = summary["spinnaker"]
        if not mapping or not mapping.get("virtual_board"):
            raise SimulatorError("sPyNNaker did not run on a virtual board")
        return mapping


def _run_script(folder: Path, args: list, *, cwd, timeout_s=None, env=None) -> None:
    command = [sys.executable, str(Path(folder) / "run.py"), *args]
    try:
        proc = subprocess.run(command, cwd=str(cwd), env=env, capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise SimulatorError(f"{' '.join(args[:2])} did not finish within {timeout_s} s") from exc
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise SimulatorError(f"run.py {' '.join(args[:2])} failed (exit {proc.returncode}): "
                             + " | ".join(tail))


def _plain(value):
    """JSON-safe copy (non-finite floats become strings)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value
