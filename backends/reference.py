"""The reference backend: docs/ir.md executed literally, in numpy.

Every other backend is tested against this one, so it supports every IR
feature and follows the normative formulas in their written order:

    I = g_b(t)·b + Σ_j g_j(t)·(W_j e_j(t − d_j));   u = δ⊙v + I;   v = min(max(u, v_min), v_max)

(the gain multiplies each matvec result, since gains change over time). The
inner loop is vectorised per population and projection; nothing loops over
neurons or spikes in Python. Two devices keep it fast without changing
results:

* Emission ring buffers remember which entries are nonzero, so a silent step
  costs nothing downstream and a sparse one (few spikes) adds only the columns
  of the neurons that fired (bit-identical to the full matvec in float64, up to
  the sign of zero).
* Buffers are preallocated and updated with ``out=`` forms.

Option ``kernel="numba"`` runs the same step as one compiled call
(``backends/_kernels.py``), bit-identical to this numpy code, which stays the oracle.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import scipy.sparse as sp

from snn_compile.errors import CapabilityError, InputError
from snn_compile.ir import AdaptiveRestart, Network, save_network
from snn_compile.runtime import emission_of_state, ControlRuntime, GainState
from snn_compile.trace import DEFAULT_MAX_EVENTS, EventLog, Trace, default_record_every

from .base import FEATURES, Backend, Capabilities, StopCallback

try:  # y += A·x for CSR without allocating; the public fallback allocates a result
    from scipy.sparse._sparsetools import csr_matvec as _csr_matvec
except ImportError:  # pragma: no cover - private scipy API moved
    _csr_matvec = None

_EMPTY = np.empty(0, dtype=np.intp)


def clear_emission_slot(ring: np.ndarray, ring_fired, slot: int) -> None:
    """Zero row ``slot`` of an emission ring: only the entries its fired list names, or
    the whole row when the list is None (maybe dense). The float and integer executors."""
    fired = ring_fired[slot]
    if fired is None:
        ring[slot].fill(0)
    elif fired.size:
        ring[slot][fired] = 0
    ring_fired[slot] = _EMPTY

#: Default for the ``event_fraction`` option: a source whose fraction of firing
#: neurons is at most this is propagated column by column instead of by a full matvec.
EVENT_FRACTION = 0.05

#: The default state samples may not exceed this many bytes; the interval grows instead.
SAMPLE_BUDGET_BYTES = 256 * 2**20


class _Population:
    """Run-time arrays of one population and its update (docs/ir.md §2, steps 1–6)."""

    def __init__(self, pop, dtype, ring_size: int, gains: GainState, max_events: int):
        n = pop.size
        self.name, self.size = pop.name, n
        as_dtype = lambda a: np.ascontiguousarray(a, dtype=dtype)  # noqa: E731
        self.v = as_dtype(pop.v_init).copy()
        self.decay = as_dtype(pop.decay)
        self.unit_decay = bool(np.all(pop.decay == 1.0))
        self.bias = as_dtype(pop.bias)
        self.has_bias = bool(np.any(pop.bias != 0.0))
        self.bias_gain = gains.index(pop.bias_gain)
        self.v_min, self.v_max = as_dtype(pop.v_min), as_dtype(pop.v_max)
        self.clamp_low = bool(np.any(np.isfinite(pop.v_min)))
        self.clamp_high = bool(np.any(np.isfinite(pop.v_max)))
        self.threshold = as_dtype(pop.threshold)
        self.reset_value = as_dtype(pop.reset_value)
        self.reset = pop.reset
        self.binary = pop.spike == "binary"
        self.excess_payload = pop.spike == "graded" and pop.payload == "excess"
        cap = pop.max_spikes_per_step
        self.max_spikes = cap if cap is not None and cap < n else None   # a cap ≥ n never binds
        # Every neuron fires every update: no comparison, and the emission is dense.
        self.fires_all = bool(np.all(np.isneginf(pop.threshold))) and self.max_spikes is None
        # docs/ir.md §2: a firing neuron is a spike if its threshold is finite or spikes are binary.
        eligible = np.isfinite(pop.threshold) | self.binary
        self.spike_neurons = None if eligible.all() else np.flatnonzero(eligible)
        self.counts_spikes = bool(eligible.any())
        self.spike_mask = eligible
        self.spike_counts = np.zeros(n, dtype=np.int64)
        self.events = EventLog(max_events) if pop.record else None
        self.updates = 0
        self.last_update = -1

        self.I = np.zeros(n, dtype=dtype)                 # input of the current update
        self.u = np.zeros(n, dtype=dtype)                 # pre-clamp state of the last update
        self.fire_mask = np.zeros(n, dtype=bool)
        self.all_neurons = np.arange(n)
        self.ring_size = ring_size
        self.ring = np.zeros((ring_size, n), dtype=dtype)  # e_p(t) lives in row t mod ring_size
        # Per ring row: indices of its nonzero entries, or None when it may be dense.
        self.ring_fired: list = [_EMPTY] * ring_size
        if pop.emit_initial_state:      # docs/ir.md §2: e_p(−1) is what v_init emits
            self.ring[-1 % ring_size] = emission_of_state(pop, self.v)
            self.ring_fired[-1 % ring_size] = None
        self.incoming: list[_Projection] = []

    # ------------------------------------------------------------ emission buffer
    def clear_slot(self, t: int):
        """This population does not update at step t: e_p(t) = 0."""
        clear_emission_slot(self.ring, self.ring_fired, t % self.ring_size)

    # ------------------------------------------------------------ one update
    def update(self, t: int, gain_values: list):
        I = self.I
        if self.has_bias:
            np.multiply(self.bias, gain_values[self.bias_gain], out=I)
        else:
            I.fill(0.0)
        for proj in self.incoming:
            proj.accumulate(t, I, gain_values)

        v = self.v
        clamped = self.clamp_low or self.clamp_high
        u = self.u if clamped else v                     # unclamped: integrate in place
        if self.unit_decay:
            np.add(v, I, out=u)
        else:
            np.multiply(self.decay, v, out=u)
            u += I
        if clamped:
            if self.clamp_low:
                np.maximum(u, self.v_min, out=v)
                if self.clamp_high:
                    np.minimum(v, self.v_max, out=v)
            else:
                np.minimum(u, self.v_max, out=v)
        self.updates += 1
        self.last_update = t

        slot = t % self.ring_size
        e = self.ring[slot]
        if self.fires_all:
            if self.binary:
                e.fill(1.0)
            elif self.excess_payload:
                np.subtract(v, self.threshold, out=e)
            else:
                np.copyto(e, v)
            self.ring_fired[slot] = None
            if self.counts_spikes:
                self._count(t, self.all_neurons, e)
            if self.reset == "subtract":
                v -= self.reset_value
            elif self.reset == "to_value":
                np.copyto(v, self.reset_value)
            return

        np.greater(v, self.threshold, out=self.fire_mask)
        fired = self.fire_mask.nonzero()[0]
        if self.max_spikes is not None and fired.size > self.max_spikes:
            fired = _largest_excess(fired, v, self.threshold, self.max_spikes)
        previous = self.ring_fired[slot]
        if previous is None:
            e.fill(0.0)
        elif previous.size:
            e[previous] = 0.0
        self.ring_fired[slot] = fired
        if not fired.size:
            return
        if self.binary:
            e[fired] = 1.0
        elif self.excess_payload:
            e[fired] = v[fired] - self.threshold[fired]
        else:
            e[fired] = v[fired]
        if self.counts_spikes:
            self._count(t, fired, e)
        if self.reset == "subtract":
            v[fired] -= self.reset_value[fired]
        elif self.reset == "to_value":
            v[fired] = self.reset_value[fired]

    def _count(self, t: int, fired: np.ndarray, e: np.ndarray):
        if self.spike_neurons is not None:
            fired = fired[self.spike_mask[fired]]
        self.spike_counts[fired] += 1
        if self.events is not None and fired.size:
            self.events.append(t, fired, e[fired])

    def clamp_excess(self) -> np.ndarray:
        """c = u − clamp(u) of the last update (recomputed from u, so restarts cannot stale it)."""
        if not (self.clamp_low or self.clamp_high) or self.updates == 0:
            return np.zeros(self.size, dtype=self.v.dtype)
        return self.u - np.minimum(np.maximum(self.u, self.v_min), self.v_max)


def _largest_excess(fired: np.ndarray, v: np.ndarray, threshold: np.ndarray, k: int) -> np.ndarray:
    """The k firing neurons with the largest v − θ; ties go to the lowest index."""
    excess = v[fired] - threshold[fired]
    if k == 1:
        return fired[np.argmax(excess)][None]            # argmax returns the first maximum
    kth = np.partition(excess, excess.size - k)[excess.size - k]   # k-th largest value
    keep = excess > kth
    ties = np.flatnonzero(excess == kth)[: k - int(keep.sum())]  # fired is sorted: lowest first
    keep[ties] = True
    return fired[keep]


class _Projection:
    """W, its gain and delay; adds g·(W e_src(t − d)) to the target's input."""

    def __init__(self, proj, source: _Population, target_size: int, dtype, gains: GainState,
                 event_fraction: float):
        self.name = proj.name
        self.source, self.delay = source, proj.delay
        self.gain = gains.index(proj.gain)
        self.sparse = sp.issparse(proj.weights) and _csr_matvec is not None
        W = proj.weights
        if self.sparse:
            W = sp.csr_matrix(W, dtype=dtype)
            self.shape = W.shape
            self.indptr, self.indices, self.data = W.indptr, W.indices, W.data
        else:
            self.W = np.ascontiguousarray(W.toarray() if sp.issparse(W) else W, dtype=dtype)
        self.tmp = np.zeros(target_size, dtype=dtype)
        # Column access for sparse emissions, only where the source can emit sparsely.
        self.event_limit = -1 if source.fires_all else int(event_fraction * source.size)
        if self.event_limit >= 1:
            if sp.issparse(proj.weights):
                C = sp.csc_matrix(proj.weights, dtype=dtype)
                C.sort_indices()
                self.col_ptr, self.col_rows, self.col_data = C.indptr, C.indices, C.data
                self.dense_columns = None
            else:
                self.dense_columns = np.ascontiguousarray(self.W.T)   # row k = column k of W

    def accumulate(self, t: int, I: np.ndarray, gain_values: list):
        src = self.source
        slot = (t - self.delay) % src.ring_size
        fired = src.ring_fired[slot]
        if fired is not None:
            if fired.size == 0:
                return                                    # nothing emitted: adds exactly 0
            if fired.size <= self.event_limit:
                self._add_columns(fired, src.ring[slot], I, gain_values[self.gain])
                return
        tmp = self.tmp
        if self.sparse:
            tmp.fill(0.0)
            _csr_matvec(self.shape[0], self.shape[1], self.indptr, self.indices, self.data,
                        src.ring[slot], tmp)
        else:
            np.dot(self.W, src.ring[slot], out=tmp)
        g = gain_values[self.gain]
        if g != 1.0:
            tmp *= g
        I += tmp

    def _add_columns(self, fired: np.ndarray, e: np.ndarray, I: np.ndarray, g: float):
        """Σ_k W[:, k] e[k] over the fired k only; rows sum in ascending k like CSR does."""
        if self.dense_columns is not None:
            col_sum = e[fired] @ self.dense_columns[fired]
            if g != 1.0:
                col_sum *= g
            I += col_sum
            return
        ptr = self.col_ptr
        if fired.size == 1:
            k = fired[0]
            start, end = ptr[k], ptr[k + 1]
            values = self.col_data[start:end] * e[k]
            if g != 1.0:
                values *= g
            I[self.col_rows[start:end]] += values        # rows of one column are distinct
            return
        # Positions of every stored entry of the fired columns, column after column
        # (ndarray methods rather than np.* wrappers: this path is call-overhead bound).
        starts = ptr.take(fired)
        lengths = ptr.take(fired + 1) - starts
        ends = lengths.cumsum()
        total = int(ends[-1])
        if total == 0:
            return
        positions = np.arange(total)
        positions += (starts - ends + lengths).repeat(lengths)
        values = self.col_data.take(positions)
        values *= e.take(fired).repeat(lengths)
        col_sum = np.bincount(self.col_rows.take(positions), values, I.size)
        if g != 1.0:
            col_sum *= g
        I += col_sum


