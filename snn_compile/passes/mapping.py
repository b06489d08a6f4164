"""Place a network on a chip: cores, chips, boards, memory, and a time/energy estimate.

``map_network(net, hw)`` is a pure function (the IR is only read). Each population
is cut into contiguous slices, one slice per core (a core never mixes populations,
as in nengo-loihi and sPyNNaker). A core is closed when the next neuron would
exceed any of the chip's per-core limits:

* ``neurons_per_core``;
* ``synapse_memory_bytes_per_core``: the synapses *into* the core's neurons
  (synapses are stored at their target) × ``bytes_per_synapse``;
* ``input_axons_per_core``: distinct presynaptic neurons feeding the core.

Single neurons are checked against ``max_fan_in`` / ``max_fan_out`` (synapse
counts) and against a whole core's memory and axons. ``output_axons_per_core``
(Σ over a core's neurons of the distinct cores they target) depends on where the
targets landed, so it is checked after partitioning; a population whose cores
overflow it is re-cut with fewer neurons per core until it fits. Cores are then
filled onto chips in order (``cores_per_chip``) and chips onto boards.

Activity and cost (docs/hardware.md §"Mapper"): per step, a population p that
updates u_p times per schedule cycle of length L emits a_p · size_p · u_p / L
spikes (a_p: fraction of its neurons emitting per update; 1 for populations
without a finite threshold, which emit at every update). A spike of neuron k
costs one synaptic operation per outgoing synapse. Then, for a solve of S steps,

    time   = S · time_per_step_s
    energy = S · (synops/step · energy_per_synop_j + neuron updates/step · energy_per_neuron_update_j)
             + time · (static_power_per_chip_w · chips + static_power_per_core_w · cores)

(the static term only where the chip config gives it).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional, Union

import numpy as np
import scipy.sparse as sp

from ..errors import InputError, SnnCompileError
from ..hardware import HardwareConfig, load_hardware
from ..ir import Network

#: re-cutting a population for output axons shrinks its cores; a few rounds suffice
_MAX_RECUTS = 64


class ResourceError(SnnCompileError):
    """The network does not fit the chip; the message names the limit and the excess."""


@dataclass(frozen=True)
class CoreSlice:
    """Neurons ``start:stop`` of one population on one core."""

    core: int
    chip: int
    board: int
    population: str
    start: int
    stop: int
    synapses: int           # synapses into these neurons (stored on this core)
    synapse_bytes: float
    input_axons: int        # distinct presynaptic neurons feeding this core
    output_axons: int       # Σ over its neurons of distinct target cores

    @property
    def neurons(self) -> int:
        return self.stop - self.start


@dataclass
class MappingReport:
    """Where every neuron went and what a solve is estimated to cost."""

    hardware: str
    cores: list                    # CoreSlice, in core order
    max_chips: Optional[float]     # the limit mapped under (inf: unlimited)
    cores_used: int
    chips_used: int
    boards_used: int
    neurons: int
    synapses: int
    synapse_memory_bytes: float
    synapse_memory_bytes_per_core: Optional[int]   # the chip's limit, for the table
    activity_source: str
    spikes_per_step: float
    synops_per_step: float
    neuron_updates_per_step: float
    steps: Optional[int] = None
    time_per_step_s: Optional[float] = None
    time_s: Optional[float] = None
    energy_per_step_j: Optional[float] = None      # dynamic energy of one step
    energy_j: Optional[float] = None               # whole solve, static included where known
    energy_breakdown_j: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    unsupported: list = field(default_factory=list)   # IR features the chip lacks

    def population_summary(self) -> dict:
        """Per population: neurons, cores, largest core, synapses, largest core's memory."""
        out: dict[str, dict] = {}
        for c in self.cores:
            row = out.setdefault(c.population, {"neurons": 0, "cores": 0, "max_neurons_per_core": 0,
                                                "synapses": 0, "max_core_synapse_bytes": 0.0})
            row["neurons"] += c.neurons
            row["cores"] += 1
            row["max_neurons_per_core"] = max(row["max_neurons_per_core"], c.neurons)
            row["synapses"] += c.synapses
            row["max_core_synapse_bytes"] = max(row["max_core_synapse_bytes"], c.synapse_bytes)
        return out

    def to_dict(self) -> dict:
        out = asdict(self)
        out["max_chips"] = None if self.max_chips is None or math.isinf(self.max_chips) else int(self.max_chips)
        out["populations"] = self.population_summary()
        return out

    def format(self) -> str:
        """A short human-readable table."""
        limit = ("unlimited" if self.max_chips is None or math.isinf(self.max_chips)
                 else f"≤ {int(self.max_chips)}")
        lines = [f"mapping on {self.hardware}: {self.cores_used} cores on {self.chips_used} chip(s) "
                 f"({limit} allowed), {self.boards_used} board(s)",
                 f"{'population':<16}{'neurons':>9}{'cores':>7}{'max/core':>10}{'synapses':>11}"
                 f"{'max syn. mem/core':>19}"]
        mem_limit = (f" of {_bytes(self.synapse_memory_bytes_per_core)}"
                     if self.synapse_memory_bytes_per_core else "")
        for name, row in self.population_summary().items():
            lines.append(f"{name[:15]:<16}{row['neurons']:>9}{row['cores']:>7}"
                         f"{row['max_neurons_per_core']:>10}{row['synapses']:>11}"
                         f"{_bytes(row['max_core_synapse_bytes']):>19}")
        lines.append(f"total: {self.neurons} neurons, {self.synapses} synapses, "
                     f"{_bytes(self.synapse_memory_bytes)} synapse memory"
                     + (f" (per-core limit{mem_limit})" if mem_limit else ""))
        lines.append(f"per step ({self.activity_source}): {self.spikes_per_step:.4g} spikes, "
                     f"{self.synops_per_step:.4g} synaptic ops, {self.neuron_updates_per_step:.4g} neuron updates")
        if self.steps is not None:
            lines.append(f"per solve of {self.steps} steps: time {_si(self.time_s, 's')}, "
                         f"energy {_si(self.energy_j, 'J')}"
                         + "".join(f"; {k} {_si(v, 'J')}" for k, v in self.energy_breakdown_j.items()))
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"unsupported: {u}" for u in self.unsupported]
        return "\n".join(lines)


