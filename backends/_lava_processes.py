"""Lava processes and process models of the ``loihi`` and ``lava`` targets.

Only the Lava worker (``_lava_runner.py``) and a deployment folder's ``run.py``
import this module; nothing else in snn-compile imports Lava.

One ``PopulationProcess`` per IR population. It owns the population's neurons
*and* the synapses of every projection into it (as a Loihi core stores a
neuron group's input synapses), so a projection is a matrix–vector product
inside the target's model, fed by the source's emissions arriving on an InPort.
Each process sends, every Lava time step, its **emission ring** (the last
``depth`` emissions, ``depth`` = 1 + the longest delay out of it) on ``e_out``;
a target reads e_src(t − d) from the copy it received. A message sent at Lava
step τ is read at τ + 1 (Lava's synaptic latency), so one IR step is mapped to
``substeps`` Lava steps: a population updates at the sub-step given by its
*level* (0 unless it has delay-0 inputs; otherwise one more than its latest
delay-0 source), so every delay-0 read sees the emission of the same IR step,
and delayed reads see older ring rows. See docs/backends.md "Loihi / Lava".

Host I/O goes through Lava external pipes (the Extractor/Injector mechanism):
before each chunk of IR steps the host sends a *command* (gain values of each
step of the chunk, and state/ring/average writes after a control rule), after
the chunk the process sends a *report* (states, ring, counts, averages,
sampled states, spike events, overflow statistics). Both are float64 vectors
whose layout ``Layout`` describes; integers are exact in float64 below 2^53.

Two models: ``PyPopulationModelFloat`` (``floating_pt``, the float64 formulas
of docs/ir.md §2 in the reference backend's order of operations) and
``PyPopulationModelFixed`` (``fixed_pt``, the integer semantics of
docs/ir.md §5, bit-exact to ``backends/reference_fixed.py``). Each process gets
a subclass of one of them that declares its input ports (their number varies),
selected through the run config's ``exception_proc_model_map``.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from snn_compile.backends.reference import _largest_excess
from snn_compile.ir.fixed_point import decay_state, saturate, shift_round

#: Fields of the fixed-point overflow statistics in a report (reference_fixed._Stats order).
STATS_FIELDS = ("max_state", "max_input", "state_saturations", "input_saturations",
                "masked_by_clamp", "unmasked")


class Layout:
    """Named slices of a flat float64 message (a field of length 0 is absent)."""

    def __init__(self, fields):
        self.slices, offset = {}, 0
        for name, length in fields:
            self.slices[name] = slice(offset, offset + int(length))
            offset += int(length)
        self.size = max(offset, 1)              # Lava ports need at least one element

    def __contains__(self, name) -> bool:
        s = self.slices.get(name)
        return s is not None and s.stop > s.start

    def get(self, message: np.ndarray, name: str) -> np.ndarray:
        return message[self.slices[name]]

    def put(self, message: np.ndarray, name: str, values) -> None:
        message[self.slices[name]] = np.ravel(values)


def sample_rows(chunk: int, record_every: int) -> int:
    """Most sample points (steps with (t + 1) % record_every == 0) in ``chunk`` consecutive steps."""
    return 0 if record_every <= 0 else min(chunk, chunk // record_every + 1)


def command_layout(pop: dict, run: dict, n_gains: int, fixed: bool) -> Layout:
    n, depth, chunk = pop["size"], pop["depth"], run["max_chunk"]
    averaged = pop["averaged"]
    gain_fields = ([("gain_m", chunk * n_gains), ("gain_e", chunk * n_gains)] if fixed
                   else [("gain", chunk * n_gains)])
    return Layout([("chunk_len", 1), ("start", 1), ("write_v", 1), ("v", n), ("write_ring", 1),
                   ("ring", depth * n), ("write_avg", 1), ("avg_mean", n if averaged else 0),
                   ("avg_count", 1 if averaged else 0)] + gain_fields)


def report_layout(pop: dict, run: dict, fixed: bool) -> Layout:
    n, depth, chunk = pop["size"], pop["depth"], run["max_chunk"]
    rows = sample_rows(chunk, run["record_every"]) if pop["name"] in run["sampled"] else 0
    events = chunk * n if pop["record"] else 0
    return Layout([("last_step", 1), ("v", n), ("u", n), ("ring", depth * n), ("counts", n),
                   ("updates", 1), ("last_update", 1),
                   ("avg_mean", n if pop["averaged"] else 0), ("avg_count", 1 if pop["averaged"] else 0),
                   ("n_samples", 1), ("sample_steps", rows), ("samples", rows * n),
                   ("fired", events), ("payload", events),
                   ("stats", len(STATS_FIELDS) if fixed else 0)])


class PopulationProcess(AbstractProcess):
    """One IR population with the synapses of its incoming projections.

    ``pop``: the population's entry of the process graph (JSON-like), ``arrays``:
    its numeric parameters, ``run``: run-time settings (chunk size, sampling,
    the number of source ports, links). Ports: ``e_out`` (the emission ring),
    ``in_k`` (source k's ring), optional ``link_in``/``link_out`` (join
    otherwise disconnected parts of the graph so one runtime runs them all),
    and the host pipes ``to_host``/``from_host``. Var ``v``: the state
    (integers in state LSBs for the fixed-point model).
    """

    def __init__(self, *, pop: dict, arrays: dict, run: dict, n_gains: int, fixed: bool, name: str):
        super().__init__(pop=pop, arrays=arrays, run=run, n_gains=n_gains, fixed=fixed, name=name)
        n, depth = pop["size"], pop["depth"]
        self.e_out = OutPort(shape=(max(depth * n, 1),))
        for k, (size, src_depth) in enumerate(run["source_shapes"]):
            setattr(self, f"in_{k}", InPort(shape=(max(size * src_depth, 1),)))
        if run["link_in"]:
            self.link_in = InPort(shape=(1,))
        if run["link_out"]:
            self.link_out = OutPort(shape=(1,))
        self.to_host = OutPort(shape=(report_layout(pop, run, fixed).size,))
        self.to_host.flag_external_pipe(buffer_size=2)
        self.from_host = InPort(shape=(command_layout(pop, run, n_gains, fixed).size,))
        self.from_host.flag_external_pipe(buffer_size=2)
        self.v = Var(shape=(max(n, 1),), init=np.resize(arrays["v_init"], max(n, 1)))


class _PopulationModel(PyLoihiProcessModel):
    """The per-Lava-step protocol shared by both arithmetics (see the module docstring).

    Within one Lava step: apply the host command (first step of a chunk), send
    the ring, receive the sources' rings, update if this is the population's
    sub-step, send the report (last step of a chunk). The ring is sent before
    the update, so a target reads at step τ what this population had at τ − 1.
    """

    ring_dtype = np.float64

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.pop, self.arrays, self.settings = proc_params["pop"], proc_params["arrays"], proc_params["run"]
        self.n_gains = proc_params["n_gains"]
        self.ready = False

    # ------------------------------------------------------------ set-up (ports exist only now)
    def _setup(self):
        pop, arrays, run = self.pop, self.arrays, self.settings
        n, depth = pop["size"], pop["depth"]
        self.n, self.depth = n, depth
        self.substeps, self.updates_in_phase, self.level = run["substeps"], pop["updates"], pop["level"]
        self.n_phases = len(self.updates_in_phase)
        self.in_ports = [getattr(self, f"in_{k}") for k in range(len(run["source_shapes"]))]
        self.source_shapes = [(d, s) for s, d in run["source_shapes"]]
        self.source_rings = [np.zeros(shape, dtype=self.ring_dtype) for shape in self.source_shapes]
        self.state = np.array(arrays["v_init"], dtype=self.ring_dtype)
        self.u = self.state.copy()
        self.ring = np.array(arrays["ring_init"], dtype=self.ring_dtype).reshape(depth, n)
        self.spike_counts = np.zeros(n, dtype=np.int64)
        self.updates, self.last_update = 0, -1
        self.averaged = pop["averaged"]
        self.avg_mean, self.avg_count = np.zeros(n), 0
        self.counted = np.asarray(arrays["counted"], dtype=bool)    # finite threshold or binary
        self.all_counted = bool(self.counted.all())
        self.max_spikes = pop["max_spikes"]
        self.record = pop["record"]
        self.sampled = pop["name"] in run["sampled"]
        self.record_every = run["record_every"]
        self.fail_at = run.get("fail_at_step") if run["first"] else None
        self.command = command_layout(pop, run, self.n_gains, self.fixed)
        self.report = report_layout(pop, run, self.fixed)
        self.report_buffer = np.zeros(self.report.size)
        self.max_chunk = run["max_chunk"]
        self.chunk_start = self.chunk_end = 0
        self.fired_rows = np.zeros((self.max_chunk, n), dtype=bool) if self.record else None
        self.payload_rows = np.zeros((self.max_chunk, n)) if self.record else None
        rows = sample_rows(self.max_chunk, self.record_every) if self.sampled else 0
        self.sample_steps, self.sample_states = np.zeros(rows), np.zeros((rows, n))
        self.n_samples = 0
        self.lava_steps = 0
        self.link_in_port = getattr(self, "link_in", None)
        self.link_out_port = getattr(self, "link_out", None)
        self.link_message = np.zeros(1)
        self.projections = self._projections()
        self.ready = True

    def _projections(self) -> list:
        """(source ring index or None for this population's own ring, delay, gain column
        or None when the projection has no gain, weights)."""
        return [(proj["source"], proj["delay"], proj["gain"], self._weights(j, proj))
                for j, proj in enumerate(self.pop["projections"])]

    # ------------------------------------------------------------ the Lava step
    def run_spk(self):
        if not self.ready:
            self._setup()
        t, sub = divmod(self.lava_steps, self.substeps)
        if sub == 0 and t == self.chunk_end:
            self._apply_command(self.from_host.recv(), t)
        if self.fail_at is not None and t == self.fail_at:
            raise RuntimeError(f"fault injected at step {t} (run option fail_at_step)")
        ring = self.ring.reshape(-1)
        self.e_out.send(ring if ring.size else np.zeros(1, dtype=self.ring_dtype))
        if self.link_out_port is not None:
            self.link_out_port.send(self.link_message)
        if self.link_in_port is not None:
            self.link_in_port.recv()
        for k, port in enumerate(self.in_ports):
            depth, size = self.source_shapes[k]
            message = port.recv()
            self.source_rings[k] = message[:depth * size].reshape(depth, size)
        phase = t % self.n_phases
        if self.updates_in_phase[phase]:
            if sub == self.level[phase]:
                self._step(t)
        elif sub == 0:
            self.ring[t % self.depth] = 0                # docs/ir.md §2: no update, no emission
        if sub == self.substeps - 1:                     # the end of IR step t
            if self.sampled and self.record_every > 0 and (t + 1) % self.record_every == 0:
                self.sample_steps[self.n_samples] = t
                self.sample_states[self.n_samples] = self.real_state()
                self.n_samples += 1
            if t == self.chunk_end - 1:
                self._send_report(t)
        self.lava_steps += 1

    def _step(self, t: int):
        fired, payloads = self._update(t, t - self.chunk_start)
        self.updates += 1
        self.last_update = t
        if fired.size:
            counted = fired if self.all_counted else fired[self.counted[fired]]
            self.spike_counts[counted] += 1
            if self.record and counted.size:
                row = t - self.chunk_start
                self.fired_rows[row, counted] = True
                self.payload_rows[row, counted] = payloads[self.counted[fired]] if not self.all_counted \
                    else payloads
        if self.averaged:                               # RunningAverage (docs/ir.md §4), host arithmetic
            self.avg_count += 1
            scratch = self.real_state() - self.avg_mean
            scratch /= self.avg_count
            self.avg_mean += scratch

    def emission_slot(self, source, delay: int, t: int) -> np.ndarray:
        ring = self.ring if source is None else self.source_rings[source]
        return ring[(t - delay) % ring.shape[0]]

    # ------------------------------------------------------------ host I/O
    def _apply_command(self, message: np.ndarray, t: int):
        c = self.command
        start = int(c.get(message, "start")[0])
        if start != t:
            raise RuntimeError(f"population '{self.pop['name']}': host command for step {start} "
                               f"arrived at step {t}")
        length = int(c.get(message, "chunk_len")[0])
        self.chunk_start, self.chunk_end = t, t + length
        if c.get(message, "write_v")[0]:
            self.state = self.from_message(c.get(message, "v"))
        if c.get(message, "write_ring")[0]:
            self.ring = self.from_message(c.get(message, "ring")).reshape(self.depth, self.n)
        if self.averaged and c.get(message, "write_avg")[0]:
            self.avg_mean = c.get(message, "avg_mean").copy()
            self.avg_count = int(c.get(message, "avg_count")[0])
        self._set_gains(message, length)
        if self.record:
            self.fired_rows[:length] = False
            self.payload_rows[:length] = 0.0
        self.n_samples = 0

    def _send_report(self, t: int):
        r, out = self.report, self.report_buffer
        r.put(out, "last_step", t)
        r.put(out, "v", self.state)
        r.put(out, "u", self.u)
        r.put(out, "ring", self.ring)
        r.put(out, "counts", self.spike_counts)
        r.put(out, "updates", self.updates)
        r.put(out, "last_update", self.last_update)
        if self.averaged:
            r.put(out, "avg_mean", self.avg_mean)
            r.put(out, "avg_count", self.avg_count)
        r.put(out, "n_samples", self.n_samples)
        if "sample_steps" in r:
            r.put(out, "sample_steps", self.sample_steps)
            r.put(out, "samples", self.sample_states)
        if self.record and "fired" in r:
            r.put(out, "fired", self.fired_rows)
            r.put(out, "payload", self.payload_rows)
        if "stats" in r:
            r.put(out, "stats", self.stats)
        self.v = np.resize(self.state, max(self.n, 1))       # the Var, for Var.get()
        self.to_host.send(out)

    def from_message(self, values: np.ndarray) -> np.ndarray:
        return np.array(values, dtype=self.ring_dtype)

    # ------------------------------------------------------------ arithmetic (subclasses)
    fixed = False

    def _weights(self, j: int, proj: dict):
        raise NotImplementedError

    def _set_gains(self, message: np.ndarray, length: int):
        raise NotImplementedError

    def _update(self, t: int, row: int):
        """docs/ir.md §2 steps 1–6 at step t; returns (fired neuron indices, their payloads)."""
        raise NotImplementedError

    def real_state(self) -> np.ndarray:
        raise NotImplementedError


def _matrix(arrays: dict, key: str):
    if key in arrays:
        return arrays[key]
    return sp.csr_matrix((arrays[key + ".data"], arrays[key + ".indices"], arrays[key + ".indptr"]),
                         shape=tuple(int(s) for s in arrays[key + ".shape"]))


@implements(proc=PopulationProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyPopulationModelFloat(_PopulationModel):
    """float64, the reference backend's formulas in its order: I = g_b·b, then for each
    projection I += g·(W e); u = δ⊙v + I; v = clip(u); fire; emit; reset."""

    def _setup(self):
        a = self.arrays
        self.decay = np.asarray(a["decay"], dtype=np.float64)
        self.unit_decay = bool(np.all(self.decay == 1.0))
        self.bias = np.asarray(a["bias"], dtype=np.float64)
        self.has_bias = bool(np.any(self.bias != 0.0))
        self.v_min, self.v_max = np.asarray(a["v_min"], float), np.asarray(a["v_max"], float)
        self.clamp_low, self.clamp_high = bool(np.any(np.isfinite(self.v_min))), bool(np.any(np.isfinite(self.v_max)))
        self.threshold = np.asarray(a["threshold"], dtype=np.float64)
        self.reset_value = np.asarray(a["reset_value"], dtype=np.float64)
        self.binary = self.pop["spike"] == "binary"
        self.excess = self.pop["spike"] == "graded" and self.pop["payload"] == "excess"
        self.reset = self.pop["reset"]
        super()._setup()
        # every neuron emits every update (also a NaN state, as in the reference)
        self.fires_all = bool(np.all(np.isneginf(self.threshold))) and self.max_spikes is None
        self.all_neurons = np.arange(self.n)
        self.gains = np.ones((self.max_chunk, self.n_gains))

    def _weights(self, j: int, proj: dict):
        return _matrix(self.arrays, f"w{j}")

    def _set_gains(self, message, length):
        self.gains = self.command.get(message, "gain").reshape(self.max_chunk, self.n_gains)

    def real_state(self):
        return self.state

    def _update(self, t, row):
        g = self.gains[row]
        n = self.n
        bias_gain = self.pop["bias_gain"]
        if self.has_bias:
            I = self.bias * (g[bias_gain] if bias_gain is not None else 1.0)
        else:
            I = np.zeros(n)
        for source, delay, gain, W in self.projections:
            e = self.emission_slot(source, delay, t)
            if not e.any():
                continue                                   # adds exactly 0
            tmp = W @ e
            if gain is not None and g[gain] != 1.0:
                tmp *= g[gain]
            I += tmp
        v = self.state
        u = v + I if self.unit_decay else self.decay * v + I
        if self.clamp_low or self.clamp_high:
            self.u = u
            v = np.minimum(np.maximum(u, self.v_min), self.v_max)
        else:
            v = u
        self.state = v

        slot = t % self.depth
        e = self.ring[slot]
        e.fill(0.0)
        fired = self.all_neurons if self.fires_all else np.flatnonzero(v > self.threshold)
        if self.max_spikes is not None and fired.size > self.max_spikes:
            fired = _largest_excess(fired, v, self.threshold, self.max_spikes)
        if not fired.size:
            return fired, e[fired]
        if self.binary:
            e[fired] = 1.0
        elif self.excess:
            e[fired] = v[fired] - self.threshold[fired]
        else:
            e[fired] = v[fired]
        payloads = e[fired].copy()
        if self.reset == "subtract":
            v[fired] -= self.reset_value[fired]
        elif self.reset == "to_value":
            v[fired] = self.reset_value[fired]
        return fired, payloads


@implements(proc=PopulationProcess, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyPopulationModelFixed(_PopulationModel):
    """Integers of docs/ir.md §5 (int64 arithmetic on values saturated to the declared
    widths), in the operation order of backends/reference_fixed.py."""

    ring_dtype = np.int64
    fixed = True

    def _setup(self):
        a, pop, run = self.arrays, self.pop, self.settings
        self.lsb = 2.0 ** -pop["scale_exponent"]
        self.state_bits = pop["state_bits"]
        self.state_limit = 2 ** (self.state_bits - 1) - 1
        self.acc_bits = run["accumulator_bits"]
        self.acc_limit = 2 ** (self.acc_bits - 1) - 1
        self.saturate_input = run["accumulator_stage"] == "after_shift"
        self.before_shift = run["accumulator_stage"] == "before_shift"
        self.ring_buffer_limit = (1 << self.acc_bits) - 1     # unsigned A-bit word (before_shift)
        as_int = lambda key: np.asarray(a[key], dtype=np.int64)   # noqa: E731
        self.v_min, self.v_max = as_int("v_min"), as_int("v_max")
        self.threshold = as_int("threshold")
        self.rank_threshold = np.clip(self.threshold, -2 ** 62, 2 ** 62)
        self.reset_value = as_int("reset_value")
        self.decay, self.decay_bits, self.decay_form = as_int("decay"), pop["decay_bits"], pop["decay_form"]
        identity = 0 if self.decay_form == "complement" else 1 << self.decay_bits
        self.unit_decay = bool(np.all(self.decay == identity))
        self.bias_mantissa, self.bias_exponent = as_int("bias_mantissa"), as_int("bias_exponent")
        self.has_bias = bool(np.any(self.bias_mantissa != 0))
        self.constant_bias = (shift_round(self.bias_mantissa, -self.bias_exponent)
                              if self.has_bias and pop["bias_gain"] is None else None)
        self.binary = pop["spike"] == "binary"
        self.excess = pop["spike"] == "graded" and pop["payload"] == "excess"
        self.reset = pop["reset"]
        self.payload_shift = pop["payload_shift"]
        bits = pop["payload_bits"]
        self.payload_limit = 1 if self.binary else (2 ** 62 if bits is None else 2 ** (bits - 1) - 1)
        self.payload_unit = 1.0 if self.binary else 2.0 ** -(pop["scale_exponent"] - self.payload_shift)
        self.stats = np.zeros(len(STATS_FIELDS), dtype=np.int64)
        super()._setup()
        self.gain_m = np.zeros((self.max_chunk, self.n_gains), dtype=np.int64)
        self.gain_e = np.zeros((self.max_chunk, self.n_gains), dtype=np.int64)

    def _weights(self, j: int, proj: dict):
        slices = []
        for k in range(proj["slices"]):
            M = _matrix(self.arrays, f"w{j}.s{k}")
            M = M.astype(np.int64) if sp.issparse(M) else np.asarray(M, dtype=np.int64)
            exponent = np.asarray(self.arrays[f"w{j}.s{k}.exponent"], dtype=np.int64)
            uniform = exponent.size and np.all(exponent == exponent[0])
            slices.append((M, int(exponent[0]) if uniform else exponent))
        return slices

    def _set_gains(self, message, length):
        c = self.command
        self.gain_m = c.get(message, "gain_m").reshape(self.max_chunk, self.n_gains).astype(np.int64)
        self.gain_e = c.get(message, "gain_e").reshape(self.max_chunk, self.n_gains).astype(np.int64)

    def real_state(self):
        return self.state * self.lsb

    def from_message(self, values):
        return np.rint(values).astype(np.int64)

    def payload(self, v: np.ndarray, idx) -> np.ndarray:
        """§5.5: binary 1; graded sat_P(rshift(v or v − θ, σ))."""
        if self.binary:
            return np.ones(len(v), dtype=np.int64)
        value = v - self.threshold[idx] if self.excess else v
        return np.clip(shift_round(value, self.payload_shift), -self.payload_limit, self.payload_limit)

    def _update(self, t, row):
        stats = self.stats
        g_m, g_e = self.gain_m[row], self.gain_e[row]
        n = self.n
        if self.constant_bias is not None:
            I = self.constant_bias.copy()
        elif self.has_bias:                       # a bias without gain is the constant above
            gain = self.pop["bias_gain"]
            I = shift_round(int(g_m[gain]) * self.bias_mantissa, -(int(g_e[gain]) + self.bias_exponent))
        else:
            I = np.zeros(n, dtype=np.int64)
        for source, delay, gain, slices in self.projections:       # §5.2
            e = self.emission_slot(source, delay, t)
            if (gain is not None and g_m[gain] == 0) or not e.any():
                continue                                             # adds exactly 0
            for M, exponent in slices:
                a = np.asarray(M @ e, dtype=np.int64)
                if self.before_shift and a.size:
                    peak = int(np.abs(a).max())
                    stats[1] = max(stats[1], peak)
                    if peak > self.ring_buffer_limit:
                        count = int(np.count_nonzero(np.abs(a) > self.ring_buffer_limit))
                        stats[3] += count
                        stats[5] += count
                        a = np.clip(a, -self.ring_buffer_limit, self.ring_buffer_limit)
                if gain is not None:
                    a = a * int(g_m[gain])
                    shift = -(int(g_e[gain]) + exponent)
                else:                       # g = 1: the multiply-shift by (2^(G−2), −(G−2)) is exact
                    shift = -exponent
                I += shift_round(a, shift)
        high = low = None
        if self.saturate_input and n:
            peak = int(np.abs(I).max())
            stats[1] = max(stats[1], peak)
            if peak > self.acc_limit:
                high, low = I > self.acc_limit, I < -self.acc_limit
                stats[3] += int(np.count_nonzero(high | low))
                I = saturate(I, self.acc_bits)                       # §5.3
        if self.unit_decay:
            u = I + self.state
        else:
            u = decay_state(self.state, self.decay, self.decay_bits, self.decay_form) + I
        if n:
            peak = int(np.abs(u).max())
            stats[0] = max(stats[0], peak)
            if peak > self.state_limit:
                up, down = u > self.state_limit, u < -self.state_limit
                stats[2] += int(np.count_nonzero(up | down))
                high, low = (up, down) if high is None else (high | up, low | down)
                u = saturate(u, self.state_bits)
        self.u = u
        v = np.minimum(np.maximum(u, self.v_min), self.v_max)
        self.state = v
        if high is not None:
            masked = ((high & (v == self.v_max) & (self.v_max < self.state_limit))
                      | (low & (v == self.v_min) & (self.v_min > -self.state_limit)))
            hidden = int(np.count_nonzero(masked))
            stats[4] += hidden
            stats[5] += int(np.count_nonzero(high | low)) - hidden

        e = self.ring[t % self.depth]                                # §5.4–5.5
        e.fill(0)
        fired = np.flatnonzero(v > self.threshold)
        if self.max_spikes is not None and fired.size > self.max_spikes:
            excess = v[fired] - self.rank_threshold[fired]
            order = np.lexsort((fired, -excess))                     # largest first, then lowest index
            fired = np.sort(fired[order[: self.max_spikes]])
        if not fired.size:
            return fired, np.zeros(0)
        e[fired] = self.payload(v[fired], fired)
        payloads = e[fired] * self.payload_unit
        if self.reset == "subtract":
            v[fired] = saturate(v[fired] - self.reset_value[fired], self.state_bits)
        elif self.reset == "to_value":
            v[fired] = self.reset_value[fired]
        return fired, payloads


_PORT_CLASSES: dict = {}


def model_class(fixed: bool, n_sources: int, link_in: bool, link_out: bool) -> type:
    """The model of a process with ``n_sources`` input ports (Lava reads port types from
    class attributes, so each port count gets its own subclass)."""
    key = (fixed, n_sources, link_in, link_out)
    if key not in _PORT_CLASSES:
        base = PyPopulationModelFixed if fixed else PyPopulationModelFloat
        dtype = np.int64 if fixed else np.float64
        attrs = {"e_out": LavaPyType(PyOutPort.VEC_DENSE, dtype, precision=64 if fixed else None),
                 "to_host": LavaPyType(PyOutPort.VEC_DENSE, np.float64),
                 "from_host": LavaPyType(PyInPort.VEC_DENSE, np.float64),
                 "v": LavaPyType(np.ndarray, dtype, precision=32 if fixed else None)}
        attrs.update({f"in_{k}": LavaPyType(PyInPort.VEC_DENSE, dtype) for k in range(n_sources)})
        if link_in:
            attrs["link_in"] = LavaPyType(PyInPort.VEC_DENSE, np.float64)
        if link_out:
            attrs["link_out"] = LavaPyType(PyOutPort.VEC_DENSE, np.float64)
        suffix = f"{n_sources}in" + ("_li" if link_in else "") + ("_lo" if link_out else "")
        _PORT_CLASSES[key] = type(f"{base.__name__}_{suffix}", (base,), attrs)
    return _PORT_CLASSES[key]


def build_processes(graph: dict, arrays: dict, run: dict) -> tuple[list, dict]:
    """Lava processes for every population of ``graph``, connected; returns
    (processes, {process: model class}) for the run config's exception map."""
    fixed = graph["arithmetic"] == "fixed"
    n_gains = len(graph["gains"]) + 1                   # + the constant 1 of "no gain"
    pops = graph["populations"]
    links_in = {b for _, b in graph["links"]}
    links_out = {a for a, _ in graph["links"]}
    procs, models = [], {}
    for i, pop in enumerate(pops):
        own = {key[len(f"p{i}."):]: value for key, value in arrays.items() if key.startswith(f"p{i}.")}
        settings = dict(run, substeps=graph["substeps"], first=i == 0, link_in=i in links_in,
                        link_out=i in links_out,
                        source_shapes=[(pops[s]["size"], pops[s]["depth"]) for s in pop["sources"]],
                        accumulator_bits=graph.get("accumulator_bits"),
                        accumulator_stage=graph.get("accumulator_stage"))
        proc = PopulationProcess(pop=pop, arrays=own, run=settings, n_gains=n_gains, fixed=fixed,
                                 name=f"population {pop['name']}")
        procs.append(proc)
        models[proc] = model_class(fixed, len(pop["sources"]), i in links_in, i in links_out)
    for i, pop in enumerate(pops):
        for k, s in enumerate(pop["sources"]):
            procs[s].e_out.connect(getattr(procs[i], f"in_{k}"))
    for a, b in graph["links"]:
        procs[a].link_out.connect(procs[b].link_in)
    return procs, models
