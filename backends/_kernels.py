"""Numba kernels for the reference backend (``kernel="numba"``): one compiled call per step.

The numpy executor in ``reference.py`` stays the oracle; this module runs the
same step (docs/ir.md §2, steps 1–6) for every population of a schedule phase
in one ``@njit`` call, which removes the per-population and per-projection
Python and ufunc dispatch that dominates small and mid-sized networks.

Bit-identity with the numpy path is by construction: every neuron performs the
same IEEE operations in the same order as the numpy code does element-wise —

* input: ``I = b·g_b``, then per projection in the population's incoming order
  a row sum that starts from 0 and walks the CSR row in index order (scipy's
  ``csr_matvec``), times g only when g ≠ 1, added to I;
* the event path (few source spikes) repeats the numpy column walk exactly,
  including its float64 accumulator (``np.bincount``) and the single-column
  shortcut, so each source step takes the same path as in numpy;
* clamps use numpy's ``maximum``/``minimum`` rule (the second operand wins ties
  and NaN propagates), ``max_spikes_per_step`` the same k-largest/lowest-index rule;
* outside its fired list an emission row holds +0.0 (the numpy path's invariant too),
  so clearing a long list may rewrite the whole row instead;
* float32 follows numpy's value-based casting: a Python-float gain multiplies a
  float32 vector as float32(g).

No ``fastmath``: LLVM may then neither reassociate sums nor contract a·b + c
into an FMA, so the compiled code rounds where numpy does. Dense (ndarray)
weights use BLAS in numpy, whose summation order a loop cannot reproduce, so a
network with a dense projection is not run here (``supports`` says why).

All run-time arrays of the populations become views into packed buffers owned
by ``NumbaStepper``, so everything else in the reference backend (control
rules writing states, emissions of restarts, samples, traces) works unchanged.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
from typing import Optional

import numba as nb
import numpy as np

_JIT = dict(cache=True, nogil=True, error_model="numpy")
#: Projections with at least this many rows sum their rows on every core (``prange``):
#: below it, starting the threads (µs) costs more than they save.
PARALLEL_ROWS = 2**15
#: Numba's fallback threading layer (workqueue) aborts the process on concurrent parallel
#: launches from two threads: whoever may launch one holds this lock (``PARALLEL_LAUNCH``).
PARALLEL_LOCK = threading.Lock()
# OpenMP threads that spin while they wait make a parallel loop several times slower
# than a serial one as soon as another process wants the same cores (measured on
# 2 cores: 6.7 ms against 1.4 ms per call); sleeping ones cost nothing then. libgomp
# reads this when numba first loads it, after this import; a user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class _ParallelLaunch:
    """``with PARALLEL_LAUNCH:`` around every call of a kernel that contains a ``prange``
    loop: holds ``PARALLEL_LOCK``, and leaves multiprocessing's start method unset if it
    was. Numba starts its threads when such a kernel is first loaded, and asks for the
    start method then, which fixes it; Lava sets it on import and fails when it is
    already fixed ("context has already been set"), so importing Lava after a reference
    run would fail. A class, not a generator: it runs once per chunk or step (≈ 0.5 µs)."""

    def __enter__(self):
        PARALLEL_LOCK.acquire()
        self._was_unset = multiprocessing.get_start_method(allow_none=True) is None

    def __exit__(self, *exc_info):
        try:
            if self._was_unset and multiprocessing.get_start_method(allow_none=True) is not None:
                multiprocessing.set_start_method(None, force=True)
        finally:
            PARALLEL_LOCK.release()


PARALLEL_LAUNCH = _ParallelLaunch()   # its state is only touched while the lock is held

#: Longest chunk of steps per compiled call, and the event buffer's size (entries) that
#: may shorten it for networks with many recorded neurons.
MAX_CHUNK = 256
EVENT_BUFFER_ENTRIES = 2**20

# Columns of the per-population table (int64).
(P_OFF, P_N, P_RING, P_RSIZE, P_FCNT, P_BIAS, P_BGAIN, P_UNIT, P_CLO, P_CHI, P_ALL, P_BIN,
 P_EXC, P_CAP, P_RESET, P_COUNT, P_FILTER, P_RECORD, P_IN0, P_IN1, P_EVOFF) = range(21)
POP_FIELDS = 21
RESET_CODES = {"none": 0, "subtract": 1, "to_value": 2}
# Columns of the per-projection table (int64), rows ordered by target population.
(J_SRC, J_DELAY, J_GAIN, J_LIMIT, J_ROWS, J_TOFF, J_PTR, J_NZ, J_CPTR, J_CNZ, J_DIAG) = range(11)
PROJ_FIELDS = 11
# Regions of the three packed buffers (state dtype, int64, unsigned index type): one call
# passes three arrays instead of two dozen, which is most of numba's per-call cost.
FLOAT_REGIONS = ("V", "U", "I", "DECAY", "BIAS", "VMIN", "VMAX", "THETA", "RESETV", "RING",
                 "CSR_DATA", "CSC_DATA", "EXC", "GD")
INT_REGIONS = ("FCNT", "FIDX", "COUNTS", "SPIKED", "NSPIKED", "MASK")
INDEX_REGIONS = ("CSR_PTR", "CSR_IDX", "CSC_PTR", "CSC_IDX")
REGIONS = FLOAT_REGIONS + INT_REGIONS + INDEX_REGIONS       # row r of ``bounds`` is REGIONS[r]
(R_V, R_U, R_I, R_DECAY, R_BIAS, R_VMIN, R_VMAX, R_THETA, R_RESETV, R_RING, R_CSR_DATA, R_CSC_DATA,
 R_EXC, R_GD, R_FCNT, R_FIDX, R_COUNTS, R_SPIKED, R_NSPIKED, R_MASK, R_CSR_PTR, R_CSR_IDX,
 R_CSC_PTR, R_CSC_IDX) = range(24)
assert [R_RING, R_GD, R_FCNT, R_MASK, R_CSR_PTR, R_CSC_IDX] == \
    [REGIONS.index(name) for name in ("RING", "GD", "FCNT", "MASK", "CSR_PTR", "CSC_IDX")]


def supports(pops: dict) -> Optional[str]:
    """None if every projection can run in the kernel, else the reason it cannot."""
    for pop in pops.values():
        for proj in pop.incoming:
            if not proj.sparse:
                return (f"projection '{proj.name}' has dense weights (numpy runs them through "
                        f"BLAS, whose summation order a compiled loop cannot reproduce)")
    return None


class FiredSlots:
    """A population's ``ring_fired`` list backed by the kernel's arrays.

    Slot s holds the sorted indices of the neurons that emitted in ring row s,
    or None when the row may be dense (count −1), exactly as in the numpy path.
    """

    def __init__(self, counts: np.ndarray, indices: np.ndarray):
        self._counts, self._indices = counts, indices        # (ring,), (ring, n) views

    def __len__(self):
        return self._counts.size

    def __getitem__(self, slot: int):
        count = self._counts[slot]
        return None if count < 0 else self._indices[slot, :count]

    def __setitem__(self, slot: int, fired):
        if fired is None:
            self._counts[slot] = -1
        else:
            self._indices[slot, :len(fired)] = fired
            self._counts[slot] = len(fired)


def _pack(names: tuple, lengths: dict, dtype, bounds: np.ndarray) -> tuple[np.ndarray, dict]:
    """One buffer with the named regions back to back; writes each region's [start, end)
    into its row of ``bounds`` and returns the buffer and a view per name."""
    buffer = np.zeros(max(1, sum(lengths[name] for name in names)), dtype)
    views, at = {}, 0
    for name in names:
        bounds[REGIONS.index(name)] = at, at + lengths[name]
        views[name] = buffer[at:at + lengths[name]]
        at += lengths[name]
    return buffer, views


class NumbaStepper:
    """Packs the reference backend's populations and projections into flat arrays and
    runs one network step per ``step`` call."""

    def __init__(self, pops: dict, schedule, dtype, n_gains: int):
        """``n_gains``: length of the ``GainState.values`` list."""
        dtype = np.dtype(dtype)
        names = list(pops)
        index = {name: i for i, name in enumerate(names)}
        plist = [pops[n] for n in names]
        projs = [(ti, proj) for ti, p in enumerate(plist) for proj in p.incoming]
        sizes = np.array([p.size for p in plist], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        ring_offs = np.concatenate([[0], np.cumsum([p.ring_size * p.size for p in plist])]).astype(np.int64)
        fcnt_offs = np.concatenate([[0], np.cumsum([p.ring_size for p in plist])]).astype(np.int64)
        total, ring_total, widest = int(offsets[-1]), int(ring_offs[-1]), int(sizes.max(initial=0))
        evented = [proj for _, proj in projs if proj.event_limit >= 1]
        index_len = {"CSR_PTR": sum(proj.indptr.size for _, proj in projs),
                     "CSR_IDX": sum(proj.indices.size for _, proj in projs),
                     "CSC_PTR": sum(proj.col_ptr.size for proj in evented),
                     "CSC_IDX": sum(proj.col_rows.size for proj in evented)}
        # unsigned indices: see the kernels
        itype = np.uint32 if max(index_len.values(), default=0) < 2**31 else np.uint64

        self.bounds = np.zeros((len(REGIONS), 2), np.int64)
        float_len = dict.fromkeys(("V", "U", "I", "DECAY", "BIAS", "VMIN", "VMAX", "THETA", "RESETV"), total)
        float_len.update(RING=ring_total, CSR_DATA=index_len["CSR_IDX"], CSC_DATA=index_len["CSC_IDX"],
                         EXC=widest, GD=n_gains)
        self.F, f = _pack(FLOAT_REGIONS, float_len, dtype, self.bounds)
        self.X, x = _pack(INT_REGIONS, {"FCNT": int(fcnt_offs[-1]), "FIDX": ring_total, "COUNTS": total,
                                        "SPIKED": total, "NSPIKED": len(plist), "MASK": total},
                          np.int64, self.bounds)
        self.S, s = _pack(INDEX_REGIONS, index_len, itype, self.bounds)
        self.ACC = np.zeros(max(1, widest), np.float64)       # float64 sums of the event path
        self.zero = dtype.type(0)
        self.gains = np.zeros(n_gains, np.float64)

        jm = np.zeros((len(projs), PROJ_FIELDS), np.int64)
        at = dict.fromkeys(("ptr", "nz", "cptr", "cnz"), 0)
        for j, (ti, proj) in enumerate(projs):
            rows = proj.shape[0]
            jm[j, J_SRC], jm[j, J_DELAY] = index[proj.source.name], proj.delay
            jm[j, J_GAIN], jm[j, J_LIMIT], jm[j, J_ROWS] = proj.gain, proj.event_limit, rows
            jm[j, J_TOFF], jm[j, J_PTR], jm[j, J_NZ] = offsets[ti], at["ptr"], at["nz"]
            # 1: one entry per row; 2: W is diagonal (entry r in column r), no gather
            if np.array_equal(proj.indptr, np.arange(rows + 1)):
                diagonal = proj.shape[1] == rows and np.array_equal(proj.indices, np.arange(rows))
                jm[j, J_DIAG] = 2 if diagonal else 1
            s["CSR_PTR"][at["ptr"]:at["ptr"] + rows + 1] = proj.indptr
            s["CSR_IDX"][at["nz"]:at["nz"] + proj.indices.size] = proj.indices
            f["CSR_DATA"][at["nz"]:at["nz"] + proj.data.size] = proj.data
            at["ptr"] += rows + 1
            at["nz"] += proj.data.size
            if proj.event_limit >= 1:
                jm[j, J_CPTR], jm[j, J_CNZ] = at["cptr"], at["cnz"]
                s["CSC_PTR"][at["cptr"]:at["cptr"] + proj.col_ptr.size] = proj.col_ptr
                s["CSC_IDX"][at["cnz"]:at["cnz"] + proj.col_rows.size] = proj.col_rows
                f["CSC_DATA"][at["cnz"]:at["cnz"] + proj.col_data.size] = proj.col_data
                at["cptr"] += proj.col_ptr.size
                at["cnz"] += proj.col_data.size
        self.jm = jm

        pm = np.zeros((len(plist), POP_FIELDS), np.int64)
        first = 0
        for i, p in enumerate(plist):
            pm[i, P_OFF], pm[i, P_N] = offsets[i], p.size
            pm[i, P_RING], pm[i, P_RSIZE] = ring_offs[i], p.ring_size
            pm[i, P_FCNT], pm[i, P_BIAS], pm[i, P_BGAIN] = fcnt_offs[i], p.has_bias, p.bias_gain
            pm[i, P_UNIT], pm[i, P_CLO], pm[i, P_CHI] = p.unit_decay, p.clamp_low, p.clamp_high
            pm[i, P_ALL], pm[i, P_BIN], pm[i, P_EXC] = p.fires_all, p.binary, p.excess_payload
            pm[i, P_CAP] = -1 if p.max_spikes is None else p.max_spikes
            pm[i, P_RESET], pm[i, P_COUNT] = RESET_CODES[p.reset], p.counts_spikes
            pm[i, P_FILTER], pm[i, P_RECORD] = p.spike_neurons is not None, p.events is not None
            pm[i, P_IN0], pm[i, P_IN1] = first, first + len(p.incoming)
            first += len(p.incoming)
        self.pm = pm

        # Copy every population's arrays in; from now on it reads and writes the packed
        # buffers through views.
        for i, p in enumerate(plist):
            a, b = int(offsets[i]), int(offsets[i + 1])
            for name, value in (("V", p.v), ("U", p.u), ("DECAY", p.decay), ("BIAS", p.bias),
                                ("VMIN", p.v_min), ("VMAX", p.v_max), ("THETA", p.threshold),
                                ("RESETV", p.reset_value)):
                f[name][a:b] = value
            x["COUNTS"][a:b] = p.spike_counts
            x["MASK"][a:b] = p.spike_mask
            r0, r1 = int(ring_offs[i]), int(ring_offs[i + 1])
            ring = f["RING"][r0:r1].reshape(p.ring_size, p.size)
            ring[...] = p.ring
            fired = FiredSlots(x["FCNT"][fcnt_offs[i]:fcnt_offs[i + 1]],
                               x["FIDX"][r0:r1].reshape(p.ring_size, p.size))
            for slot in range(p.ring_size):
                fired[slot] = p.ring_fired[slot]
            p.v, p.u, p.ring, p.ring_fired = f["V"][a:b], f["U"][a:b], ring, fired
            p.spike_counts = x["COUNTS"][a:b]
        self._spiked, self._nspiked = x["SPIKED"], x["NSPIKED"]

        # Chunks (``run_chunk``): the phases as flat index lists, and an event buffer row per
        # step for the populations whose spikes are recorded.
        self._plist, self._schedule = plist, [[index[name] for name in phase] for phase in schedule]
        members_flat = [i for phase in self._schedule for i in phase]
        idle_lists = [[i for i in range(len(plist)) if i not in phase] for phase in self._schedule]
        self._members = (np.array(members_flat, np.int64),
                         np.cumsum([0] + [len(phase) for phase in self._schedule]).astype(np.int64))
        self._idle = (np.array([i for idle in idle_lists for i in idle], np.int64),
                      np.cumsum([0] + [len(idle) for idle in idle_lists]).astype(np.int64))
        self._recorded, at = [], 0
        pm[:, P_EVOFF] = -1
        for i, p in enumerate(plist):
            if pm[i, P_RECORD] and pm[i, P_COUNT]:
                pm[i, P_EVOFF] = at
                self._recorded.append((i, p, at))
                at += p.size
        self.chunk_max = max(1, min(MAX_CHUNK, EVENT_BUFFER_ENTRIES // max(1, at)))
        self._ev_count = np.zeros((self.chunk_max, len(plist)), np.int64)
        self._ev_neuron = np.zeros((self.chunk_max, max(1, at)), np.int64)
        self._ev_payload = np.zeros((self.chunk_max, max(1, at)), np.float64)
        #: Room for a chunk's gain table (``GainState.table(…, out=gain_rows)``).
        self.gain_rows = np.zeros((self.chunk_max, n_gains), np.float64)

        self._phases = []
        for phase in schedule:
            members = [index[name] for name in phase]
            idle = [i for i in range(len(plist)) if i not in members]
            recorded = [(i, plist[i], int(offsets[i])) for i in members
                        if pm[i, P_RECORD] and pm[i, P_COUNT]]
            self._phases.append((np.array(members, np.int64), np.array(idle, np.int64),
                                 [plist[i] for i in members], recorded))

    def step(self, t: int, k: int, gain_values: list):
        """Network step t, schedule phase k, gains g(t) (the ``GainState.values`` list)."""
        members, idle, pops, recorded = self._phases[k]
        self.gains[:] = gain_values
        with PARALLEL_LAUNCH:   # even a serial network loads the parallel loop
            _step(t, members, idle, self.gains, self.F, self.X, self.S, self.bounds, self.pm, self.jm,
                  self.ACC, self.zero)
        for pop in pops:
            pop.updates += 1
            pop.last_update = t
        for i, pop, off in recorded:
            count = self._nspiked[i]
            if count:
                neurons = self._spiked[off:off + count]
                pop.events.append(t, neurons, pop.ring[t % pop.ring_size][neurons])

    def run_chunk(self, start: int, gain_table):
        """Steps start, start + 1, … with g(start + j) = ``gain_table[j]`` (at most
        ``chunk_max`` rows; a float64 array, or rows of ``GainState.values`` lists) in one
        compiled call; then the populations' update counters and event logs catch up."""
        length = len(gain_table)
        table = np.ascontiguousarray(gain_table, dtype=np.float64).reshape(length, self.gains.size)
        with PARALLEL_LAUNCH:   # even a serial network loads the parallel loop
            _chunk(start, table, self._members[0], self._members[1], self._idle[0], self._idle[1],
                   self.F, self.X, self.S, self.bounds, self.pm, self.jm, self.ACC, self.zero,
                   self._ev_count, self._ev_neuron, self._ev_payload)
        phases = len(self._schedule)
        for k, phase in enumerate(self._schedule):
            first = start + (k - start) % phases           # the chunk's first step in phase k
            if first >= start + length:
                continue
            last = first + (start + length - 1 - first) // phases * phases
            for i in phase:
                pop = self._plist[i]
                pop.updates += (last - first) // phases + 1
                pop.last_update = max(pop.last_update, last)
        for j, i in zip(*np.nonzero(self._ev_count[:length])):
            _, pop, off = next(r for r in self._recorded if r[0] == i)
            count = self._ev_count[j, i]
            pop.events.append(start + int(j), self._ev_neuron[j, off:off + count],
                              self._ev_payload[j, off:off + count])


