"""Fixed-point quantization: a float network → the same network on a chip's integers.

``quantize(net, hw)`` is a pure function IR → IR. The result carries a
``FixedPointSpec`` (docs/ir.md §5) with every integer a chip (or
``backends/reference_fixed.py``) executes, and float parameters equal to the
exact dequantized values, so a float backend runs "quantized parameters, float
arithmetic". Nothing wraps: every value beyond its format saturates and is
counted in the ``QuantizationReport``. ``compare_float_fixed`` runs a QP both
ways and scores both on the original problem.

Choices (docs/ir.md §5.7; each is reported):

* **State scale** per population: v = v_int·2^−f with the largest f such that the
  largest expected |v| (a float calibration run, the initial state, finite
  thresholds, reset values) times 2^headroom_bits fits ``state.bits``. f is lowered where a
  gainless projection's or bias's exponent would otherwise exceed the chip's
  range (a gained one folds its exponent into the per-step gain shift).
* **Weights**: block exponent e = ⌈log₂ max|W|⌉ − (bits − 1) per projection
  (per row with ``per_row_exponent``, per sign with ``shift_per_synapse_type``),
  raised by one where the largest magnitude would round past the mantissa range
  (e.g. an exact power of two, so an identity stays exact); mantissa =
  round(W/2^e), saturated. With ``weight_slices`` > 1 the rounding residual is
  quantized again as further slices (extra synapse groups between the same
  neurons, each with its own exponent). Why: the network's equilibrium is
  K_q x = c with the *quantized* constraint matrix, so ‖Ax − b‖ is set by the
  weight error times |x|. On the ANYmal QP (Loihi 2) one 8-bit slice ends at
  ‖Ax − k‖∞ ≈ 79 (lava-optimization reports 48), two at 0.85, three at 0.005
  (20k steps; benchmarks/bench_quantization.py).
* **Biases**: a mantissa and exponent per neuron (Lava's ``bias_mant``/``bias_exp``);
  a leaky neuron's bias is rescaled by (1 − δ_q)/(1 − δ) so its resting level
  b/(1 − δ) survives the decay's quantization.
* **Gains**: chosen at run time, per step (docs/ir.md §5.1).
* **AdaptiveRestart**: the primal weight ω is frozen (``_fixed_point_control``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import scipy.sparse as sp

from ..errors import CapabilityError, InputError
from ..hardware import HardwareConfig, load_hardware
from ..ir import AdaptiveRestart, Network
from ..ir.fixed_point import (THRESHOLD_ALWAYS, THRESHOLD_NEVER, FixedPointSpec, PopulationFixed,
                              ProjectionFixed, WeightSlice, round_nearest)

ROUNDING_MODES = ("nearest", "stochastic")
#: Gain mantissa width (sign included): a per-step relative gain error of at most 2^−15.
GAIN_MANTISSA_BITS = 16
HEADROOM_BITS = 2
DEFAULT_CHECK_STEPS = 2000
DEFAULT_WEIGHT_SLICES = 3
#: Exponent range where a gain's shift absorbs the exponent: wide, but keeps every
#: shift of docs/ir.md §5 below 62 bits (values below 2^−48 LSB round to 0 anyway).
FREE_EXPONENT_RANGE = (-48, 48)
#: A calibration run counts as converged once its restart KKT error falls below this
#: fraction of the first restart's; ω values after that are not used.
CONVERGED_KKT_FRACTION = 1e-6
#: A population's expected peak is at least this fraction of the network's largest.
RELATIVE_PEAK_FLOOR = 2.0 ** -20


# ---------------------------------------------------------------- report
@dataclass
class TensorError:
    """Quantization of one tensor; errors are in the network's real units."""

    tensor: str
    exponent_min: int
    exponent_max: int
    count: int
    max_abs: float
    max_error: float
    rms_error: float
    clipped: int
    slices: int = 1

    @property
    def relative_error(self) -> float:
        return self.max_error / self.max_abs if self.max_abs > 0 else 0.0


@dataclass
class PopulationScale:
    population: str
    state_bits: int
    scale_exponent: int
    expected_max: float
    note: str = ""

    @property
    def lsb(self) -> float:
        return 2.0 ** -self.scale_exponent

    @property
    def state_max(self) -> float:
        return (2 ** (self.state_bits - 1) - 1) * self.lsb

    @property
    def headroom_bits(self) -> float:
        return math.log2(self.state_max / self.expected_max) if self.expected_max > 0 else math.inf