class _Emissions:
    """The ``EmissionAccess`` control rules get: rows of the ring buffers."""

    def __init__(self, pops: dict[str, _Population], clock):
        self._pops, self._clock = pops, clock

    def _slot(self, population: str, lag: int) -> tuple[_Population, int]:
        pop = self._pops[population]
        if not 0 <= lag < pop.ring_size:
            raise ValueError(f"population {population!r} keeps emissions of the last "
                             f"{pop.ring_size} step(s) only (lag {lag} requested)")
        return pop, (self._clock() - lag) % pop.ring_size

    def emission(self, population: str, lag: int) -> np.ndarray:
        pop, slot = self._slot(population, lag)
        view = pop.ring[slot].view()
        view.flags.writeable = False
        return view

    def set_emission(self, population: str, values, lag: int) -> None:
        pop, slot = self._slot(population, lag)
        pop.ring[slot][...] = values
        pop.ring_fired[slot] = None                       # may now be dense

    def last_update(self, population: str) -> int:
        return self._pops[population].last_update

    def depth(self, population: str) -> int:
        return self._pops[population].ring_size


class ReferenceBackend(Backend):
    name = "reference"
    description = "numpy simulator that defines the IR semantics (float64, or float32 on request)"

    OPTIONS = ("dtype", "check_every", "max_events", "event_fraction", "sample_populations", "kernel")

    def capabilities(self) -> Capabilities:
        return Capabilities(features=frozenset(FEATURES), dtypes=("float64", "float32"),
                            notes="executes every IR feature; the semantics' executable form "
                                  "(a quantized network in int64, backends/reference_fixed.py)")

    def run(self, net: Network, steps: int, *, record_every: Optional[int] = None,
            progress: bool = False, stop: Optional[StopCallback] = None, dtype="float64",
            check_every: int = 100, max_events: int = DEFAULT_MAX_EVENTS,
            event_fraction: float = EVENT_FRACTION, sample_populations=None, kernel: str = "auto",
            **options) -> Trace:
        """Options: ``dtype`` (float64/float32), ``check_every`` (steps between
        ``stop`` polls), ``max_events`` (stored spike events per recorded
        population), ``event_fraction`` (see ``EVENT_FRACTION``),
        ``sample_populations`` (names to sample; default all), ``kernel``
        (``numpy``, ``numba``: one compiled call per step with bit-identical
        results, ``auto``: numba when installed and the run is long enough to
        repay loading it; see ``_kernel_stepper``)."""
        if options:
            raise InputError(f"unknown option(s) {sorted(options)} for target 'reference'; "
                             f"known: {', '.join(self.OPTIONS)}", field="options")
        if net.fixed_point is not None:   # a quantized network runs in integers (docs/ir.md §5)
            from .reference_fixed import run_fixed
            self.check(net)
            return run_fixed(net, steps, record_every=record_every, progress=progress, stop=stop,
                             check_every=check_every, max_events=max_events,
                             sample_populations=sample_populations, backend_name=self.name,
                             kernel=kernel)
        self.check(net)
        steps = int(steps)
        if steps < 0:
            raise InputError("must be ≥ 0", field="steps")
        dtype = np.dtype(dtype)
        if dtype not in (np.float64, np.float32):
            raise InputError(f"dtype must be float64 or float32, got {dtype}", field="dtype")
        check_every = max(1, int(check_every))

        gains = GainState(net.gains)
        ring_sizes = {p.name: 1 for p in net.populations}
        for proj in net.projections:   # e(t − d) must survive until read: d + 1 rows
            ring_sizes[proj.source] = max(ring_sizes[proj.source], proj.delay + 1)
        pops = {p.name: _Population(p, dtype, ring_sizes[p.name], gains, max_events)
                for p in net.populations}
        for proj in net.projections:
            pops[proj.target].incoming.append(
                _Projection(proj, pops[proj.source], pops[proj.target].size, dtype, gains,
                            event_fraction))
        stepper = _kernel_stepper(kernel, net, pops, steps, dtype)   # before anything holds p.v

        clock = [0]
        controls = ControlRuntime(net, {name: p.v for name, p in pops.items()}, gains,
                                  _Emissions(pops, lambda: clock[0]))
        phases = [tuple(step) for step in net.schedule]
        active = [[pops[name] for name in phase] for phase in phases]
        idle = [[p for name, p in pops.items() if name not in phase] for phase in phases]

        record_every, sample_steps, sample_states = sample_buffers(
            {name: p.size for name, p in pops.items()}, sample_populations, steps, record_every, dtype)
        n_samples = sample_steps.size

        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=steps, desc=f"reference {net.family}", unit="step")
        bar_every = max(1, steps // 200)

        def snapshot() -> Trace:
            """The run so far as a Trace without events or samples (for stop callbacks)."""
            return Trace(
                steps=taken,
                final_state={n: p.v.copy() for n, p in pops.items()},
                clamp_excess={n: p.clamp_excess() for n, p in pops.items()},
                averages={n: a.mean.copy() for n, a in controls.averages.items()},
                spike_counts={n: p.spike_counts.copy() for n, p in pops.items()},
                updates={n: p.updates for n, p in pops.items()},
                gains_final={name: float(used_gains[i]) for i, name in enumerate(gains.names)},
                control_log=controls.context.log, backend=self.name, dtype=dtype.name,
                meta={"family": net.family, "neurons": net.neuron_count, "synapses": net.synapse_count})

        controls.context.snapshot = snapshot
        run_controls = controls.active
        n_phases = len(phases)
        taken = 0
        stopped = False
        used_gains = gains.values(0)
        started = time.perf_counter()
        # The numba kernel runs several steps per call when, between the host's interventions
        # (restart checks, stop polls, samples), the control rules only advance their epoch
        # counters and so read no state (docs/ir.md §4): chunks end at those steps.
        chunks = None
        if stepper is not None and all(isinstance(c, AdaptiveRestart) for c in net.controls):
            chunks = [c.check_every for c in net.controls] + [check_every] * (stop is not None) \
                + [record_every] * bool(n_samples) + [bar_every] * (bar is not None)
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported, not warned
            t = 0
            while t < steps:
                if chunks is not None:
                    end = min([steps, t + stepper.chunk_max] + [(t // p + 1) * p for p in chunks])
                    table = gains.table(t, end, out=stepper.gain_rows)
                    if run_controls:                     # steps before the last: counters only
                        controls.after_counting_steps(t, end - 1)
                    stepper.run_chunk(t, table)
                    t, used_gains = end - 1, table[-1].tolist()
                    k = t % n_phases
                else:
                    k = t % n_phases
                    used_gains = gains.values(t)
                    if stepper is not None:
                        stepper.step(t, k, used_gains)
                    else:
                        for pop in idle[k]:
                            pop.clear_slot(t)
                        for pop in active[k]:
                            pop.update(t, used_gains)
                    if run_controls or stop is not None:   # keep g(t) even if a rule rescales a gain
                        used_gains = list(used_gains)
                taken = t + 1
                if run_controls:
                    clock[0] = t
                    controls.after_step(t, phases[k])
                if n_samples and taken % record_every == 0:
                    row = taken // record_every - 1
                    sample_steps[row] = t
                    for name, states in sample_states.items():
                        states[row] = pops[name].v
                if stop is not None and taken % check_every == 0:
                    clock[0] = t
                    controls.context.step = t
                    if stop(t, controls.context):
                        stopped = True
                        controls.context.record("stop", reason="stop callback")
                        break
                if bar is not None and taken % bar_every == 0:
                    bar.update(bar_every)
                t += 1
        wall = time.perf_counter() - started
        if bar is not None:
            bar.update(taken - bar.n)
            bar.close()

        trace = finish_trace(snapshot(), recorded_events(pops), sample_steps, sample_states, taken,
                             record_every, wall, stopped)
        trace.meta["kernel"] = "numpy" if stepper is None else "numba"
        return trace

    def emit(self, net: Network, out_dir) -> list[Path]:
        """Nothing to generate: the artifact is the IR itself, saved under ``out_dir/ir``."""
        directory = save_network(net, Path(out_dir) / "ir")
        return sorted(directory.iterdir())


#: ``kernel="auto"`` picks numba when the time it saves, estimated as steps × (10 µs +
#: 0.5 ns per neuron and synapse), exceeds this many seconds: importing numba and loading
#: its cached kernels takes ~0.35 s (the very first use compiles them: ~15 s, once).
AUTO_NUMBA_SECONDS = 0.5


def wants_numba(kernel: str, saved_seconds: float) -> bool:
    """Whether a run with the ``kernel`` option (numpy, numba, auto) uses numba; ``auto``
    does when it is installed and ``saved_seconds`` (the caller's estimate of what the
    kernel saves) reaches ``AUTO_NUMBA_SECONDS``."""
    if kernel not in ("auto", "numba", "numpy"):
        raise InputError(f"must be 'auto', 'numba' or 'numpy', got {kernel!r}", field="kernel")
    if kernel == "numpy":
        return False
    import importlib.util
    if importlib.util.find_spec("numba") is None:
        if kernel == "auto":
            return False
        raise CapabilityError("kernel='numba' needs the numba package (pip install numba)")
    return kernel == "numba" or saved_seconds >= AUTO_NUMBA_SECONDS


def _kernel_stepper(kernel: str, net: Network, pops: dict, steps: int, dtype):
    """The compiled per-step executor, or None for the numpy path (the oracle)."""
    if not wants_numba(kernel, steps * (1e-5 + 5e-10 * (net.neuron_count + net.synapse_count))):
        return None
    from ._kernels import NumbaStepper, supports
    reason = supports(pops)
    if reason is not None:
        if kernel == "auto":
            return None
        raise CapabilityError(f"kernel='numba' cannot run this network: {reason}")
    return NumbaStepper(pops, net.schedule, dtype, len(net.gains) + 1)


def sample_buffers(sizes: dict, sample_populations, steps: int, record_every, dtype=np.float64):
    """``(record_every, sample_steps, sample_states)`` of a run: the populations to sample
    (default all, by name → size), at most ~1000 samples and SAMPLE_BUDGET_BYTES by default."""
    sampled = list(sizes) if sample_populations is None else list(sample_populations)
    unknown = [name for name in sampled if name not in sizes]
    if unknown:
        raise InputError(f"unknown population(s) {unknown}", field="sample_populations")
    if record_every is None:
        record_every = _default_sample_interval(steps, sum(sizes[n] for n in sampled) * np.dtype(dtype).itemsize)
    record_every = int(record_every)
    n_samples = steps // record_every if record_every > 0 else 0
    states = {n: np.zeros((n_samples, sizes[n]), dtype=dtype) for n in sampled} if n_samples else {}
    return record_every, np.zeros(n_samples, dtype=np.int64), states


def recorded_events(pops: dict) -> dict:
    """Population name → its EventLog, for the populations that record spikes."""
    return {n: p.events for n, p in pops.items() if p.events is not None}


def finish_trace(trace: Trace, event_logs: dict, sample_steps, sample_states: dict, taken: int,
                 record_every: int, wall: float, stopped: bool) -> Trace:
    """Complete a run's final snapshot with its events, state samples and timing
    (every Python executor: float, integer, nengo)."""
    kept = taken // record_every if sample_states else 0
    trace.events = {n: log.arrays() for n, log in event_logs.items()}
    trace.events_truncated = any(log.truncated for log in event_logs.values())
    trace.samples = {n: (sample_steps[:kept].copy(), s[:kept].copy()) for n, s in sample_states.items()}
    trace.record_every = record_every if sample_states else 0
    trace.wall_time, trace.stopped_early = wall, stopped
    return trace


def _default_sample_interval(steps: int, bytes_per_sample: int) -> int:
    """At most ~1000 samples, and no more than SAMPLE_BUDGET_BYTES of them."""
    interval = default_record_every(steps)
    if bytes_per_sample * (steps // interval) > SAMPLE_BUDGET_BYTES:
        interval = math.ceil(steps / max(1, SAMPLE_BUDGET_BYTES // max(bytes_per_sample, 1)))
    return interval


def simulate(net: Network, steps: int, **options) -> Trace:
    """Run ``net`` on the reference backend (see ``ReferenceBackend.run`` for options)."""
    return ReferenceBackend().run(net, steps, **options)