# ---------------------------------------------------------------------------- kernels
# Loops index slices of the packed buffers from 0 and gather through unsigned
# indices: numba then drops its negative-index wraparound code from the inner loops.
# Helpers take the packed buffers, not one array per quantity: every array argument
# of a compiled call costs reference counting, which dominated small populations.
@nb.njit(**_JIT)
def _region(buffer, bounds, r):
    return buffer[bounds[r, 0]:bounds[r, 1]]


@nb.njit(**_JIT)
def _step(t, members, idle, gains, F, X, S, bounds, pm, jm, ACC, zero):
    gd = _region(F, bounds, R_GD)
    for i in range(gains.size):
        gd[i] = gains[i]                                  # float32(g), as numpy casts a scalar
    for q in range(idle.size):
        _clear_slot(pm[idle[q]], t, F, X, bounds)
    for q in range(members.size):
        _update(members[q], t, gains, F, X, S, bounds, pm, jm, ACC, zero)


@nb.njit(**_JIT)
def _chunk(start, table, members, members_at, idle, idle_at, F, X, S, bounds, pm, jm, ACC, zero,
           ev_count, ev_neuron, ev_payload):
    """``table.shape[0]`` steps from ``start``; row j of the event buffers gets the counted
    spikes (neuron, payload) of step start + j of every population with P_EVOFF ≥ 0."""
    phases = members_at.size - 1
    nspiked, spiked = _region(X, bounds, R_NSPIKED), _region(X, bounds, R_SPIKED)
    ring = _region(F, bounds, R_RING)
    for j in range(table.shape[0]):
        t = start + j
        k = t % phases
        phase = members[members_at[k]:members_at[k + 1]]
        _step(t, phase, idle[idle_at[k]:idle_at[k + 1]], table[j], F, X, S, bounds, pm, jm, ACC, zero)
        ev_count[j, :] = 0
        for q in range(phase.size):
            row = pm[phase[q]]
            at = row[P_EVOFF]
            if at < 0:
                continue
            count = nspiked[phase[q]]
            ev_count[j, phase[q]] = count
            e0 = row[P_RING] + (t % row[P_RSIZE]) * row[P_N]
            for r in range(count):
                i = spiked[row[P_OFF] + r]
                ev_neuron[j, at + r] = i
                ev_payload[j, at + r] = ring[e0 + i]


