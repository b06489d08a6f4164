"""Numba kernels for the integer reference executor (``run_fixed(..., kernel="numba")``).

The hot spot of a quantized network is docs/ir.md §5.2 for a projection with
several weight slices: per slice a = M_s·e, then a·g_m, then the rounding shift
by −(g_e + E_s), added to I. The numpy path (``reference_fixed._Projection``)
walks every slice's CSR matrix separately and makes four full-length
temporaries per slice. Here the slices share one sparsity pattern (the union of
theirs) with their mantissas stored side by side in the narrowest integer type
that holds them, so a row is read once for all slices. A population's bias,
leak, saturations, clamp and graded emission (§5.3–5.5) are compiled too; the
rest of the update (threshold crossings, spike caps, resets, events) stays in
numpy, where it is cheap.

Rows are independent, so the row loops of a projection use every core
(``prange``; results do not depend on the thread count), under the float
kernels' launch rules (``_kernels.PARALLEL_LAUNCH``).

Bit-identity with the numpy path needs no care about order: every operation is
an int64 integer operation, exact (the executor's ``CapabilityError`` checks
keep products below 2^61), and int64 addition is associative.
"""
from __future__ import annotations

import numba as nb
import numpy as np
import scipy.sparse as sp

from ._kernels import PARALLEL_LAUNCH

_JIT = dict(cache=True, nogil=True)
#: Slices summed in one pass over a row (their sums stay in registers).
SLICES_PER_PASS = 3


class FusedSlices:
    """The weight slices of one projection on their union sparsity pattern."""

    def __init__(self, matrices: list, exponents: list):
        """``matrices``: each slice's int64 CSR mantissas; ``exponents``: each slice's
        exponent (an int, or one per row)."""
        rows, cols = matrices[0].shape
        csr = [sp.csr_matrix(M) for M in matrices]
        for M in csr:
            M.sum_duplicates()                      # canonical: sorted, one entry per position
        keys = [np.repeat(np.arange(rows, dtype=np.int64), np.diff(M.indptr)) * cols + M.indices
                for M in csr]
        union = np.unique(np.concatenate(keys))
        self.indptr = np.searchsorted(union, np.arange(rows + 1, dtype=np.int64) * cols).astype(np.int64)
        self.indices = (union % cols).astype(np.uint32 if cols < 2**32 else np.uint64)
        peak = max((int(np.abs(M.data).max()) for M in csr if M.nnz), default=0)
        dtype = next(t for t in (np.int8, np.int16, np.int32, np.int64) if peak <= np.iinfo(t).max)
        self.mantissas = np.zeros((len(csr), union.size), dtype)
        for s, (M, key) in enumerate(zip(csr, keys)):
            self.mantissas[s, np.searchsorted(union, key)] = M.data
        self.exponents = np.empty((len(csr), rows), np.int64)
        for s, exponent in enumerate(exponents):
            self.exponents[s] = exponent
        # a diagonal W with one exponent per slice (e.g. a leak or P's diagonal) needs no
        # index arrays, and its shifts are constant: a loop the compiler vectorises
        uniform = all(np.ndim(exponent) == 0 for exponent in exponents)
        self.diagonal_exponents = np.array(exponents, np.int64) if uniform and rows == cols \
            and np.array_equal(self.indptr, np.arange(rows + 1)) \
            and np.array_equal(self.indices, np.arange(rows)) else None
        self.sums = None                            # per-slice row sums, for an accumulator limit
        self.stats = np.zeros(2, np.int64)          # accumulator limit: largest |a|, clipped sums

    def accumulate(self, I: np.ndarray, e: np.ndarray, g_m: int, g_e: int, has_gain: bool,
                   acc_limit=None):
        """I += Σ_s rshift(g_m·a_s, −(g_e + E_s)) with a_s = M_s·e, in place. With
        ``acc_limit`` (before_shift chips) each a_s is clipped to ±acc_limit first and
        ``self.stats`` holds this call's largest |a_s| and number of clipped sums."""
        if acc_limit is None and self.diagonal_exponents is not None:
            _accumulate_diagonal(I, e, self.mantissas, self.diagonal_exponents, int(g_m), int(g_e),
                                 bool(has_gain))
            return
        passes = [slice(first, first + SLICES_PER_PASS)
                  for first in range(0, self.mantissas.shape[0], SLICES_PER_PASS)]
        with PARALLEL_LAUNCH:
            if acc_limit is None:             # one pass over the rows does everything
                for part in passes:
                    _accumulate_rows(I, e, self.indptr, self.indices, self.mantissas[part],
                                     self.exponents[part], int(g_m), int(g_e), bool(has_gain))
                return
            if self.sums is None:
                self.sums = np.empty(self.exponents.shape, np.int64)
            for part in passes:
                _row_sums(self.sums[part], e, self.indptr, self.indices, self.mantissas[part])
        _clip_sums(self.sums, int(acc_limit), self.stats)
        _add_shifted(I, self.sums, self.exponents, int(g_m), int(g_e), bool(has_gain))


