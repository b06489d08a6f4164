"""Fixed-point reference execution: docs/ir.md §5 in int64 numpy, bit-exact.

The reference backend dispatches here when ``net.fixed_point`` is set. Every
population state, input and emission is an int64 array saturated to the widths
the ``FixedPointSpec`` declares; shifts are arithmetic (floor) with the
round-half-up offset of §5. Gains are computed in float by the shared
``GainState`` (docs/ir.md §2, §2.1) and converted to (mantissa, exponent) pairs
by ``quantize_gain`` once per step, as every backend must.

Control rules run on the host in float (§5.6): before they run, each state is
dequantized (v_int·2^−f) into a float mirror; whatever a rule writes there is
rounded back to the integer state afterwards. The trace therefore has the same
type and units as a float run (``decode_solution`` works unchanged); the raw
integer states and the saturation statistics are in ``trace.meta["fixed_point"]``.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import scipy.sparse as sp

from snn_compile.errors import CapabilityError, InputError
from snn_compile.ir import AdaptiveRestart, Network
from snn_compile.ir.fixed_point import (THRESHOLD_ALWAYS, THRESHOLD_NEVER, decay_state, quantize_gain,
                                        round_nearest, saturate, shift_round)
from snn_compile.runtime import ControlRuntime, GainState
from snn_compile.trace import DEFAULT_MAX_EVENTS, EventLog, Trace

# reference.py imports this module only inside ReferenceBackend.run: no import cycle
from .reference import (clear_emission_slot, finish_trace, recorded_events, sample_buffers,
                        wants_numba)

try:  # y += A·x for CSR without scipy's dispatch overhead (int64 data is supported)
    from scipy.sparse._sparsetools import csr_matvec as _csr_matvec
except ImportError:  # pragma: no cover - private scipy API moved
    _csr_matvec = None

#: Exact integer arithmetic in float64 BLAS is safe while every partial sum stays below this.
_FLOAT_EXACT = 2.0 ** 52
#: Products g_mant · accumulator must stay below this in int64 (shift_round's precondition).
_PRODUCT_LIMIT = 2 ** 61
#: A source firing at most this fraction of its neurons is propagated column by column.
EVENT_FRACTION = 0.05


def _limit(bits: Optional[int]) -> int:
    return 2 ** 62 if bits is None else 2 ** (bits - 1) - 1


class _Stats:
    """Largest magnitudes reached and saturation counts of one population."""

    def __init__(self):
        self.max_state = 0            # |u| before saturation
        self.max_input = 0            # |I| before saturation (after_shift) or |a| (before_shift)
        self.state_saturations = 0
        self.input_saturations = 0
        # neuron updates whose saturation the clamp hid: the value was beyond a clamp
        # bound anyway, so v is what it would have been (only the clamp excess differs)
        self.masked_by_clamp = 0
        self.unmasked = 0             # saturations that (may) have changed v

    def to_dict(self, pop) -> dict:
        return {"max_abs_state": int(self.max_state), "state_limit": pop.state_limit,
                "max_abs_input": int(self.max_input), "state_saturations": int(self.state_saturations),
                "input_saturations": int(self.input_saturations),
                "masked_by_clamp": int(self.masked_by_clamp), "unmasked_saturations": int(self.unmasked)}


class _Population:
    def __init__(self, pop, fixed, spec, ring_size: int, gains: GainState, max_events: int,
                 kernels=None):
        """``kernels``: the ``_kernels_fixed`` module (compiled steps 1 and 3–5), or None."""
        n = pop.size
        self.kernels = kernels
        self.kernel_stats = np.zeros(6, np.int64)
        self.name, self.size, self.fixed = pop.name, n, fixed
        self.v = fixed.v_init.copy()
        self.u = self.v.copy()
        self.lsb = fixed.lsb
        self.state_bits, self.state_limit = fixed.state_bits, fixed.state_limit
        self.acc_bits = spec.accumulator_bits
        self.saturate_input = spec.accumulator_stage == "after_shift"
        self.v_min, self.v_max = fixed.v_min, fixed.v_max
        self.threshold = fixed.threshold
        # ranking v − θ with sentinels must not overflow: clip them to ±2^62
        self.rank_threshold = np.clip(fixed.threshold, -2 ** 62, 2 ** 62)
        self.reset, self.reset_value = pop.reset, fixed.reset_value
        self.decay, self.decay_bits, self.decay_form = fixed.decay, fixed.decay_bits, fixed.decay_form
        identity_code = 0 if fixed.decay_form == "complement" else 1 << fixed.decay_bits
        self.unit_decay = bool(np.all(fixed.decay == identity_code))
        self.gain_bits = spec.gain_mantissa_bits
        self.bias_gain = gains.index(pop.bias_gain)
        self.has_bias = bool(np.any(fixed.bias_mantissa != 0))
        self.bias_mantissa, self.bias_exponent = fixed.bias_mantissa, fixed.bias_exponent
        if self.has_bias and pop.bias_gain is not None:
            bound = int(np.abs(fixed.bias_mantissa).max()) << (self.gain_bits - 1)
            if bound >= _PRODUCT_LIMIT:
                raise CapabilityError(f"population '{pop.name}': bias mantissa × gain mantissa "
                                      f"may overflow int64")
        # a bias without gain is constant (g = 1 is exact in every gain format, docs/ir.md §5.1)
        self.constant_bias = (shift_round(fixed.bias_mantissa, -fixed.bias_exponent)
                              if self.has_bias and pop.bias_gain is None else None)
        self.binary = pop.spike == "binary"
        self.excess_payload = pop.spike == "graded" and pop.payload == "excess"
        self.payload_shift = fixed.payload_shift
        # sat_P of docs/ir.md §5.5 (no payload width: the state's own range bounds it)
        self.payload_limit = 1 if self.binary else _limit(fixed.payload_bits)
        # largest |payload| an update can emit (an excess v − θ may reach twice the state range)
        self.payload_bound = 1 if self.binary else min(self.payload_limit, 2 * self.state_limit)
        # real value of one emitted unit (binary: 1)
        self.payload_unit = 1.0 if self.binary else 2.0 ** -fixed.payload_exponent
        cap = pop.max_spikes_per_step
        self.max_spikes = cap if cap is not None and cap < n else None
        self.fires_all = bool(np.all(fixed.threshold == THRESHOLD_ALWAYS)) and self.max_spikes is None
        self.fires_never = bool(np.all(fixed.threshold == THRESHOLD_NEVER))
        eligible = np.isfinite(pop.threshold) | self.binary
        self.spike_mask = eligible
        self.spike_neurons = None if eligible.all() else np.flatnonzero(eligible)
        self.counts_spikes = bool(eligible.any())
        self.spike_counts = np.zeros(n, dtype=np.int64)
        self.events = EventLog(max_events) if pop.record else None
        self.updates, self.last_update = 0, -1
        self.all_neurons = np.arange(n)
        self.ring_size = ring_size
        self.ring = np.zeros((ring_size, n), dtype=np.int64)
        self.ring_fired: list = [np.empty(0, dtype=np.intp)] * ring_size   # None: maybe dense
        self.incoming: list = []
        self.stats = _Stats()
        self.mirror = self.v * self.lsb                                    # float view for the host
        if pop.emit_initial_state:   # docs/ir.md §2: e_p(−1) is what v_init emits (no cap, not a spike)
            fired = self.all_neurons if self.fires_all else (self.v > self.threshold).nonzero()[0]
            self.ring[-1 % ring_size][fired] = self.payload(self.v[fired], fired)
            self.ring_fired[-1 % ring_size] = None

    # ------------------------------------------------------------ emission buffer
    def clear_slot(self, t: int):
        """This population does not update at step t: e_p(t) = 0."""
        clear_emission_slot(self.ring, self.ring_fired, t % self.ring_size)

    def payload(self, v: np.ndarray, idx) -> np.ndarray:
        """Emitted integers of the neurons ``idx`` with states ``v`` (§5.5)."""
        if self.binary:
            return np.ones(len(v), dtype=np.int64)
        value = v - self.threshold[idx] if self.excess_payload else v
        p = shift_round(value, self.payload_shift)
        return np.clip(p, -self.payload_limit, self.payload_limit)

    # ------------------------------------------------------------ one update (§5.3–5.5)
    def update(self, t: int, qgains: list):
        stats = self.stats
        if self.constant_bias is not None:
            I = self.constant_bias.copy()
        elif self.has_bias:
            g_m, g_e = qgains[self.bias_gain]
            if self.kernels is not None:
                I = np.empty(self.size, dtype=np.int64)
                self.kernels.scaled_bias(I, g_m, g_e, self.bias_mantissa, self.bias_exponent)
            else:
                I = shift_round(g_m * self.bias_mantissa, -(g_e + self.bias_exponent))
        else:
            I = np.zeros(self.size, dtype=np.int64)
        for proj in self.incoming:
            proj.accumulate(t, I, qgains, stats)
        if self.kernels is not None:
            self._integrate_compiled(I)
        else:
            self._integrate(I)
        v = self.v
        self.updates += 1
        self.last_update = t

        slot = t % self.ring_size
        e = self.ring[slot]
        if self.fires_all:
            if self.kernels is not None and not self.binary:
                self.kernels.emit_all(e, v, self.threshold, self.excess_payload, self.payload_shift,
                                      self.payload_limit)
            else:
                e[:] = self.payload(v, self.all_neurons)
            self.ring_fired[slot] = None
            fired = self.all_neurons
        else:
            previous = self.ring_fired[slot]
            if previous is None:
                e.fill(0)
            elif previous.size:
                e[previous] = 0
            fired = (v > self.threshold).nonzero()[0] if not self.fires_never else self.all_neurons[:0]
            if self.max_spikes is not None and fired.size > self.max_spikes:
                fired = _largest_excess(fired, v, self.rank_threshold, self.max_spikes)
            self.ring_fired[slot] = fired
            if not fired.size:
                return
            e[fired] = self.payload(v[fired], fired)
        if self.counts_spikes:
            counted = fired if self.spike_neurons is None else fired[self.spike_mask[fired]]
            self.spike_counts[counted] += 1
            if self.events is not None and counted.size:
                self.events.append(t, counted, e[counted] * self.payload_unit)
        if self.reset == "subtract":
            v[fired] = saturate(v[fired] - self.reset_value[fired], self.state_bits)
        elif self.reset == "to_value":
            v[fired] = self.reset_value[fired]

    def _integrate_compiled(self, I: np.ndarray):
        """``_integrate`` in one compiled pass, v and u updated in place."""
        stats, values = self.stats, self.kernel_stats
        self.kernels.integrate(self.v, self.u, I, self.decay, self.decay_bits,
                               self.decay_form == "complement", self.unit_decay, self.v_min, self.v_max,
                               self.state_limit, _limit(self.acc_bits) if self.saturate_input else -1,
                               values)
        max_input, input_sat, max_state, state_sat, masked, unmasked = (int(x) for x in values)
        if self.saturate_input:
            stats.max_input = max(stats.max_input, max_input)
        stats.max_state = max(stats.max_state, max_state)
        stats.input_saturations += input_sat
        stats.state_saturations += state_sat
        stats.masked_by_clamp += masked
        stats.unmasked += unmasked

    def _integrate(self, I: np.ndarray):
        """Steps 3–4 of docs/ir.md §5: I (saturated) → u = leak(v) + I (saturated) → v = clamp(u)."""
        stats = self.stats
        high = low = None                 # neurons saturated upwards / downwards this update
        if self.saturate_input and self.size:
            peak = int(np.abs(I).max())
            stats.max_input = max(stats.max_input, peak)
            limit = _limit(self.acc_bits)
            if peak > limit:
                high, low = I > limit, I < -limit
                stats.input_saturations += int(np.count_nonzero(high | low))
                I = saturate(I, self.acc_bits)
        u = I if self.unit_decay else decay_state(self.v, self.decay, self.decay_bits, self.decay_form) + I
        if self.unit_decay:
            u += self.v
        if self.size:
            peak = int(np.abs(u).max())
            stats.max_state = max(stats.max_state, peak)
            if peak > self.state_limit:
                up, down = u > self.state_limit, u < -self.state_limit
                stats.state_saturations += int(np.count_nonzero(up | down))
                high, low = (up, down) if high is None else (high | up, low | down)
                u = saturate(u, self.state_bits)
        self.u = u
        v = np.minimum(np.maximum(u, self.v_min), self.v_max)
        self.v = v
        if high is not None:
            masked = ((high & (v == self.v_max) & (self.v_max < self.state_limit))
                      | (low & (v == self.v_min) & (self.v_min > -self.state_limit)))
            hidden = int(np.count_nonzero(masked))
            stats.masked_by_clamp += hidden
            stats.unmasked += int(np.count_nonzero(high | low)) - hidden

    def clamp_excess(self) -> np.ndarray:
        """c = u − clamp(u) of the last update, in real units."""
        if self.updates == 0:
            return np.zeros(self.size)
        return (self.u - np.minimum(np.maximum(self.u, self.v_min), self.v_max)) * self.lsb

    def set_state_real(self, values: np.ndarray):
        """Host write-back (§5.6): round to the state grid and saturate."""
        self.v = saturate(round_nearest(np.asarray(values, dtype=np.float64) / self.lsb), self.state_bits)


def _largest_excess(fired: np.ndarray, v: np.ndarray, threshold: np.ndarray, k: int) -> np.ndarray:
    """The k firing neurons with the largest v − θ; ties go to the lowest index."""
    excess = v[fired] - threshold[fired]
    order = np.lexsort((fired, -excess))      # largest excess first, then lowest index
    return np.sort(fired[order[:k]])


class _Slice:
    """One weight slice: integer mantissas and the per-row exponent (scalar when uniform)."""

    def __init__(self, ws, source_limit: int, gain_bits: int, name: str):
        M = ws.mantissa
        self.exponent = int(ws.exponent[0]) if ws.exponent.size and np.all(ws.exponent == ws.exponent[0]) \
            else ws.exponent
        if sp.issparse(M):
            self.sparse = True
            self.M = sp.csr_matrix(M, dtype=np.int64)
            C = sp.csc_matrix(M, dtype=np.int64)
            C.sort_indices()
            self.col_ptr, self.col_rows, self.col_data = C.indptr, C.indices, C.data.astype(np.float64)
            row_sums = np.asarray(abs(self.M).sum(axis=1)).ravel()
        else:
            self.sparse = False
            self.M = np.ascontiguousarray(M, dtype=np.int64)
            self.M_float = self.M.astype(np.float64)
            self.columns = np.ascontiguousarray(self.M_float.T)
            row_sums = np.abs(self.M).sum(axis=1)
        bound = int(row_sums.max()) * source_limit if row_sums.size else 0
        # dense BLAS in float64 is exact while every partial sum is an integer below 2^52
        self.float_exact = bound < _FLOAT_EXACT
        if bound << (gain_bits - 1) >= _PRODUCT_LIMIT:
            raise CapabilityError(f"projection '{name}': |mantissa| row sum × payload × gain mantissa "
                                  f"may reach 2^{int(bound).bit_length() + gain_bits - 1}, beyond the "
                                  f"int64 products of docs/ir.md §5 (lower the state or gain bits)")

    def matvec(self, e: np.ndarray, fired) -> np.ndarray:
        """a = M·e as a fresh int64 array (the caller modifies it in place)."""
        if fired is not None and self.float_exact:
            return self._columns(e, fired)
        if self.sparse:
            if _csr_matvec is None:
                return self.M @ e
            M = self.M
            out = np.zeros(M.shape[0], dtype=np.int64)
            _csr_matvec(M.shape[0], M.shape[1], M.indptr, M.indices, M.data, e, out)
            return out
        if self.float_exact:
            return (self.M_float @ e.astype(np.float64)).astype(np.int64)
        return self.M @ e

    def _columns(self, e: np.ndarray, fired: np.ndarray) -> np.ndarray:
        """Σ over fired columns only (exact: integer sums below 2^52 in float64)."""
        n_rows = self.M.shape[0]
        if not self.sparse:
            return (e[fired].astype(np.float64) @ self.columns[fired]).astype(np.int64)
        ptr = self.col_ptr
        starts = ptr[fired]
        lengths = ptr[fired + 1] - starts
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(n_rows, dtype=np.int64)
        ends = lengths.cumsum()
        positions = np.arange(total) + (starts - ends + lengths).repeat(lengths)
        values = self.col_data[positions] * e[fired].astype(np.float64).repeat(lengths)
        return np.bincount(self.col_rows[positions], values, n_rows).astype(np.int64)


class _Projection:
    def __init__(self, proj, fixed, source: _Population, spec, gains: GainState, fuse: bool = False):
        """``fuse``: run the full (non-event) path through ``_kernels_fixed.FusedSlices``
        when every slice is sparse."""
        self.name, self.source, self.delay = proj.name, source, proj.delay
        self.gain = gains.index(proj.gain)
        self.has_gain = proj.gain is not None
        self.before_shift = spec.accumulator_stage == "before_shift"
        # before the shift, a slice sums one sign of mantissas into an unsigned A-bit word
        self.acc_limit = (1 << spec.accumulator_bits) - 1
        self.slices = [_Slice(ws, source.payload_bound, spec.gain_mantissa_bits, proj.name)
                       for ws in fixed.slices]
        self.event_limit = -1 if source.fires_all else int(EVENT_FRACTION * source.size)
        self.fused = None
        if fuse and self.slices and all(sl.sparse for sl in self.slices):
            from ._kernels_fixed import FusedSlices
            self.fused = FusedSlices([sl.M for sl in self.slices], [sl.exponent for sl in self.slices])

    def accumulate(self, t: int, I: np.ndarray, qgains: list, stats: _Stats):
        """I += Σ_slices rshift(g_m · a, −(g_e + E)) with a = M · e_src(t − d) (§5.2)."""
        src = self.source
        slot = (t - self.delay) % src.ring_size
        fired = src.ring_fired[slot]
        if fired is not None and fired.size == 0:
            return
        if fired is not None and fired.size > self.event_limit:
            fired = None
        g_m, g_e = qgains[self.gain]
        if g_m == 0:
            return
        e = src.ring[slot]
        if fired is None and self.fused is not None:
            self.fused.accumulate(I, e, g_m, g_e, self.has_gain, self.acc_limit if self.before_shift else None)
            if self.before_shift:
                peak, clipped = (int(x) for x in self.fused.stats)
                stats.max_input = max(stats.max_input, peak)
                stats.input_saturations += clipped
                stats.unmasked += clipped
            return
        for sl in self.slices:
            a = sl.matvec(e, fired)
            if self.before_shift and a.size:
                peak = int(np.abs(a).max())
                stats.max_input = max(stats.max_input, peak)
                if peak > self.acc_limit:
                    count = int(np.count_nonzero(np.abs(a) > self.acc_limit))
                    stats.input_saturations += count
                    stats.unmasked += count       # a ring buffer cannot tell what the clamp would hide
                    a = np.clip(a, -self.acc_limit, self.acc_limit)
            if self.has_gain:
                a *= g_m
                shift = -(g_e + sl.exponent)
            else:                         # g = 1: the multiply-shift by (2^(G−2), −(G−2)) is exact
                shift = -sl.exponent
            if isinstance(shift, int):    # rshift of §5.1, in place
                if shift > 0:
                    shift = min(shift, 62)    # |a| < 2^61: any longer shift rounds to 0 too
                    a += 1 << (shift - 1)
                    a >>= shift
                elif shift < 0:
                    a = shift_round(a, shift)  # saturating left shift
                I += a
            else:
                I += shift_round(a, shift)


class _Emissions:
    """Control rules' view of the integer emission buffers, in real units."""

    def __init__(self, pops: dict, clock):
        self._pops, self._clock = pops, clock

    def _slot(self, population: str, lag: int):
        pop = self._pops[population]
        if not 0 <= lag < pop.ring_size:
            raise ValueError(f"population {population!r} keeps emissions of the last "
                             f"{pop.ring_size} step(s) only (lag {lag} requested)")
        return pop, (self._clock() - lag) % pop.ring_size

    def emission(self, population: str, lag: int) -> np.ndarray:
        pop, slot = self._slot(population, lag)
        return pop.ring[slot] * pop.payload_unit

    def set_emission(self, population: str, values, lag: int) -> None:
        pop, slot = self._slot(population, lag)
        units = round_nearest(np.asarray(values, dtype=np.float64) / pop.payload_unit)
        pop.ring[slot][...] = np.clip(units, -pop.payload_limit, pop.payload_limit)
        pop.ring_fired[slot] = None

    def last_update(self, population: str) -> int:
        return self._pops[population].last_update

    def depth(self, population: str) -> int:
        return self._pops[population].ring_size