@nb.njit(**_JIT)
def _clear_slot(row, t, F, X, bounds):
    n = row[P_N]
    slot = t % row[P_RSIZE]
    base = row[P_RING] + slot * n
    e = _region(F, bounds, R_RING)[base:base + n]
    fired = _region(X, bounds, R_FIDX)[base:base + n]
    fcnt = _region(X, bounds, R_FCNT)
    count = fcnt[row[P_FCNT] + slot]
    if count < 0:
        e[:] = 0.0
    else:
        for q in range(count):
            e[fired[q]] = 0.0
    fcnt[row[P_FCNT] + slot] = 0


@nb.njit(**_JIT)
def _accumulate(j, t, inp, gains, F, X, S, bounds, pm, jm, ACC, zero):
    """inp += g·(W e_src(t − d)) for projection j, on the path the numpy code takes."""
    src = pm[jm[j, J_SRC]]
    slot = (t - jm[j, J_DELAY]) % src[P_RSIZE]
    count = _region(X, bounds, R_FCNT)[src[P_FCNT] + slot]
    if count == 0:
        return                                            # nothing emitted: input unchanged
    n_src = src[P_N]
    e0 = src[P_RING] + slot * n_src
    e = _region(F, bounds, R_RING)[e0:e0 + n_src]
    g, gf = gains[jm[j, J_GAIN]], _region(F, bounds, R_GD)[jm[j, J_GAIN]]
    rows = jm[j, J_ROWS]
    if 0 < count <= jm[j, J_LIMIT]:                       # event path: fired columns only
        fired = _region(X, bounds, R_FIDX)[e0:e0 + n_src]
        ptr = _region(S, bounds, R_CSC_PTR)[jm[j, J_CPTR]:jm[j, J_CPTR] + n_src + 1]
        rows_of = _region(S, bounds, R_CSC_IDX)[jm[j, J_CNZ]:]
        data = _region(F, bounds, R_CSC_DATA)[jm[j, J_CNZ]:]
        if count == 1:
            col = fired[0]
            ek = e[col]
            for pos in range(ptr[col], ptr[col + 1]):
                value = data[pos] * ek
                if g != 1.0:
                    value = value * gf
                inp[rows_of[pos]] = inp[rows_of[pos]] + value
            return
        total = 0
        for q in range(count):
            total += ptr[fired[q] + 1] - ptr[fired[q]]
        if total == 0:
            return
        acc = ACC[:rows]                                  # np.bincount's float64 sums
        acc[:] = 0.0
        for q in range(count):
            col = fired[q]
            ek = e[col]
            for pos in range(ptr[col], ptr[col + 1]):
                acc[rows_of[pos]] += data[pos] * ek
        if g != 1.0:
            for r in range(rows):
                acc[r] *= g
        for r in range(rows):
            inp[r] = inp[r] + acc[r]
        return
    cols = _region(S, bounds, R_CSR_IDX)[jm[j, J_NZ]:]
    data = _region(F, bounds, R_CSR_DATA)[jm[j, J_NZ]:]
    if jm[j, J_DIAG] == 2:                                # diagonal W: element-wise, vectorises
        if g != 1.0:
            for r in range(rows):
                inp[r] = inp[r] + (zero + data[r] * e[r]) * gf
        else:
            for r in range(rows):
                inp[r] = inp[r] + (zero + data[r] * e[r])
        return
    if jm[j, J_DIAG]:                                     # one entry per row: no inner loop
        for r in range(rows):
            s = zero + data[r] * e[cols[r]]
            if g != 1.0:
                s = s * gf
            inp[r] = inp[r] + s
        return
    ptr = _region(S, bounds, R_CSR_PTR)[jm[j, J_PTR]:jm[j, J_PTR] + rows + 1]
    if rows >= PARALLEL_ROWS:
        _csr_rows_parallel(inp, ptr, cols, data, e, g, gf, zero)
        return
    for r in range(rows):
        _csr_row(inp, r, ptr, cols, data, e, g, gf, zero)


