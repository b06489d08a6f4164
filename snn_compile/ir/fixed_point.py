"""Fixed-point specification of a quantized network (docs/ir.md §5).

A quantized network is an ordinary ``Network`` whose float parameters are the
exact dequantized values, plus a ``FixedPointSpec`` with the integers an
integer backend executes directly:

* ``PopulationFixed`` — per population: state width, the state scale f
  (v = v_int · 2^−f), and every per-neuron parameter in state LSBs (integers).
* ``ProjectionFixed`` — per projection: its weights as one or more
  ``WeightSlice`` (integer mantissa matrix + per-row exponent in state LSBs);
  the weight is the sum of its slices.
* ``FixedPointSpec`` — the lists above (aligned with ``net.populations`` and
  ``net.projections``) and the global formats (gain mantissa bits, where the
  input accumulator saturates).

Conventions (as in ``snn_compile.hardware``): ``*_bits`` count the sign bit; an
exponent e means "mantissa · 2^e state LSBs of the target".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import scipy.sparse as sp

from .nodes import _fail

#: Threshold sentinels: "−∞" (fires at every update) and "+∞" (never fires).
#: v > INT64_MIN holds for every saturated state, v > INT64_MAX never does.
THRESHOLD_ALWAYS = int(np.iinfo(np.int64).min)
THRESHOLD_NEVER = int(np.iinfo(np.int64).max)

DECAY_FORMS = ("complement", "multiplier")
#: where the synaptic input saturates to ``accumulator_bits``: after each
#: projection's shift into state LSBs (Loihi) or on each slice's mantissa sum
#: before the shift (SpiNNaker's ring buffers)
ACCUMULATOR_STAGES = ("after_shift", "before_shift")
#: the executor multiplies in int64: widths above this could overflow a product
MAX_STATE_BITS = 32


def _int_vector(value, size: int, node: str, field_: str) -> np.ndarray:
    arr = np.array(value)
    if arr.ndim == 0:
        arr = np.full(size, arr)
    if arr.shape != (size,):
        _fail(node, field_, f"expected {size} values, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            _fail(node, field_, "must hold integers")
    return arr.astype(np.int64)


def _limit(bits: int) -> int:
    """Largest magnitude of a symmetric signed ``bits``-bit value."""
    return 2 ** (bits - 1) - 1


@dataclass(eq=False)
class WeightSlice:
    """``mantissa`` (target × source integers) with a per-row ``exponent``:
    entry (i, k) adds mantissa[i, k] · 2^exponent[i] target state LSBs per
    source payload LSB (times the gain, docs/ir.md §5)."""

    mantissa: object
    exponent: np.ndarray

    def __post_init__(self):
        node = "weight slice"
        m = self.mantissa
        if sp.issparse(m):
            m = sp.csr_matrix(m)
            if m.data.size and np.any(m.data != np.round(m.data)):
                _fail(node, "mantissa", "must hold integers")
            m = sp.csr_matrix((m.data.astype(np.int64), m.indices, m.indptr), shape=m.shape)
            m.sort_indices()
        else:
            m = np.array(m)
            if m.ndim != 2:
                _fail(node, "mantissa", "must be a 2-D matrix")
            if m.size and not np.issubdtype(m.dtype, np.integer) and np.any(m != np.round(m)):
                _fail(node, "mantissa", "must hold integers")
            m = m.astype(np.int64)
        self.mantissa = m
        self.exponent = _int_vector(self.exponent, m.shape[0], node, "exponent")

    @property
    def shape(self) -> tuple:
        return self.mantissa.shape

    @property
    def nnz(self) -> int:
        m = self.mantissa
        return int(np.count_nonzero(m.data) if sp.issparse(m) else np.count_nonzero(m))

    def max_abs_mantissa(self) -> int:
        m = self.mantissa
        data = m.data if sp.issparse(m) else m
        return int(np.abs(data).max()) if data.size else 0


@dataclass(eq=False)
class ProjectionFixed:
    """Integer weights of one projection: the sum of its slices (several
    slices = several synapse groups of limited width between the same neurons)."""

    name: str
    mantissa_bits: int
    slices: list = field(default_factory=list)

    def __post_init__(self):
        node = f"fixed-point projection '{self.name}'"
        self.mantissa_bits = int(self.mantissa_bits)
        if not 2 <= self.mantissa_bits <= 32:
            _fail(node, "mantissa_bits", "must lie in [2, 32]")
        self.slices = list(self.slices)
        if not self.slices:
            _fail(node, "slices", "needs at least one weight slice")
        shapes = {s.shape for s in self.slices}
        if len(shapes) != 1:
            _fail(node, "slices", f"slices disagree on the shape: {sorted(shapes)}")
        limit = _limit(self.mantissa_bits)
        for s in self.slices:
            if s.max_abs_mantissa() > limit:
                _fail(node, "slices", f"a mantissa exceeds the {self.mantissa_bits}-bit range ±{limit}")

    @property
    def shape(self) -> tuple:
        return self.slices[0].shape

    @property
    def synapses(self) -> int:
        """Stored synapses on a chip: every nonzero mantissa of every slice."""
        return sum(s.nnz for s in self.slices)


@dataclass(eq=False)
class PopulationFixed:
    """Integer parameters of one population, in state LSBs (v = v_int · 2^−scale_exponent).

    ``bias`` is ``bias_mantissa · 2^bias_exponent`` (per neuron). ``threshold``
    uses the THRESHOLD_* sentinels for ±∞. ``decay`` is the chip's code d:
    ``complement``: δ = 1 − d/2^decay_bits; ``multiplier``: δ = d/2^decay_bits.
    ``payload_bits`` (None: the full state) and ``payload_shift`` define graded
    emissions: sat(rshift(v, payload_shift)).
    """

    name: str
    size: int
    state_bits: int
    scale_exponent: int
    v_init: np.ndarray
    v_min: np.ndarray
    v_max: np.ndarray
    bias_mantissa: np.ndarray
    bias_exponent: np.ndarray
    threshold: np.ndarray
    reset_value: np.ndarray
    decay: np.ndarray
    decay_bits: int = 12
    decay_form: str = "complement"
    payload_bits: Optional[int] = None
    payload_shift: int = 0

    def __post_init__(self):
        node = f"fixed-point population '{self.name}'"
        self.size = int(self.size)
        self.state_bits, self.scale_exponent = int(self.state_bits), int(self.scale_exponent)
        self.decay_bits, self.payload_shift = int(self.decay_bits), int(self.payload_shift)
        if not 2 <= self.state_bits <= MAX_STATE_BITS:
            _fail(node, "state_bits", f"must lie in [2, {MAX_STATE_BITS}]")
        if not 1 <= self.decay_bits <= 32:
            _fail(node, "decay_bits", "must lie in [1, 32]")
        if self.decay_form not in DECAY_FORMS:
            _fail(node, "decay_form", f"must be one of {DECAY_FORMS}")
        if self.payload_bits is not None:
            self.payload_bits = int(self.payload_bits)
            if not 1 <= self.payload_bits <= 64:
                _fail(node, "payload_bits", "must lie in [1, 64] or be null")
        if self.payload_shift < 0:
            _fail(node, "payload_shift", "must be ≥ 0")
        for key in ("v_init", "v_min", "v_max", "bias_mantissa", "bias_exponent", "threshold",
                    "reset_value", "decay"):
            setattr(self, key, _int_vector(getattr(self, key), self.size, node, key))
        limit = _limit(self.state_bits)
        for key in ("v_init", "v_min", "v_max", "reset_value"):
            if np.any(np.abs(getattr(self, key)) > limit):
                _fail(node, key, f"exceeds the {self.state_bits}-bit state range ±{limit}")
        if np.any(self.v_min > self.v_max):
            _fail(node, "v_min", "v_min > v_max for some neuron")
        if np.any(self.decay < 0) or np.any(self.decay > 2 ** self.decay_bits):
            _fail(node, "decay", f"codes must lie in [0, 2^{self.decay_bits}]")
        if np.any(np.abs(self.bias_exponent) > 62):
            _fail(node, "bias_exponent", "must lie in [−62, 62]")

    @property
    def state_limit(self) -> int:
        return _limit(self.state_bits)

    @property
    def lsb(self) -> float:
        """The real value of one state LSB."""
        return 2.0 ** -self.scale_exponent

    @property
    def payload_exponent(self) -> int:
        """φ: a graded payload integer p is worth p · 2^−φ real units."""
        return self.scale_exponent - self.payload_shift


@dataclass(eq=False)
class FixedPointSpec:
    """The integer view of a network on one chip (docs/ir.md §5).

    ``populations`` and ``projections`` are aligned with the network's lists
    (checked by ``Network``). ``gain_mantissa_bits``: every gain value g(t) is
    applied as a (mantissa, exponent) pair with this many bits.
    """

    hardware: str
    populations: list
    projections: list
    gain_mantissa_bits: int = 16
    accumulator_bits: int = 24
    accumulator_stage: str = "after_shift"

    def __post_init__(self):
        node = "fixed-point spec"
        self.populations, self.projections = list(self.populations), list(self.projections)
        self.gain_mantissa_bits, self.accumulator_bits = int(self.gain_mantissa_bits), int(self.accumulator_bits)
        if not 2 <= self.gain_mantissa_bits <= 24:
            _fail(node, "gain_mantissa_bits", "must lie in [2, 24]")
        if not 2 <= self.accumulator_bits <= 48:
            _fail(node, "accumulator_bits", "must lie in [2, 48]")
        if self.accumulator_stage not in ACCUMULATOR_STAGES:
            _fail(node, "accumulator_stage", f"must be one of {ACCUMULATOR_STAGES}")
        if not all(isinstance(p, PopulationFixed) for p in self.populations):
            _fail(node, "populations", "must be PopulationFixed nodes")
        if not all(isinstance(p, ProjectionFixed) for p in self.projections):
            _fail(node, "projections", "must be ProjectionFixed nodes")

    def population(self, name: str) -> PopulationFixed:
        return next(p for p in self.populations if p.name == name)

    @property
    def synapse_count(self) -> int:
        """Synapses stored on the chip (slices count separately)."""
        return sum(p.synapses for p in self.projections)

    def check_against(self, populations: list, projections: list) -> None:
        """Refuse a spec that does not describe exactly these nodes (called by ``Network``)."""
        node = "network"
        got = [(p.name, p.size) for p in self.populations]
        want = [(p.name, p.size) for p in populations]
        if got != want:
            _fail(node, "fixed_point.populations", f"must list the network's populations in order "
                                                   f"(name, size) {want}; got {got}")
        if len(self.projections) != len(projections):
            _fail(node, "fixed_point.projections", f"must have one entry per projection "
                                                   f"({len(projections)}), got {len(self.projections)}")
        for fixed, proj in zip(self.projections, projections):
            if fixed.name != proj.name or fixed.shape != proj.weights.shape:
                _fail(node, "fixed_point.projections", f"entry '{fixed.name}' {fixed.shape} does not "
                                                       f"match projection '{proj.name}' {proj.weights.shape}")


FIXED_POINT_TYPES = (WeightSlice, ProjectionFixed, PopulationFixed, FixedPointSpec)


# ---------------------------------------------------------------- integer operations of docs/ir.md §5
# Every backend that claims bit-exactness implements exactly these. Arrays are int64.

def saturate(x, bits: int):
    """Clip to the symmetric signed range ±(2^(bits−1) − 1) (Loihi clips v this way)."""
    limit = _limit(bits)
    return np.clip(x, -limit, limit)


def round_nearest(x) -> np.ndarray:
    """Round half away from zero (symmetric, so −W rounds to −round(W)); float → int64."""
    x = np.asarray(x, dtype=np.float64)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def shift_round(x, shift):
    """rshift(x, s): s > 0: (x + 2^(s−1)) >> s (arithmetic shift, i.e. round half up);
    s ≤ 0: x · 2^−s, saturating at ±2^62 (beyond every state width, so the next
    saturation point clips it). ``shift`` is a scalar or a vector broadcast
    against x. Callers keep |x| < 2^61 (the executor checks its products)."""
    x = np.asarray(x, dtype=np.int64)
    if np.ndim(shift) == 0:
        s = int(shift)
        if s > 0:
            s = min(s, 62)                # |x| < 2^61: a longer shift also rounds to 0
            return (x + (1 << (s - 1))) >> s
        if s < 0:
            s = min(-s, 62)
            limit = (1 << 62) >> s
            return np.clip(x, -limit, limit) << s
        return x
    s = np.asarray(shift, dtype=np.int64)
    right = np.clip(s, 0, 62)
    left = np.clip(-s, 0, 62)
    half = np.where(right > 0, np.left_shift(1, np.maximum(right - 1, 0)), 0)
    limit = np.right_shift(1 << 62, left)
    return np.left_shift(np.clip(np.right_shift(x + half, right), -limit, limit), left)


def quantize_gain(g: float, bits: int) -> tuple[int, int]:
    """A gain value as (mantissa m, exponent e) with g ≈ m·2^e and |m| ≤ 2^(bits−1) − 1.

    (f, x) = frexp(g), 0.5 ≤ |f| < 1;  m = round_half_away(f·2^(bits−1));
    if |m| = 2^(bits−1): m ← m/2, x ← x + 1;  e = x − (bits − 1).  g = 0 gives (0, 0).
    frexp/ldexp are exact, so every IEEE-754 implementation gets the same pair.
    """
    g = float(g)
    if g == 0.0 or not np.isfinite(g):
        if g != 0.0:
            raise ValueError(f"gain value {g} is not finite")
        return 0, 0
    frac, exp = np.frexp(g)
    scaled = abs(float(np.ldexp(frac, bits - 1)))
    mant = int(np.floor(scaled + 0.5))
    if mant == 1 << (bits - 1):
        mant //= 2
        exp += 1
    return (mant if g > 0 else -mant), int(exp) - (bits - 1)


def decay_state(v: np.ndarray, code: np.ndarray, bits: int, form: str) -> np.ndarray:
    """The chip's leak. ``complement``: sign(v)·⌊|v|·(2^bits − d)/2^bits⌋;
    ``multiplier``: ⌊v·d/2^bits⌋ (arithmetic shift). Code 0 resp. 2^bits is exact identity."""
    if form == "complement":
        return np.sign(v) * ((np.abs(v) * ((1 << bits) - code)) >> bits)
    return (v * code) >> bits