def _compiled_kernels(kernel: str, spec, steps: int):
    """The ``_kernels_fixed`` module if the run uses it (see ``run_fixed``), else None."""
    # the numpy path costs ~1.5 ns per chip synapse and step; the kernels save most of it
    if not wants_numba(kernel, steps * 1e-9 * spec.synapse_count):
        return None
    from . import _kernels_fixed
    return _kernels_fixed


def run_fixed(net: Network, steps: int, *, record_every: Optional[int] = None, progress: bool = False,
              stop=None, check_every: int = 100, max_events: int = DEFAULT_MAX_EVENTS,
              sample_populations=None, backend_name: str = "reference", kernel: str = "auto") -> Trace:
    """Execute the quantized ``net`` for ``steps`` steps in integer arithmetic (docs/ir.md §5).

    ``kernel``: ``numpy`` (the oracle), ``numba`` (multi-slice projections through one
    compiled pass per row, ``_kernels_fixed``; bit-identical), ``auto`` (numba when
    installed and the run is long enough to repay loading it)."""
    spec = net.fixed_point
    if spec is None:
        raise InputError("network is not quantized (no fixed_point spec); run snn_compile.passes."
                         "quantize.quantize first", field="fixed_point")
    steps = int(steps)
    if steps < 0:
        raise InputError("must be ≥ 0", field="steps")
    check_every = max(1, int(check_every))
    gains = GainState(net.gains)
    ring_sizes = {p.name: 1 for p in net.populations}
    for proj in net.projections:
        ring_sizes[proj.source] = max(ring_sizes[proj.source], proj.delay + 1)
    kernels = _compiled_kernels(kernel, spec, steps)
    pops = {p.name: _Population(p, f, spec, ring_sizes[p.name], gains, max_events, kernels)
            for p, f in zip(net.populations, spec.populations)}
    for proj, fixed in zip(net.projections, spec.projections):
        pops[proj.target].incoming.append(_Projection(proj, fixed, pops[proj.source], spec, gains,
                                                      fuse=kernels is not None))

    clock = [0]
    mirrors = {name: p.mirror for name, p in pops.items()}
    controls = ControlRuntime(net, mirrors, gains, _Emissions(pops, lambda: clock[0]))
    phases = [tuple(step) for step in net.schedule]
    active = [[pops[name] for name in phase] for phase in phases]
    idle = [[p for name, p in pops.items() if name not in phase] for phase in phases]

    def refresh(names):
        for name in names:
            np.multiply(pops[name].v, pops[name].lsb, out=mirrors[name])

    record_every, sample_steps, sample_states = sample_buffers(
        {name: p.size for name, p in pops.items()}, sample_populations, steps, record_every)
    n_samples = sample_steps.size

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc=f"reference fixed-point {net.family}", unit="step")

    gain_bits = spec.gain_mantissa_bits
    last_float, qgains = None, None

    def quantized_gains(values: list) -> list:
        nonlocal last_float, qgains
        if values != last_float:            # formula gains change every step, others rarely
            last_float = list(values)
            qgains = [quantize_gain(g, gain_bits) for g in values]
        return qgains

    def snapshot() -> Trace:
        refresh(pops)
        return Trace(
            steps=taken,
            final_state={n: p.v * p.lsb for n, p in pops.items()},
            clamp_excess={n: p.clamp_excess() for n, p in pops.items()},
            averages={n: a.mean.copy() for n, a in controls.averages.items()},
            spike_counts={n: p.spike_counts.copy() for n, p in pops.items()},
            updates={n: p.updates for n, p in pops.items()},
            gains_final={name: float(used_gains[i]) for i, name in enumerate(gains.names)},
            control_log=controls.context.log, backend=backend_name, dtype="int64",
            meta={"family": net.family, "neurons": net.neuron_count, "synapses": spec.synapse_count,
                  "fixed_point": {
                      "hardware": spec.hardware,
                      "integer_state": {n: p.v.copy() for n, p in pops.items()},
                      "scale_exponent": {n: p.fixed.scale_exponent for n, p in pops.items()},
                      "overflow": {n: p.stats.to_dict(p) for n, p in pops.items()}}})

    controls.context.snapshot = snapshot
    run_controls = controls.active
    # an AdaptiveRestart rule reads no state between its checks (it only counts steps):
    # the float mirrors need not follow those steps
    periods = [c.check_every for c in net.controls if isinstance(c, AdaptiveRestart)]
    counts_only = len(periods) == len(net.controls)

    def reads_states(t: int) -> bool:
        return not counts_only or any((t + 1) % period == 0 for period in periods)

    n_phases = len(phases)
    taken, stopped = 0, False
    used_gains = list(gains.values(0))
    log = controls.context.log
    started = time.perf_counter()
    for t in range(steps):
        k = t % n_phases
        used_gains = gains.values(t)
        qg = quantized_gains(used_gains)
        for pop in idle[k]:
            pop.clear_slot(t)
        for pop in active[k]:
            pop.update(t, qg)
        used_gains = list(used_gains)
        taken = t + 1
        if run_controls:
            clock[0] = t
            if reads_states(t):
                refresh(phases[k] if not counts_only else pops)
            logged = len(log)
            controls.after_step(t, phases[k])
            if len(log) != logged:          # a rule may have written states: back to integers
                for name, pop in pops.items():
                    pop.set_state_real(mirrors[name])
                refresh(pops)
        if n_samples and taken % record_every == 0:
            row = taken // record_every - 1
            sample_steps[row] = t
            for name, states in sample_states.items():
                states[row] = pops[name].v * pops[name].lsb
        if stop is not None and taken % check_every == 0:
            clock[0] = t
            controls.context.step = t
            refresh(pops)
            if stop(t, controls.context):
                stopped = True
                controls.context.record("stop", reason="stop callback")
                break
        if bar is not None:
            bar.update(1)
    wall = time.perf_counter() - started
    if bar is not None:
        bar.close()
    trace = finish_trace(snapshot(), recorded_events(pops), sample_steps, sample_states, taken,
                         record_every, wall, stopped)
    trace.meta["kernel"] = "numpy" if kernels is None else "numba"
    return trace