@nb.njit(inline="always", **_JIT)
def _csr_row(inp, r, ptr, cols, data, e, g, gf, zero):
    """inp[r] += g·(row r of W)·e, the row summed in index order from 0 (scipy's order)."""
    s = zero
    for pos in range(ptr[r], ptr[r + 1]):
        s += data[pos] * e[cols[pos]]
    if g != 1.0:
        s = s * gf
    inp[r] = inp[r] + s


@nb.njit(parallel=True, **_JIT)
def _csr_rows_parallel(inp, ptr, cols, data, e, g, gf, zero):
    """Every ``_csr_row`` on every core: each row is still summed by one thread in index
    order, so the bits do not depend on the number of threads."""
    for r in nb.prange(ptr.size - 1):
        _csr_row(inp, r, ptr, cols, data, e, g, gf, zero)


@nb.njit(**_JIT)
def _update(p, t, gains, F, X, S, bounds, pm, jm, ACC, zero):
    row = pm[p]
    a, n = row[P_OFF], row[P_N]
    b = a + n
    v, inp = _region(F, bounds, R_V)[a:b], _region(F, bounds, R_I)[a:b]
    theta = _region(F, bounds, R_THETA)[a:b]
    # 1. input
    if row[P_BIAS]:
        bias, gb = _region(F, bounds, R_BIAS)[a:b], _region(F, bounds, R_GD)[row[P_BGAIN]]
        for i in range(n):
            inp[i] = bias[i] * gb
    else:
        inp[:] = 0.0
    for j in range(row[P_IN0], row[P_IN1]):
        _accumulate(j, t, inp, gains, F, X, S, bounds, pm, jm, ACC, zero)
    # 2.–3. integrate and clamp (numpy's maximum/minimum: NaN propagates, ties give the
    # second operand), each a branch-free pass over the neurons that LLVM vectorises.
    clamp_low, clamp_high = row[P_CLO] != 0, row[P_CHI] != 0
    u = _region(F, bounds, R_U)[a:b] if clamp_low or clamp_high else v
    if row[P_UNIT]:
        for i in range(n):
            u[i] = v[i] + inp[i]
    else:
        decay = _region(F, bounds, R_DECAY)[a:b]
        for i in range(n):
            u[i] = decay[i] * v[i] + inp[i]
    if clamp_low:
        lo = _region(F, bounds, R_VMIN)[a:b]
        for i in range(n):
            x = u[i]
            v[i] = x if (x > lo[i] or x != x) else lo[i]
    if clamp_high:
        hi = _region(F, bounds, R_VMAX)[a:b]
        below = v if clamp_low else u
        for i in range(n):
            x = below[i]
            v[i] = x if (x < hi[i] or x != x) else hi[i]
    # 4.–6. fire, emit, reset.
    bin_, exc = row[P_BIN] != 0, row[P_EXC] != 0
    reset = _region(F, bounds, R_RESETV)[a:b]
    reset_mode = row[P_RESET]
    slot = t % row[P_RSIZE]
    e0 = row[P_RING] + slot * n
    e = _region(F, bounds, R_RING)[e0:e0 + n]
    fired = _region(X, bounds, R_FIDX)[e0:e0 + n]
    fcnt = _region(X, bounds, R_FCNT)
    fc = row[P_FCNT] + slot
    _region(X, bounds, R_NSPIKED)[p] = 0
    if row[P_ALL]:                                        # every neuron fires: dense emission
        if bin_:
            e[:] = 1.0
        elif exc:
            for i in range(n):
                e[i] = v[i] - theta[i]
        else:
            e[:] = v
        fcnt[fc] = -1
        if row[P_COUNT]:
            for i in range(n):
                fired[i] = i
            _count(p, row, n, fired, X, bounds)
        _reset(reset_mode, n, fired, v, reset, True)
        return
    # e_p(t) starts from zero. Outside its fired list a row holds +0.0, so clearing a long
    # list, or writing the whole row, is the same as clearing the list's entries.
    previous = fcnt[fc]
    scattered = 0 <= previous <= n // 8
    if scattered:
        for q in range(previous):
            e[fired[q]] = 0.0
    count = 0
    for i in range(n):                                    # fired list, ascending, branch-free
        fired[count] = i
        count += v[i] > theta[i]
    capped = row[P_CAP] >= 0 and count > row[P_CAP]
    if capped:
        count = _keep_largest_excess(fired, count, row[P_CAP], v, theta, _region(F, bounds, R_EXC))
    fcnt[fc] = count
    if scattered or capped:
        if not scattered:
            e[:] = 0.0
        for q in range(count):
            i = fired[q]
            e[i] = 1.0 if bin_ else (v[i] - theta[i] if exc else v[i])
    elif bin_:
        for i in range(n):
            e[i] = 1.0 if v[i] > theta[i] else 0.0
    elif exc:
        for i in range(n):
            e[i] = v[i] - theta[i] if v[i] > theta[i] else 0.0
    else:
        for i in range(n):
            e[i] = v[i] if v[i] > theta[i] else 0.0
    if row[P_COUNT]:
        _count(p, row, count, fired, X, bounds)
    _reset(reset_mode, count, fired, v, reset, False)