def _bytes(n) -> str:
    if n is None:
        return "—"
    for unit, size in (("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _si(value, unit: str) -> str:
    if value is None:
        return "unknown"
    if value == 0:
        return f"0 {unit}"
    for prefix, scale in (("", 1.0), ("m", 1e-3), ("µ", 1e-6), ("n", 1e-9), ("p", 1e-12)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


# ---------------------------------------------------------------- the pass
def map_network(net: Network, hw: Union[HardwareConfig, str], *, steps: Optional[int] = None,
                max_chips: Optional[float] = None, activity=None, trace=None) -> MappingReport:
    """Partition ``net`` onto ``hw``'s cores, place the cores on chips and boards,
    and estimate activity, time and energy.

    ``max_chips``: chips the network may use (default: the config's
    ``default_max_chips``: one chip for Loihi, one 48-chip board for SpiNNaker;
    ``math.inf``: unlimited). ``steps``: solve length for the time/energy totals.
    Activity: a ``trace`` (``spike_counts``, ``updates``, ``steps`` as in
    ``snn_compile.trace.Trace``) gives measured spike rates; otherwise
    ``activity`` (a fraction, or ``{population: fraction}``) is the share of a
    population's neurons that emit at each of its updates; with neither, every
    neuron emits at every update (an upper bound).

    Raises ``ResourceError`` when the network does not fit, naming the limit
    and the excess.
    """
    hw = load_hardware(hw)
    res = hw.resources
    if max_chips is None:
        max_chips = res.default_max_chips if res.default_max_chips is not None else math.inf
    if not (max_chips == math.inf or (isinstance(max_chips, (int, np.integer)) and max_chips >= 1)):
        raise InputError(f"must be a positive integer or math.inf, got {max_chips!r}", field="max_chips")
    if steps is not None and (isinstance(steps, bool) or int(steps) != steps or steps < 0):
        raise InputError(f"must be a non-negative integer, got {steps!r}", field="steps")

    patterns = {id(p): _pattern(p.weights) for p in net.projections}
    _check_single_neurons(net, hw, patterns)
    cores = _partition_all(net, hw, patterns)

    max_cores = hw.max_cores(None if math.isinf(max_chips) else int(max_chips))
    if max_cores is not None and len(cores) > max_cores:
        chips = int(max_chips)
        raise ResourceError(
            f"network needs {len(cores)} cores, {chips} {hw.name} chip{'s' if chips > 1 else ''} "
            f"{'have' if chips > 1 else 'has'} {max_cores}: {len(cores) - max_cores} over "
            f"(neurons per core ≤ {res.neurons_per_core}, synapse memory per core ≤ "
            f"{res.synapse_memory_bytes_per_core} B; allow more chips with max_chips)")

    per_chip, per_board = res.cores_per_chip, res.chips_per_board
    placed = []
    for i, c in enumerate(cores):
        chip = i // per_chip if per_chip else 0
        board = chip // per_board if per_board else 0
        placed.append(CoreSlice(core=i, chip=chip, board=board, **c))
    chips_used = (placed[-1].chip + 1) if placed else 0
    boards_used = (placed[-1].board + 1) if placed else 0

    spikes, synops, updates, source, notes = _activity(net, patterns, activity, trace)
    report = MappingReport(
        hardware=hw.name, cores=placed, max_chips=max_chips, cores_used=len(placed),
        chips_used=chips_used, boards_used=boards_used, neurons=net.neuron_count,
        synapses=sum(int(m.nnz) * _copies(net).get(key, 1) for key, m in patterns.items()),
        synapse_memory_bytes=sum(c.synapse_bytes for c in placed),
        synapse_memory_bytes_per_core=res.synapse_memory_bytes_per_core,
        activity_source=source, spikes_per_step=spikes, synops_per_step=synops,
        neuron_updates_per_step=updates, notes=notes, unsupported=unsupported_features(net, hw))
    _estimate_cost(report, hw, steps)
    return report


# ---------------------------------------------------------------- partitioning
def _pattern(weights) -> sp.csr_matrix:
    """Boolean CSR of the nonzero weights (explicit zeros are not synapses)."""
    mat = sp.csr_matrix(weights)
    mat = sp.csr_matrix(mat != 0, dtype=bool)
    mat.sort_indices()
    return mat


def _copies(net: Network) -> dict:
    """Synapses stored per nonzero weight: a quantized projection whose weights are
    split into several slices (docs/ir.md §5) needs one synapse per slice."""
    spec = getattr(net, "fixed_point", None)
    if spec is None:
        return {}
    return {id(proj): len(fixed.slices) for proj, fixed in zip(net.projections, spec.projections)}


def _incoming(net: Network, patterns, name: str):
    """Synapses into each neuron of ``name``, and per source population the OR of
    the projections' patterns (for counting distinct presynaptic neurons)."""
    size = net.population(name).size
    in_degree = np.zeros(size, dtype=np.int64)
    by_source: dict[str, sp.csr_matrix] = {}
    copies = _copies(net)
    for proj in net.incoming(name):
        pat = patterns[id(proj)]
        in_degree += np.diff(pat.indptr) * copies.get(id(proj), 1)
        by_source[proj.source] = pat if proj.source not in by_source else \
            sp.csr_matrix(by_source[proj.source] + pat, dtype=bool)
    return in_degree, list(by_source.values())


def _check_single_neurons(net: Network, hw: HardwareConfig, patterns):
    """Refuse neurons that cannot fit on any core, with the numbers."""
    res = hw.resources
    for pop in net.populations:
        in_degree, sources = _incoming(net, patterns, pop.name)
        out_degree = np.zeros(pop.size, dtype=np.int64)
        for proj in net.projections:
            if proj.source == pop.name:
                pat = patterns[id(proj)]
                out_degree += np.bincount(pat.indices, minlength=pop.size) * _copies(net).get(id(proj), 1)
        distinct_inputs = sum(np.diff(s.indptr) for s in sources) if sources else in_degree * 0
        checks = [
            ("fan-in", in_degree, res.max_fan_in, "synapses into one neuron"),
            ("fan-out", out_degree, res.max_fan_out, "synapses out of one neuron"),
            ("input axons", distinct_inputs, res.input_axons_per_core, "distinct inputs per core"),
        ]
        if res.synapse_memory_bytes_per_core is not None:
            checks.append(("synapse memory", in_degree * res.bytes_per_synapse,
                           res.synapse_memory_bytes_per_core, "bytes of synapses per core"))
        for what, values, limit, unit in checks:
            if limit is None or pop.size == 0:
                continue
            worst = int(np.argmax(values))
            if values[worst] > limit:
                value = values[worst]
                value_text = f"{value:g}" if isinstance(value, float) else f"{int(value)}"
                raise ResourceError(
                    f"population '{pop.name}' neuron {worst} needs {value_text} {unit} "
                    f"({what}); {hw.name} allows {limit}: {float(value) - limit:g} over")


def _partition_all(net: Network, hw: HardwareConfig, patterns) -> list[dict]:
    """Cut every population into cores, re-cutting populations whose cores
    overflow the output-axon limit with smaller caps."""
    res = hw.resources
    caps = {p.name: res.neurons_per_core or max(p.size, 1) for p in net.populations}
    incoming = {p.name: _incoming(net, patterns, p.name) for p in net.populations}
    for _ in range(_MAX_RECUTS):
        slices = {p.name: _partition(p.size, *incoming[p.name], caps[p.name], hw)
                  for p in net.populations}
        out_axons = _output_axons(net, patterns, slices)
        limit = res.output_axons_per_core
        over = {} if limit is None else {name: max(per_core) for name, per_core in out_axons.items()
                                         if per_core and max(per_core) > limit}
        if not over:
            break
        for name, worst in over.items():
            if caps[name] == 1:
                raise ResourceError(f"population '{name}': one neuron needs {worst} output axons "
                                    f"(distinct target cores); {hw.name} allows {limit} per core: "
                                    f"{worst - limit} over")
            largest = max(stop - start for start, stop, *_ in slices[name])
            caps[name] = max(1, min(largest - 1, largest * limit // worst))
    else:  # every round shrinks a cap by at least one neuron; this many rounds means no fit
        raise ResourceError(f"populations {sorted(over)} still need more than {limit} output axons "
                            f"per core after {_MAX_RECUTS} re-cuts")
    cores = []
    for pop in net.populations:
        for (start, stop, synapses, axons), out in zip(slices[pop.name], out_axons[pop.name]):
            cores.append(dict(population=pop.name, start=start, stop=stop, synapses=synapses,
                              synapse_bytes=synapses * res.bytes_per_synapse,
                              input_axons=axons, output_axons=out))
    return cores


def _partition(size: int, in_degree: np.ndarray, sources: list, cap: int,
               hw: HardwareConfig) -> list[tuple]:
    """Greedy contiguous cut: (start, stop, synapses, input axons) per core."""
    res = hw.resources
    mem = res.synapse_memory_bytes_per_core
    # most synapses one core can store (a float bound so bytes_per_synapse may be fractional)
    max_synapses = math.inf if mem is None else mem / res.bytes_per_synapse
    if res.input_axons_per_core is None:
        bounds = _cut_by_count_and_memory(in_degree, cap, max_synapses)
    else:
        bounds = _cut_with_axon_limit(in_degree, sources, cap, max_synapses, res.input_axons_per_core)
    return [(a, b, int(in_degree[a:b].sum()), _distinct_inputs(sources, a, b)) for a, b in bounds]


def _cut_by_count_and_memory(in_degree: np.ndarray, cap: int, max_synapses: float) -> list[tuple]:
    """One step per core: the longest run from ``start`` within both limits."""
    cumulative = np.concatenate([[0], np.cumsum(in_degree)])
    bounds, start, size = [], 0, len(in_degree)
    while start < size:
        by_memory = int(np.searchsorted(cumulative, cumulative[start] + max_synapses, side="right")) - 1
        stop = max(start + 1, min(start + cap, by_memory, size))   # a lone neuron was checked to fit
        bounds.append((start, stop))
        start = stop
    return bounds


def _cut_with_axon_limit(in_degree, sources, cap, max_synapses, axon_limit) -> list[tuple]:
    """Neuron by neuron, counting distinct presynaptic neurons as the core fills."""
    # seen[s][k] = index of the last core that already counts source neuron k as an input
    seen = [np.full(s.shape[1], -1, dtype=np.int64) for s in sources]

    def new_inputs(i: int, core: int) -> int:
        return sum(int(np.count_nonzero(mark[s.indices[s.indptr[i]:s.indptr[i + 1]]] != core))
                   for s, mark in zip(sources, seen))

    bounds, start, synapses, axons = [], 0, 0, 0
    for i in range(len(in_degree)):
        core = len(bounds)
        added = new_inputs(i, core)
        full = (i - start + 1 > cap or synapses + in_degree[i] > max_synapses
                or axons + added > axon_limit)
        if full and i > start:
            bounds.append((start, i))
            start, synapses, axons, core = i, 0, 0, core + 1
            added = new_inputs(i, core)
        for s, mark in zip(sources, seen):
            mark[s.indices[s.indptr[i]:s.indptr[i + 1]]] = core
        synapses += in_degree[i]
        axons += added
    if len(in_degree):
        bounds.append((start, len(in_degree)))
    return bounds


def _distinct_inputs(sources: list, start: int, stop: int) -> int:
    return sum(len(np.unique(s.indices[s.indptr[start]:s.indptr[stop]])) for s in sources)


def _output_axons(net: Network, patterns, slices) -> dict[str, list[int]]:
    """Per core: Σ over its neurons of the distinct cores they send to."""
    core_of: dict[str, np.ndarray] = {}
    offset = 0
    for pop in net.populations:
        ids = np.empty(pop.size, dtype=np.int64)
        for j, (start, stop, *_) in enumerate(slices[pop.name]):
            ids[start:stop] = offset + j
        core_of[pop.name] = ids
        offset += len(slices[pop.name])
    out: dict[str, list[int]] = {}
    for pop in net.populations:
        keys = []
        for proj in net.projections:
            if proj.source == pop.name:
                coo = patterns[id(proj)].tocoo()
                keys.append(coo.col.astype(np.int64) * offset + core_of[proj.target][coo.row])
        per_neuron = np.zeros(pop.size, dtype=np.int64)
        if keys and offset:
            unique = np.unique(np.concatenate(keys))
            per_neuron = np.bincount(unique // offset, minlength=pop.size)
        out[pop.name] = [int(per_neuron[start:stop].sum()) for start, stop, *_ in slices[pop.name]]
    return out


# ---------------------------------------------------------------- activity and cost
def _updates_per_step(net: Network) -> dict[str, float]:
    cycle = len(net.schedule)
    return {p.name: sum(p.name in step for step in net.schedule) / cycle for p in net.populations}


def _activity(net: Network, patterns, activity, trace):
    """Emissions per neuron per step → (spikes, synops, neuron updates) per step."""
    notes = []
    per_update = _updates_per_step(net)
    if isinstance(activity, dict):
        unknown = set(activity) - {p.name for p in net.populations}
        if unknown:
            raise InputError(f"unknown population(s) {sorted(unknown)}", field="activity")
    for value in (activity.values() if isinstance(activity, dict) else [activity]):
        if value is not None and not (0.0 <= float(value) <= 1.0):
            raise InputError(f"must be a fraction in [0, 1], got {value!r}", field="activity")

    rates: dict[str, np.ndarray] = {}
    if trace is not None:
        source = f"measured over {trace.steps} steps"
        for pop in net.populations:
            counts = getattr(trace, "spike_counts", {}).get(pop.name)
            if counts is None or trace.steps <= 0:
                notes.append(f"no spike counts for '{pop.name}' in the trace: upper bound used")
                rates[pop.name] = np.full(pop.size, per_update[pop.name])
                continue
            updates = trace.updates.get(pop.name, per_update[pop.name] * trace.steps)
            # a neuron without a finite threshold emits at every update
            emitted = np.where(np.isneginf(pop.threshold), updates, np.asarray(counts, dtype=float))
            rates[pop.name] = emitted / trace.steps
    else:
        source = ("upper bound: every neuron emits at every update" if activity is None
                  else "given activity")
        for pop in net.populations:
            given = activity.get(pop.name) if isinstance(activity, dict) else activity
            share = np.full(pop.size, 1.0 if given is None else float(given))
            if not isinstance(activity, dict):
                # a neuron without a finite threshold emits at every update
                share[np.isneginf(pop.threshold)] = 1.0
            rates[pop.name] = share * per_update[pop.name]

    spikes = float(sum(r.sum() for r in rates.values()))
    synops = 0.0
    for proj in net.projections:
        out_degree = np.bincount(patterns[id(proj)].indices, minlength=net.population(proj.source).size)
        synops += float(rates[proj.source] @ out_degree)
    updates = float(sum(p.size * per_update[p.name] for p in net.populations))
    return spikes, synops, updates, source, notes


def _estimate_cost(report: MappingReport, hw: HardwareConfig, steps: Optional[int]):
    cost = hw.cost
    report.time_per_step_s = cost.time_per_step_s
    if cost.energy_per_synop_j is not None and cost.energy_per_neuron_update_j is not None:
        report.energy_per_step_j = (report.synops_per_step * cost.energy_per_synop_j
                                    + report.neuron_updates_per_step * cost.energy_per_neuron_update_j)
    else:
        report.notes.append(f"{hw.name} gives no energy per operation: energy unknown")
    if steps is None:
        return
    report.steps = int(steps)
    if cost.time_per_step_s is not None:
        report.time_s = steps * cost.time_per_step_s
    if report.energy_per_step_j is None:
        return
    breakdown = {"synaptic ops": steps * report.synops_per_step * cost.energy_per_synop_j,
                 "neuron updates": steps * report.neuron_updates_per_step * cost.energy_per_neuron_update_j}
    static_power = ((cost.static_power_per_chip_w or 0.0) * report.chips_used
                    + (cost.static_power_per_core_w or 0.0) * report.cores_used)
    if cost.static_power_per_chip_w is None and cost.static_power_per_core_w is None:
        report.notes.append(f"{hw.name} gives no static power: not included in the energy")
    elif report.time_s is not None:
        breakdown["static"] = report.time_s * static_power
    report.energy_breakdown_j = breakdown
    report.energy_j = sum(breakdown.values())


def unsupported_features(net: Network, hw: HardwareConfig) -> list[str]:
    """IR features the network uses that ``hw`` cannot express (one line each).
    The mapper reports them; backends and the quantizer decide whether to refuse."""
    f = hw.features
    out = []
    for pop in net.populations:
        where = f"population '{pop.name}'"
        if pop.spike == "graded" and not f.graded_spikes:
            out.append(f"{where} emits graded spikes; {hw.name} has binary spikes only")
        if pop.reset == "subtract" and not f.subtractive_reset:
            out.append(f"{where} uses a subtractive reset; {hw.name} has none")
        if pop.reset == "to_value" and (f.reset_to_value == "none" or
                                        (f.reset_to_value == "zero" and np.any(pop.reset_value != 0))):
            out.append(f"{where} resets to nonzero values; {hw.name} resets "
                       f"{'to 0 only' if f.reset_to_value == 'zero' else 'never'}")
        if (np.any(np.isfinite(pop.v_min)) or np.any(np.isfinite(pop.v_max))) and not f.state_clamp:
            out.append(f"{where} clamps its state (v_min/v_max); {hw.name} cannot")
        if pop.max_spikes_per_step is not None and not f.max_spikes_per_step_rule:
            out.append(f"{where} limits spikes per step to {pop.max_spikes_per_step}; "
                       f"{hw.name} has no such rule")
    for proj in net.projections:
        if proj.delay < f.min_delay_steps:
            out.append(f"projection '{proj.name}' has delay {proj.delay}; {hw.name}'s minimum is "
                       f"{f.min_delay_steps} (a backend must split each IR step into chip steps)")
        if f.max_delay_steps is not None and proj.delay > f.max_delay_steps:
            out.append(f"projection '{proj.name}' has delay {proj.delay}; "
                       f"{hw.name}'s maximum is {f.max_delay_steps}")
    return out