@nb.njit(parallel=True, **_JIT)
def _accumulate_rows(I, e, indptr, indices, mantissas, exponents, g_m, g_e, has_gain):
    """I[r] += Σ_s rshift(g_m·a_s, −(g_e + E_s[r])) for every row r (1 to 3 slices).
    Saturation statistics would slow this loop several times over (measured), so chips
    with an accumulator limit take the three-kernel path."""
    slices = mantissas.shape[0]
    for r in nb.prange(indptr.size - 1):
        a0, a1, a2 = _slice_sums(r, e, indptr, indices, mantissas)
        total = _scaled(a0, exponents[0, r], g_m, g_e, has_gain)
        if slices > 1:
            total += _scaled(a1, exponents[1, r], g_m, g_e, has_gain)
        if slices > 2:
            total += _scaled(a2, exponents[2, r], g_m, g_e, has_gain)
        I[r] += total


@nb.njit(inline="always", **_JIT)
def _slice_sums(r, e, indptr, indices, mantissas):
    """a_s = Σ_pos mantissas[s, pos]·e[indices[pos]] over row r, s < 3 (0 past the last)."""
    slices = mantissas.shape[0]
    a0 = np.int64(0)
    a1 = np.int64(0)
    a2 = np.int64(0)
    for pos in range(indptr[r], indptr[r + 1]):
        source = e[indices[pos]]
        a0 += np.int64(mantissas[0, pos]) * source
        if slices > 1:
            a1 += np.int64(mantissas[1, pos]) * source
        if slices > 2:
            a2 += np.int64(mantissas[2, pos]) * source
    return a0, a1, a2


@nb.njit(inline="always", **_JIT)
def _scaled(a, exponent, g_m, g_e, has_gain):
    """rshift(g_m·a, −(g_e + E)); without a gain (g = 1) rshift(a, −E)."""
    if has_gain:
        return _shift(a * g_m, -(g_e + exponent))
    return _shift(a, -exponent)


@nb.njit(**_JIT)
def _accumulate_diagonal(I, e, mantissas, exponents, g_m, g_e, has_gain):
    """``_accumulate_rows`` for a diagonal W with one exponent per slice."""
    for s in range(mantissas.shape[0]):
        m = mantissas[s]
        if has_gain:
            shift = -(g_e + exponents[s])
            for r in range(I.size):
                I[r] += _shift(np.int64(m[r]) * e[r] * g_m, shift)
        else:
            shift = -exponents[s]
            for r in range(I.size):
                I[r] += _shift(np.int64(m[r]) * e[r], shift)


@nb.njit(parallel=True, **_JIT)
def _row_sums(sums, e, indptr, indices, mantissas):
    """sums[s, r] = a_s of ``_slice_sums`` for every row r (1 to 3 slices)."""
    slices = mantissas.shape[0]
    for r in nb.prange(indptr.size - 1):
        a0, a1, a2 = _slice_sums(r, e, indptr, indices, mantissas)
        sums[0, r] = a0
        if slices > 1:
            sums[1, r] = a1
        if slices > 2:
            sums[2, r] = a2


@nb.njit(**_JIT)
def _clip_sums(sums, limit, stats):
    """Saturate every sum to ±limit; stats = (largest |sum|, number clipped)."""
    peak, clipped = np.int64(0), np.int64(0)
    for s in range(sums.shape[0]):
        for r in range(sums.shape[1]):
            a = sums[s, r]
            magnitude = a if a >= 0 else -a
            peak = max(peak, magnitude)
            if magnitude > limit:
                clipped += 1
                sums[s, r] = limit if a > 0 else -limit
    stats[0], stats[1] = peak, clipped