@dataclass
class QuantizationReport:
    hardware: str
    rounding: str = "nearest"
    seed: int = 0
    identity: bool = False
    gain_mantissa_bits: int = GAIN_MANTISSA_BITS
    weight_slices: int = 1
    scales: list = field(default_factory=list)
    tensors: list = field(default_factory=list)
    overflow: dict = field(default_factory=dict)       # population -> executor statistics
    overflow_steps: int = 0
    synapses_float: int = 0
    synapses_chip: int = 0
    notes: list = field(default_factory=list)

    @property
    def saturated(self) -> bool:
        """Did a saturation change a state in the overflow check run? (One that a clamp
        hid, the value being beyond the clamp bound anyway, does not count.)"""
        return any(s["unmasked_saturations"] for s in self.overflow.values())

    @property
    def clipped(self) -> int:
        return sum(t.clipped for t in self.tensors)

    def set_overflow(self, trace) -> None:
        """Take the saturation statistics of a fixed-point run (``trace.meta``)."""
        self.overflow = dict(trace.meta["fixed_point"]["overflow"])
        self.overflow_steps = trace.steps

    def to_dict(self) -> dict[str, Any]:
        clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v  # noqa: E731
        return {
            "hardware": self.hardware, "rounding": self.rounding, "seed": self.seed,
            "identity": self.identity, "gain_mantissa_bits": self.gain_mantissa_bits,
            "weight_slices": self.weight_slices,
            "scales": [{**dataclasses.asdict(s), "lsb": s.lsb, "state_max": s.state_max,
                        "headroom_bits": clean(s.headroom_bits)} for s in self.scales],
            "tensors": [{**dataclasses.asdict(t), "relative_error": t.relative_error} for t in self.tensors],
            "overflow": {"steps": self.overflow_steps, "saturated": self.saturated,
                         "populations": self.overflow},
            "synapses": {"float": self.synapses_float, "chip": self.synapses_chip},
            "clipped": self.clipped, "notes": list(self.notes)}

    def format(self) -> str:
        if self.identity:
            return f"quantization for {self.hardware}: none (float arithmetic)\n" + \
                "".join(f"note: {n}\n" for n in self.notes)
        lines = [f"quantization for {self.hardware}: {self.rounding} rounding, gains "
                 f"{self.gain_mantissa_bits}-bit mantissa, up to {self.weight_slices} weight slice(s); "
                 f"{self.synapses_chip} chip synapses for {self.synapses_float} float ones",
                 f"{'population':14} {'bits':>4} {'f':>4} {'LSB':>9} {'expected max':>12} "
                 f"{'state max':>10} {'headroom':>8}"]
        for s in self.scales:
            lines.append(f"{s.population:14} {s.state_bits:4d} {s.scale_exponent:4d} {s.lsb:9.2e} "
                         f"{s.expected_max:12.4g} {s.state_max:10.4g} {s.headroom_bits:7.1f}b"
                         + (f"  {s.note}" if s.note else ""))
        lines.append(f"{'tensor':40} {'exponent':>9} {'sl':>2} {'max|value|':>10} {'max err':>9} "
                     f"{'rms err':>9} {'rel.err':>8} {'clipped':>7}")
        for t in self.tensors:
            exp = f"{t.exponent_min}" if t.exponent_min == t.exponent_max else f"{t.exponent_min}..{t.exponent_max}"
            lines.append(f"{t.tensor[:40]:40} {exp:>9} {t.slices:2d} {t.max_abs:10.3e} {t.max_error:9.2e} "
                         f"{t.rms_error:9.2e} {t.relative_error:8.1e} {t.clipped:7d}")
        if self.overflow:
            masked = sum(s["masked_by_clamp"] for s in self.overflow.values())
            lines.append(f"overflow check over {self.overflow_steps} steps: "
                         + ("SATURATION" if self.saturated else "no saturation")
                         + (f" ({masked} hidden by clamps: the value was beyond the clamp bound anyway)"
                            if masked else ""))
            lines.append(f"{'population':14} {'max|state|':>12} {'limit':>10} {'max|input|':>12} "
                         f"{'state sat.':>10} {'input sat.':>10} {'by clamp':>9}")
            for name, s in self.overflow.items():
                lines.append(f"{name:14} {s['max_abs_state']:12d} {s['state_limit']:10d} "
                             f"{s['max_abs_input']:12d} {s['state_saturations']:10d} {s['input_saturations']:10d} "
                             f"{s['masked_by_clamp']:9d}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# ---------------------------------------------------------------- rounding
class _Rounder:
    """Nearest (half away from zero) or stochastic (⌊x + U[0,1)⌋, unbiased) rounding to int64."""

    def __init__(self, mode: str, seed: int):
        if mode not in ROUNDING_MODES:
            raise InputError(f"must be one of {ROUNDING_MODES}, got {mode!r}", field="rounding")
        self.mode = mode
        self.rng = np.random.default_rng(seed)

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.mode == "nearest":
            return round_nearest(x)
        return np.floor(x + self.rng.random(x.shape)).astype(np.int64)

    def largest(self, x) -> np.ndarray:
        """The largest integer ``__call__`` can return for x ≥ 0 (for choosing exponents)."""
        return round_nearest(x) if self.mode == "nearest" else np.ceil(np.asarray(x)).astype(np.int64)


def _ceil_log2(x: np.ndarray) -> np.ndarray:
    """⌈log₂ x⌉ for x > 0, exactly (frexp, no float log)."""
    frac, exp = np.frexp(x)
    return np.where(frac == 0.5, exp - 1, exp).astype(np.int64)


def _block_quantize(values, groups, n_groups, limit: int, exp_range, rnd: _Rounder):
    """Mantissas (|m| ≤ limit) and one exponent per group for ``values`` (state-LSB units).

    e = ⌈log₂ max|v|⌉ − (bits − 1), +1 where the group's largest value would
    round past ``limit``; clipped to ``exp_range`` (None: free). Returns
    (mantissa, exponent per group, number clipped).
    """
    bits_minus_one = int(limit).bit_length()              # limit = 2^(bits−1) − 1
    peak = np.zeros(n_groups)
    np.maximum.at(peak, groups, np.abs(values))
    nonzero = peak > 0
    exponent = np.zeros(n_groups, dtype=np.int64)
    exponent[nonzero] = _ceil_log2(peak[nonzero]) - bits_minus_one
    bump = nonzero & (rnd.largest(np.ldexp(peak, -exponent)) > limit)
    exponent[bump] += 1
    lo, hi = FREE_EXPONENT_RANGE if exp_range is None else exp_range
    exponent[~nonzero] = lo if exp_range is not None else 0
    exponent = np.clip(exponent, lo, hi)
    mantissa = rnd(np.ldexp(values, -exponent[groups]))
    clipped = int(np.count_nonzero(np.abs(mantissa) > limit))
    return np.clip(mantissa, -limit, limit), exponent, clipped


def block_quantize(weights, mantissa_bits: int, *, exponent_range: Optional[tuple] = None,
                   rounding: str = "nearest", seed: int = 0) -> tuple[np.ndarray, int, int]:
    """One block of signed values: (mantissas, exponent, number clipped), so that
    weights ≈ mantissas·2^exponent with |mantissa| ≤ 2^(mantissa_bits−1) − 1.
    The rule every projection's slice follows (module docs; docs/ir.md §5.7)."""
    values = np.asarray(weights, dtype=np.float64)
    limit = 2 ** (int(mantissa_bits) - 1) - 1
    flat = values.ravel()
    m, e, clipped = _block_quantize(flat, np.zeros(flat.size, dtype=np.int64), 1, limit, exponent_range,
                                    _Rounder(rounding, seed))
    return m.reshape(values.shape), int(e[0]), clipped


def _error(tensor: str, exact, approx, exponents, clipped: int, slices: int = 1) -> TensorError:
    """Errors of ``approx`` against ``exact`` (real units); ``exponents`` of the stored units."""
    exact, approx = np.asarray(exact, dtype=np.float64), np.asarray(approx, dtype=np.float64)
    err = approx - exact
    exps = np.asarray(exponents)
    return TensorError(tensor, int(exps.min()) if exps.size else 0, int(exps.max()) if exps.size else 0,
                       int(exact.size), float(np.abs(exact).max()) if exact.size else 0.0,
                       float(np.abs(err).max()) if err.size else 0.0,
                       float(np.sqrt(np.mean(err * err))) if err.size else 0.0, clipped, slices)


# ---------------------------------------------------------------- capability
def graded_emitters(net: Network) -> dict[str, str]:
    """Populations whose graded payloads reach a projection: population → projection name."""
    out = {}
    for proj in net.projections:
        pop = net.population(proj.source)
        if pop.spike == "graded" and not np.all(np.isposinf(pop.threshold)):
            out.setdefault(pop.name, proj.name)
    return out


def check_capability(net: Network, hw: HardwareConfig) -> None:
    """Refuse what no number format can fix: graded payloads on a binary-spike chip."""
    graded = graded_emitters(net)
    if graded and not hw.features.graded_spikes:
        pop, proj = next(iter(graded.items()))
        raise CapabilityError(
            f"family '{net.family}' needs graded spikes (population '{pop}' sends its state through "
            f"projection '{proj}'), but {hw.name} has binary spikes only; compile with family 'lif' "
            f"(binary spikes of fixed size) for {hw.name}")
    for pop in net.populations:
        if pop.spike == "graded" and pop.payload == "excess" and np.any(np.isneginf(pop.threshold)):
            raise InputError(f"population '{pop.name}' emits v − θ with θ = −∞; no finite payload",
                             field="threshold")


# ---------------------------------------------------------------- calibration
@dataclass
class Calibration:
    """What a float run tells the quantizer: the largest |v| per population, and the
    primal weights ω an ``AdaptiveRestart`` rule used while the run still made
    progress (its initial value first; empty without such a rule)."""

    state_peak: dict
    primal_weights: list = field(default_factory=list)

    @property
    def primal_weight(self) -> Optional[float]:
        """The geometric mean of ``primal_weights``, clipped to [ω₀/10, 10·ω₀] (None if
        empty). Measured over 12 problems against the mean alone, the initial and the
        last value: the best or within 2× of it on 11 (ANYmal: ‖Ax − b‖∞ ≈ 0.01)."""
        if not self.primal_weights:
            return None
        first = self.primal_weights[0]
        mean = float(np.exp(np.mean(np.log(self.primal_weights))))
        return float(np.clip(mean, first / 10, first * 10))

    def merged(self, other: "Calibration") -> "Calibration":
        peaks = {name: max(self.state_peak.get(name, 0.0), other.state_peak.get(name, 0.0))
                 for name in set(self.state_peak) | set(other.state_peak)}
        return Calibration(peaks, list(self.primal_weights))


def calibrate(net: Network, steps: int, *, stop=None):
    """Run ``net`` in float for ``steps`` steps, tracking max |v| after every step.
    Returns (Calibration, trace); ``stop`` is chained (polled every step)."""
    from ..backends.reference import simulate
    peaks = {p.name: float(np.abs(p.v_init).max(initial=0.0)) for p in net.populations}

    states: list = []                            # (name, live view), filled on the first call

    def track(step, ctx) -> bool:
        if not states:
            states.extend((p.name, ctx.state(p.name)) for p in net.populations if p.size)
        for name, v in states:                   # live read-only views
            peak = max(float(v.max()), -float(v.min()))     # no |v| temporary: runs every step
            if peak > peaks[name] and math.isfinite(peak):   # a diverging run keeps its last finite peak
                peaks[name] = peak
        return bool(stop(step, ctx)) if stop is not None else False

    trace = simulate(net, steps, record_every=0, stop=track, check_every=1)
    rule = next((c for c in net.controls if isinstance(c, AdaptiveRestart)), None)
    weights = [] if rule is None else [rule.primal_weight_init]
    restarts = [e for e in trace.control_log if e.get("event") == "restart"]
    for event in restarts:
        # once the KKT error is 10⁻⁶ of the first restart's, the float run has converged
        # and ω follows vanishing moves (e.g. ω/10 at every restart while duals rest at 0)
        if event["kkt"] <= CONVERGED_KKT_FRACTION * restarts[0]["kkt"]:
            break
        weights.append(event["primal_weight"])
    return Calibration(peaks, weights), trace


def _scale_exponent(peak: float, limit: int, headroom_bits: int) -> int:
    """Largest f with peak·2^(f + headroom) ≤ limit."""
    frac, exp = math.frexp(limit / peak)           # limit/peak = frac·2^exp, 0.5 ≤ frac < 1
    return exp - 1 - headroom_bits


# ---------------------------------------------------------------- the pass
def quantize(net: Network, hw, *, rounding: str = "nearest", seed: int = 0,
             overflow_check_steps: int = DEFAULT_CHECK_STEPS, calibration_steps: Optional[int] = None,
             calibration: Optional[Calibration] = None, headroom_bits: int = HEADROOM_BITS,
             weight_slices: int = DEFAULT_WEIGHT_SLICES, gain_bits: int = GAIN_MANTISSA_BITS,
             freeze_primal_weight: bool = True) -> tuple[Network, QuantizationReport]:
    """``net`` on ``hw``'s integers: (quantized network, report).

    ``calibration``: expected state ranges (default: ``calibrate`` over
    ``calibration_steps``, default ``overflow_check_steps`` or 2000 steps).
    ``overflow_check_steps``: the quantized network runs this long in integer
    arithmetic and the report gives the largest |state| / |input| reached and
    any saturation (0: skip). ``weight_slices``: at most this many mantissa
    slices per projection (1: one block exponent, as lava-optimization does).
    ``freeze_primal_weight``: an ``AdaptiveRestart`` rule keeps ω fixed at the
    calibration run's geometric mean (``_fixed_point_control``); the state ranges
    then also come from a float run of that frozen network. A float chip
    (``arithmetic: float``) returns ``net`` itself.
    """
    hw = load_hardware(hw)
    rnd = _Rounder(rounding, seed)
    report = QuantizationReport(hardware=hw.name, rounding=rounding, seed=int(seed),
                                gain_mantissa_bits=int(gain_bits), weight_slices=int(weight_slices))
    if not hw.is_fixed_point:
        report.identity = True
        report.notes.append(f"{hw.name} computes in float{hw.float_bits}: nothing to quantize")
        return net, report
    if net.fixed_point is not None:
        raise InputError(f"network is already quantized (for {net.fixed_point.hardware})", field="fixed_point")
    if int(weight_slices) < 1:
        raise InputError("must be ≥ 1", field="weight_slices")
    if not 2 <= int(gain_bits) <= 24:
        raise InputError("must lie in [2, 24]", field="gain_bits")
    check_capability(net, hw)

    steps = int(calibration_steps if calibration_steps is not None else (overflow_check_steps or DEFAULT_CHECK_STEPS))
    if calibration is None:
        calibration, _ = calibrate(net, steps)
    controls = [_fixed_point_control(c, calibration, freeze_primal_weight, report) for c in net.controls]
    if any(a is not b for a, b in zip(controls, net.controls)):
        # the network that is quantized runs with frozen ω: its state ranges count too
        net = dataclasses.replace(net, controls=controls)
        frozen, _ = calibrate(net, steps)
        calibration = calibration.merged(frozen)
    scales = _choose_scales(net, hw, calibration.state_peak, headroom_bits, rnd, report)

    fixed_pops, new_pops = [], []
    for pop in net.populations:
        fixed, real = _quantize_population(pop, net, hw, scales, rnd, report)
        fixed_pops.append(fixed)
        new_pops.append(real)
    by_name = {f.name: f for f in fixed_pops}
    fixed_projs, new_projs = [], []
    for proj in net.projections:
        fixed, weights = _quantize_projection(proj, net.population(proj.source).spike == "binary",
                                              by_name[proj.source], by_name[proj.target], hw,
                                              int(weight_slices), rnd, report)
        fixed_projs.append(fixed)
        new_projs.append(dataclasses.replace(proj, weights=weights))

    spec = FixedPointSpec(hardware=hw.name, populations=fixed_pops, projections=fixed_projs,
                          gain_mantissa_bits=int(gain_bits), accumulator_bits=hw.state.accumulator_bits,
                          # SpiNNaker sums weight mantissas in ring buffers and shifts afterwards
                          accumulator_stage="before_shift" if hw.weights.shift_per_synapse_type
                          else "after_shift")
    provenance = dict(net.provenance)
    provenance["quantization"] = {"hardware": hw.name, "rounding": rounding, "seed": int(seed),
                                  "headroom_bits": int(headroom_bits), "weight_slices": int(weight_slices),
                                  "gain_mantissa_bits": int(gain_bits)}
    quantized = Network(new_pops, new_projs, gains=list(net.gains), schedule=net.schedule,
                        controls=controls, readout=net.readout, dt=net.dt,
                        provenance=provenance, fixed_point=spec)
    report.synapses_float = net.synapse_count
    report.synapses_chip = spec.synapse_count
    _add_notes(net, hw, report)
    if overflow_check_steps:
        from ..backends.reference_fixed import run_fixed
        report.set_overflow(run_fixed(quantized, int(overflow_check_steps), record_every=0))
    return quantized, report


def _fixed_point_control(rule, calibration: Calibration, freeze: bool, report: QuantizationReport):
    """An AdaptiveRestart rule with ω frozen at the calibrated value.

    The rule sets ω ← ρ^θ·ω^(1−θ) with ρ = ‖Δv‖/‖Δx‖ between restart points. In
    integers both moves include rounding noise, and a smaller ω means a larger
    primal step τ, which amplifies the dual's rounding into x: ρ falls, ω falls
    further. Measured on the ANYmal QP (Loihi 2): ω drifts from 0.02 to 0.002
    and ‖Ax − b‖∞ wanders up to 0.3; frozen, it stays near 0.01.
    """
    if not (isinstance(rule, AdaptiveRestart) and freeze and rule.update_primal_weight):
        return rule
    omega = calibration.primal_weight or rule.primal_weight_init
    report.notes.append(f"AdaptiveRestart: primal weight frozen at ω = {omega:.4g} (from the float "
                        f"calibration run, Calibration.primal_weight): its update would follow rounding noise")
    return dataclasses.replace(rule, primal_weight_init=float(omega), update_primal_weight=False)


def _choose_scales(net: Network, hw: HardwareConfig, state_range: dict, headroom_bits: int,
                   rnd: _Rounder, report: QuantizationReport) -> dict[str, tuple[int, int]]:
    """population → (scale exponent f, payload shift)."""
    limit = hw.state.max_value_lsb
    payload_bits = hw.features.graded_spike_payload_bits
    # A population the float run leaves at ~0 (an inactive dual) still integrates the
    # rounding noise of its sources in integers: give it at least this range.
    floor = RELATIVE_PEAK_FLOOR * max([float(v) for v in state_range.values() if math.isfinite(v)] + [1e-300])
    expected, f = {}, {}
    for pop in net.populations:
        finite_thr = pop.threshold[np.isfinite(pop.threshold)]
        candidates = [float(state_range.get(pop.name, 0.0)), float(np.abs(pop.v_init).max(initial=0.0)),
                      float(np.abs(finite_thr).max(initial=0.0))]
        if pop.reset != "none":       # a reset value must be representable (v − r or r itself)
            candidates.append(float(np.abs(pop.reset_value).max(initial=0.0)))
        peak = max(c for c in candidates if math.isfinite(c))
        expected[pop.name] = peak
        f[pop.name] = _scale_exponent(max(peak, floor) if peak > 0 or floor > 1e-300 else 1.0,
                                      limit, headroom_bits)

    def shift(pop) -> int:
        return max(0, hw.state.bits - payload_bits) if (pop.spike == "graded" and payload_bits) else 0

    def phi(pop) -> int:
        return 0 if pop.spike == "binary" else f[pop.name] - shift(pop)

    lowered = {p.name: [] for p in net.populations}
    wf = hw.weights
    for _ in range(len(net.populations) + 1):        # lowering f only helps others: converges
        changed = False
        for proj in net.projections:
            peak = _max_abs(proj.weights)
            if proj.gain is not None or peak == 0:
                continue                              # a gain's shift absorbs the exponent
            src = net.population(proj.source)
            # the exponent _block_quantize will pick (scale-free, so computed for W itself)
            _, e_real, _ = _block_quantize(np.array([peak]), np.zeros(1, dtype=np.int64), 1, wf.max_mantissa,
                                           None, rnd)
            e_needed = int(e_real[0]) + f[proj.target] - phi(src)
            if e_needed > wf.exponent_max:
                f[proj.target] -= e_needed - wf.exponent_max
                lowered[proj.target].append(f"weights of '{proj.name}'")
                changed = True
        for pop in net.populations:
            fits = [(hw.threshold, pop.threshold[np.isfinite(pop.threshold)], "threshold")]
            if pop.bias_gain is None:
                fits.append((hw.bias, pop.bias, "bias"))
            for fmt, values, what in fits:
                peak = float(np.abs(values).max(initial=0.0))
                top = fmt.max_mantissa * 2.0 ** fmt.exponent_max
                if peak > 0 and peak * 2.0 ** f[pop.name] > top:
                    f[pop.name] = _scale_exponent(peak, top, 0)
                    lowered[pop.name].append(what)
                    changed = True
        if not changed:
            break
    for pop in net.populations:
        note = f"f lowered to fit {', '.join(sorted(set(lowered[pop.name])))}" if lowered[pop.name] else ""
        report.scales.append(PopulationScale(pop.name, hw.state.bits, f[pop.name], expected[pop.name], note))
    return {p.name: (f[p.name], shift(p)) for p in net.populations}


def _max_abs(W) -> float:
    data = W.data if sp.issparse(W) else W
    return float(np.abs(data).max()) if data.size else 0.0


def _on_state_grid(values, f: int, limit: int, rnd: _Rounder, infinite_to: Optional[int] = None):
    """Real values → state LSBs, saturated; ±∞ → ±``infinite_to``. Returns (ints, clipped)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    ints = np.zeros(values.shape, dtype=np.int64)
    raw = rnd(np.ldexp(values[finite], f))
    clipped = int(np.count_nonzero(np.abs(raw) > limit))
    ints[finite] = np.clip(raw, -limit, limit)
    if infinite_to is not None:
        ints[~finite] = np.sign(values[~finite]).astype(np.int64) * infinite_to
    return ints, clipped


def _quantize_population(pop, net: Network, hw: HardwareConfig, scales: dict, rnd: _Rounder,
                         report: QuantizationReport):
    f, payload_shift = scales[pop.name]
    limit = hw.state.max_value_lsb
    lsb = 2.0 ** -f
    where = f"population '{pop.name}'"

    def grid(name, values, infinite_to=None):
        ints, clipped = _on_state_grid(values, f, limit, rnd, infinite_to)
        finite = np.isfinite(values)
        real = np.where(finite, ints * lsb, values)
        if np.any(finite):
            report.tensors.append(_error(f"{where} {name}", values[finite], real[finite], [0], clipped))
        return ints, real

    v_min_int, v_min = grid("v_min", pop.v_min, infinite_to=limit)
    v_max_int, v_max = grid("v_max", pop.v_max, infinite_to=limit)
    beyond = sum(t.clipped for t in report.tensors[-2:] if t.tensor.endswith(("v_min", "v_max"))
                 and t.tensor.startswith(where))
    if beyond:
        report.notes.append(f"{where}: {beyond} clamp bound(s) beyond the state range ±{limit * lsb:.4g} "
                            f"saturated to it (the calibrated states stay well inside)")
    v_init_int, v_init = grid("v_init", pop.v_init)
    if pop.reset != "none":
        reset_int, reset_real = grid("reset_value", pop.reset_value)
    else:
        reset_int, reset_real = np.zeros(pop.size, dtype=np.int64), pop.reset_value

    # decay in the chip's representation
    dfmt = hw.decay
    full = 1 << dfmt.bits
    if dfmt.form == "complement":
        raw = rnd(np.ldexp(1.0 - pop.decay, dfmt.bits))
        decay_code = np.clip(raw, 0, full)
        decay = 1.0 - np.ldexp(decay_code.astype(np.float64), -dfmt.bits)
    else:
        raw = rnd(np.ldexp(pop.decay, dfmt.bits))
        decay_code = np.clip(raw, 0, full)
        decay = np.ldexp(decay_code.astype(np.float64), -dfmt.bits)
    if np.any(pop.decay != 1.0):
        report.tensors.append(_error(f"{where} decay", pop.decay, decay, [-dfmt.bits],
                                     int(np.count_nonzero(raw != decay_code))))

    # bias: per-neuron mantissa and exponent in state LSBs; a gained bias has a free exponent
    # A leaky neuron rests at b/(1 − δ): keep that level under the quantized δ (the lif
    # family's voltage identity V = C(x_free + D r) needs bias = (1 − δ)·C x_free exactly).
    leaky = (pop.decay < 1.0) & (decay < 1.0)
    target = pop.bias.copy()
    target[leaky] *= (1.0 - decay[leaky]) / (1.0 - pop.decay[leaky])
    if np.any(leaky & (pop.bias != 0) & (decay != pop.decay)):
        factor = (1.0 - decay[leaky]) / (1.0 - pop.decay[leaky])
        report.notes.append(f"{where}: bias scaled by (1 − δ_q)/(1 − δ) ∈ [{factor.min():.4g}, "
                            f"{factor.max():.4g}] to keep its resting level b/(1 − δ) under the quantized decay")
    bf = hw.bias
    idx = np.arange(pop.size)
    b_m, b_e, clipped = _block_quantize(np.ldexp(target, f), idx, pop.size, bf.max_mantissa,
                                        None if pop.bias_gain is not None else (bf.exponent_min, bf.exponent_max),
                                        rnd)
    if not bf.signed and np.any(b_m < 0):
        clipped += int(np.count_nonzero(b_m < 0))
        b_m = np.maximum(b_m, 0)
    bias = np.ldexp(b_m.astype(np.float64), b_e - f)
    if np.any(pop.bias != 0):
        report.tensors.append(_error(f"{where} bias", target, bias, b_e, clipped))

    # threshold: mantissa·2^e state LSBs, e in the chip's range; ±∞ are sentinels
    tf = hw.threshold
    finite = np.isfinite(pop.threshold)
    thr_int = np.where(np.isneginf(pop.threshold), THRESHOLD_ALWAYS, THRESHOLD_NEVER).astype(np.int64)
    threshold = pop.threshold.copy()
    if np.any(finite):
        values = np.ldexp(pop.threshold[finite], f)
        # an unsigned format keeps the sign here; the note says what the chip needs
        # the state is an integer: a threshold has no fractional LSBs (exponent ≥ 0)
        t_m, t_e, clipped = _block_quantize(values, np.arange(values.size), values.size, tf.max_mantissa,
                                            (max(tf.exponent_min, 0), max(tf.exponent_max, 0)), rnd)
        thr_int[finite] = t_m << t_e
        threshold[finite] = np.ldexp(thr_int[finite].astype(np.float64), -f)
        report.tensors.append(_error(f"{where} threshold", pop.threshold[finite], threshold[finite], t_e,
                                     clipped))
        if not tf.signed and np.any(pop.threshold[finite] < 0):
            report.notes.append(f"{where}: {int(np.count_nonzero(pop.threshold[finite] < 0))} negative "
                                f"threshold(s) kept signed; {hw.name}'s threshold is unsigned, so the chip "
                                f"needs the affine state offset of theory §1C (V' = V − θ + R)")

    # a graded population on a chip without a payload width sends its whole state
    payload_bits = (hw.features.graded_spike_payload_bits or hw.state.bits) if pop.spike == "graded" else None
    fixed = PopulationFixed(
        name=pop.name, size=pop.size, state_bits=hw.state.bits, scale_exponent=f, v_init=v_init_int,
        v_min=np.minimum(v_min_int, v_max_int), v_max=v_max_int, bias_mantissa=b_m, bias_exponent=b_e,
        threshold=thr_int, reset_value=reset_int, decay=decay_code, decay_bits=dfmt.bits,
        decay_form=dfmt.form, payload_bits=payload_bits, payload_shift=payload_shift)
    real = dataclasses.replace(pop, decay=decay, bias=bias, v_min=v_min, v_max=np.maximum(v_max, v_min),
                               v_init=v_init, threshold=threshold, reset_value=reset_real)
    return fixed, real


def _quantize_projection(proj, binary_source: bool, src: PopulationFixed, dst: PopulationFixed,
                         hw: HardwareConfig, max_slices: int, rnd: _Rounder, report: QuantizationReport):
    """Weight slices in target state LSBs per source payload LSB (a binary spike is
    one unit); returns (spec, float weights)."""
    wf = hw.weights
    W = proj.weights
    rows_n, cols_n = W.shape
    source_phi = 0 if binary_source else src.payload_exponent
    to_lsb = dst.scale_exponent - source_phi              # W_lsb = W · 2^to_lsb
    if sp.issparse(W):
        W = sp.csr_matrix(W)
        values = W.data.copy()
        rows = np.repeat(np.arange(rows_n), np.diff(W.indptr))
        # copies: eliminate_zeros() below must never compact the input's index arrays
        place = lambda data: sp.csr_matrix((data, W.indices.copy(), W.indptr.copy()),  # noqa: E731
                                           shape=W.shape)
    else:
        flat = np.flatnonzero(W)
        values = W.ravel()[flat]
        rows = flat // max(cols_n, 1)

        def place(data):
            out = np.zeros(rows_n * cols_n, dtype=data.dtype)
            out[flat] = data
            return out.reshape(rows_n, cols_n)

    exp_range = None if proj.gain is not None else (wf.exponent_min, wf.exponent_max)
    residual = np.ldexp(values, to_lsb)
    slices, clipped, exps, levels = [], 0, [], 0
    for level in range(max_slices):
        if not np.any(residual):
            break
        parts = [residual > 0, residual < 0] if wf.shift_per_synapse_type else [residual != 0]
        added = False
        for part in parts:
            if not np.any(part):
                continue
            groups = rows[part] if wf.per_row_exponent else np.zeros(int(part.sum()), dtype=np.int64)
            n_groups = rows_n if wf.per_row_exponent else 1
            m, e, c = _block_quantize(residual[part], groups, n_groups, wf.max_mantissa, exp_range, rnd)
            if level == 0:
                clipped += c
            if not np.any(m):
                continue
            data = np.zeros(values.size, dtype=np.int64)
            data[part] = m
            row_exp = np.broadcast_to(e, (rows_n,)) if not wf.per_row_exponent else e
            mantissa = place(data)
            if sp.issparse(mantissa):
                mantissa.eliminate_zeros()
            slices.append(WeightSlice(mantissa=mantissa, exponent=np.array(row_exp)))
            residual[part] -= np.ldexp(m.astype(np.float64), e[groups])
            exps.append(e)
            added = True
        if not added:
            break
        levels += 1
    if not slices:                                    # an all-zero projection: one empty slice
        slices.append(WeightSlice(mantissa=place(np.zeros(values.size, dtype=np.int64)),
                                  exponent=np.zeros(rows_n, dtype=np.int64)))
        exps.append(np.zeros(1, dtype=np.int64))
    approx_values = values - np.ldexp(residual, -to_lsb)   # exact: every slice is dyadic
    weights = place(approx_values)
    report.tensors.append(_error(f"projection '{proj.name}' weights", values, approx_values,
                                 np.concatenate([np.ravel(e) for e in exps]), clipped,
                                 slices=max(levels, 1)))
    return ProjectionFixed(name=proj.name, mantissa_bits=wf.mantissa_bits, slices=slices), weights


def _add_notes(net: Network, hw: HardwareConfig, report: QuantizationReport) -> None:
    from .mapping import unsupported_features
    for line in unsupported_features(net, hw):
        report.notes.append(f"executed as the IR says, but {line}")
    if report.synapses_chip > report.synapses_float:
        report.notes.append(f"weight slices store {report.synapses_chip} synapses for "
                            f"{report.synapses_float} float ones")


# ---------------------------------------------------------------- float vs fixed
def solution_quality(qp, sol, trace) -> dict[str, Any]:
    """Solution quality on the ORIGINAL problem (qpbenchmark residuals and the parts of r_p)."""
    finite = bool(np.all(np.isfinite(sol.x)))
    eq = float(np.max(np.abs(qp.A @ sol.x - qp.b), initial=0.0)) if (finite and qp.m_eq) else 0.0
    ineq = float(np.max(qp.G @ sol.x - qp.h, initial=0.0)) if (finite and qp.m_ineq) else 0.0
    clean = lambda v: float(v) if math.isfinite(v) else None  # noqa: E731
    return {"primal_residual": clean(sol.primal_residual), "dual_residual": clean(sol.dual_residual),
            "duality_gap": clean(sol.duality_gap), "objective": clean(sol.obj),
            "equality_residual": clean(eq) if finite else None,
            "inequality_violation": clean(ineq) if finite else None,
            "steps": trace.steps, "wall_time": trace.wall_time}


def compare_float_fixed(qp, hw, family: str = "primal-dual", steps: int = 20_000, *,
                        lower_options: Optional[dict] = None, **quantize_options) -> dict[str, Any]:
    """Solve ``qp`` with ``family``'s network in float and quantized for ``hw``, both on
    the reference backend for ``steps`` steps, and score both on the original problem.

    The float run doubles as the quantizer's calibration. Returns a JSON-ready dict:
    ``float`` and ``fixed`` (residuals, objective, ‖Ax − b‖∞, max(Gx − h)), the
    ``quantization`` report (``to_dict``, its overflow check being the fixed run
    itself) and ``report_text`` (``format``). A chip the family cannot run raises
    ``CapabilityError`` (naming the family to use instead).
    """
    from ..backends.reference_fixed import run_fixed
    from ..decode import decode_solution
    from ..lower import lower
    hw = load_hardware(hw)
    net = lower(qp, family, **(lower_options or {}))
    if hw.is_fixed_point:
        check_capability(net, hw)                 # refuse before the float run
    calibration, float_trace = calibrate(net, int(steps))
    float_sol = decode_solution(net, float_trace, qp)
    quantize_options.setdefault("overflow_check_steps", 0)   # the fixed run below checks it
    quantize_options.setdefault("calibration_steps", int(steps))
    qnet, report = quantize(net, hw, calibration=calibration, **quantize_options)
    if report.identity:
        fixed_trace, fixed_sol = float_trace, float_sol
    else:
        fixed_trace = run_fixed(qnet, int(steps), record_every=0)
        report.set_overflow(fixed_trace)
        fixed_sol = decode_solution(qnet, fixed_trace, qp)
    return {"problem": qp.name, "family": family, "hardware": hw.name, "steps": int(steps),
            "float": solution_quality(qp, float_sol, float_trace),
            "fixed": solution_quality(qp, fixed_sol, fixed_trace),
            "quantization": report.to_dict(), "report_text": report.format()}


def format_comparison(result: dict) -> str:
    """The float and fixed-point figures of ``compare_float_fixed`` side by side."""
    fmt = lambda v: "—" if v is None else f"{v:.4g}"  # noqa: E731
    rows = [("primal residual", "primal_residual"), ("dual residual", "dual_residual"),
            ("duality gap", "duality_gap"), ("‖Ax − b‖∞", "equality_residual"),
            ("max(Gx − h, 0)", "inequality_violation"), ("objective", "objective"),
            ("wall time s", "wall_time")]
    lines = [f"{result['problem'] or 'problem'}: family {result['family']}, {result['steps']} steps, "
             f"float64 vs {result['hardware']} fixed point",
             f"{'':18} {'float':>14} {'fixed':>14}"]
    lines += [f"{label:18} {fmt(result['float'][key]):>14} {fmt(result['fixed'][key]):>14}" for label, key in rows]
    return "\n".join(lines)