@nb.njit(**_JIT)
def _reset(mode, count, fired, v, reset, every):
    """Step 6 for the fired neurons: ``fired[:count]``, or every neuron when ``every``."""
    if mode == 1:
        if every:
            for i in range(count):
                v[i] = v[i] - reset[i]
        else:
            for q in range(count):
                i = fired[q]
                v[i] = v[i] - reset[i]
    elif mode == 2:
        if every:
            for i in range(count):
                v[i] = reset[i]
        else:
            for q in range(count):
                i = fired[q]
                v[i] = reset[i]


@nb.njit(**_JIT)
def _count(p, row, count, fired, X, bounds):
    """Spike counts (and, for recorded populations, this step's spikes) of the fired neurons
    that are spikes (finite threshold or binary)."""
    a = row[P_OFF]
    b = a + row[P_N]
    counts, mask = _region(X, bounds, R_COUNTS)[a:b], _region(X, bounds, R_MASK)[a:b]
    spiked = _region(X, bounds, R_SPIKED)[a:b]
    record, filtered = row[P_RECORD] != 0, row[P_FILTER] != 0
    k = 0
    for q in range(count):
        i = fired[q]
        if not filtered or mask[i]:
            counts[i] += 1
            if record:
                spiked[k] = i
                k += 1
    _region(X, bounds, R_NSPIKED)[p] = k


@nb.njit(**_JIT)
def _keep_largest_excess(fired, count, k, v, theta, EXC):
    """Keep the k fired neurons with the largest v − θ, ties to the lowest index, in place and
    ascending (``reference._largest_excess``)."""
    excess = EXC[:count]
    for q in range(count):
        excess[q] = v[fired[q]] - theta[fired[q]]
    if k == 1:
        best = 0
        for q in range(1, count):
            if excess[q] > excess[best]:                  # strict: the first maximum wins
                best = q
        fired[0] = fired[best]
        return 1
    kth = np.sort(excess)[count - k]                      # the k-th largest value
    ties = k
    for q in range(count):
        if excess[q] > kth:
            ties -= 1
    kept = 0
    for q in range(count):
        keep = excess[q] > kth
        if not keep and excess[q] == kth and ties > 0:
            keep = True
            ties -= 1
        if keep:
            fired[kept] = fired[q]
            kept += 1
    return kept