@nb.njit(**_JIT)
def _add_shifted(I, sums, exponents, g_m, g_e, has_gain):
    """I[r] += Σ_s rshift(g_m·sums[s, r], −(g_e + exponents[s, r])) (g = 1: no multiply)."""
    for s in range(sums.shape[0]):
        for r in range(sums.shape[1]):
            I[r] += _scaled(sums[s, r], exponents[s, r], g_m, g_e, has_gain)


@nb.njit(inline="always", **_JIT)
def _shift(x, s):
    """``fixed_point.shift_round`` for one int64 and one shift."""
    if s > 0:
        s = min(s, 62)                     # |x| < 2^61: a longer shift also rounds to 0
        return (x + (np.int64(1) << (s - 1))) >> s
    if s < 0:
        s = min(-s, 62)
        limit = (np.int64(1) << 62) >> s
        return min(max(x, -limit), limit) << s
    return x


# ---------------------------------------------------------------------------- populations
#: Order of the statistics ``integrate`` returns.
STATS = ("max_input", "input_saturations", "max_state", "state_saturations", "masked_by_clamp", "unmasked")


@nb.njit(**_JIT)
def scaled_bias(I, g_m, g_e, mantissas, exponents):
    """I = rshift(g_m·b_m, −(g_e + b_e)) per neuron (docs/ir.md §5.3)."""
    for i in range(I.size):
        I[i] = _shift(g_m * mantissas[i], -(g_e + exponents[i]))


@nb.njit(**_JIT)
def integrate(v, u, I, decay, decay_bits, complement, unit_decay, v_min, v_max, state_limit,
              input_limit, stats):
    """docs/ir.md §5.3–5.4 in place: I saturated to ±input_limit (< 0: not saturated),
    u = leak(v) + I saturated to ±state_limit, v = clamp(u). ``stats`` gets this update's
    ``STATS``: largest |I| (when saturated) and |u|, saturation counts, and how many
    saturated neurons a clamp bound hid (the value was beyond it anyway) or not."""
    # Nearly always nothing saturates: two branch-free passes that vectorise find that
    # out and finish; otherwise the general loop below starts over from the same v.
    max_input, max_state = 0, 0
    for i in range(v.size):
        x = I[i]
        max_input = max(max_input, abs(x))
        y = _leak(v[i], decay[i], decay_bits, complement, unit_decay) + x
        max_state = max(max_state, abs(y))
        u[i] = y
    if max_state <= state_limit and (input_limit < 0 or max_input <= input_limit):
        for i in range(v.size):
            v[i] = min(max(u[i], v_min[i]), v_max[i])
        stats[:] = 0
        stats[0], stats[2] = max_input if input_limit >= 0 else 0, max_state
        return
    max_input, input_sat, max_state, state_sat, masked, unmasked = 0, 0, 0, 0, 0, 0
    for i in range(v.size):
        x = I[i]
        high = low = False
        if input_limit >= 0:
            max_input = max(max_input, abs(x))
            if x > input_limit:
                x, high = input_limit, True
                input_sat += 1
            elif x < -input_limit:
                x, low = -input_limit, True
                input_sat += 1
        y = _leak(v[i], decay[i], decay_bits, complement, unit_decay) + x
        max_state = max(max_state, abs(y))
        if y > state_limit:
            y, high = state_limit, True
            state_sat += 1
        elif y < -state_limit:
            y, low = -state_limit, True
            state_sat += 1
        u[i] = y
        w = min(max(y, v_min[i]), v_max[i])
        v[i] = w
        if high or low:
            if ((high and w == v_max[i] and v_max[i] < state_limit)
                    or (low and w == v_min[i] and v_min[i] > -state_limit)):
                masked += 1
            else:
                unmasked += 1
    stats[0], stats[1], stats[2], stats[3], stats[4], stats[5] = \
        max_input, input_sat, max_state, state_sat, masked, unmasked


@nb.njit(inline="always", **_JIT)
def _leak(v, code, bits, complement, unit_decay):
    """``fixed_point.decay_state`` for one neuron."""
    if unit_decay:
        return v
    if complement:
        kept = (abs(v) * ((np.int64(1) << bits) - code)) >> bits
        return kept if v > 0 else (-kept if v < 0 else 0)
    return (v * code) >> bits


@nb.njit(**_JIT)
def emit_all(e, v, theta, excess, shift, limit):
    """Every neuron's graded payload sat(rshift(v (− θ), shift)) (docs/ir.md §5.5)."""
    for i in range(v.size):
        x = v[i] - theta[i] if excess else v[i]
        e[i] = min(max(_shift(x, shift), -limit), limit)
