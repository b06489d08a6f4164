"""Cross-backend equivalence checker: one IR, several targets, pairwise verdicts.

    report = snn_compile.check("problem.yaml", targets=["reference", "reference:float32", "brian2"])
    report.passed, report.pairs[0].first_divergence, report.write("out/")

The problem is compiled ONCE (one float IR; with a fixed-point ``hardware``
also one quantized IR, which the targets that execute fixed point get, while
the others get the float IR). Every target runs that IR for the same number
of steps with the same state-sampling interval, and every pair of targets is
compared against an ``Expectation`` derived from the two targets' arithmetic
and the IR family alone — never from the problem (docs/backends.md,
"Equivalence checker", has the table and the reasons):

* ``exact`` pairs must produce the same spikes (steps, neurons); states,
  payloads and decoded solutions are held to a relative tolerance that is 0
  (bit-identical) or 1e-9 (two float64 implementations);
* ``approximate`` pairs are held to a bound that follows from the error
  source (float32 rounding, quantization, a documented model deviation).

For every pair the report also gives per-neuron spike-count differences, a
discrete van Rossum distance, active-set agreement and the first divergence
(step, population, neuron and QP row name); for every target the decoded
solution's residuals and objective error against the classical optimum.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import scipy.sparse as sp

from .errors import BackendUnavailable, CapabilityError, InputError
from .ir import Network
from .trace import jsonable

# ---------------------------------------------------------------- documented constants
#: Steps per target when the caller gives none: enough for the small examples to
#: converge, short enough that a check of six targets stays interactive.
DEFAULT_STEPS = 2000
#: Two float64 implementations of docs/ir.md differ only in summation order
#: (≈ k·2⁻⁵³ per step); 1e-9 leaves room for 10⁴ steps of that and still
#: catches any real semantic difference (those show at 1e-6 or above).
FLOAT64_RTOL = 1e-9
#: Unit roundoff of IEEE-754 binary32.
FLOAT32_UNIT_ROUNDOFF = 2.0 ** -24
#: Two executions of one lif network differ by whole spikes, each of which moves
#: x by at most one spike move μ (``lif_spike_move``); each stays within about two
#: moves of the optimum (snn_compile/lower/lif.py: one spike = 1.41γ on the hand
#: example, at most 3.9γ on a 5-variable QP), so their x agree within 4μ.
LIF_SPIKE_MOVES = 4.0
#: Time constant of the discrete van Rossum distance, in network steps.
VAN_ROSSUM_TAU = 10.0
#: State samples kept per run are capped at about this many values (steps × neurons):
#: below it every step is sampled, so a state divergence is located to the step.
STATE_SAMPLE_BUDGET = 4_000_000
#: A row is in the active set when it spikes in each of this many equal windows
#: of the run's last quarter ("fires persistently").
ACTIVE_WINDOWS = 4

RUN_OK, RUN_SKIPPED, RUN_REFUSED, RUN_FAILED = "ok", "skipped", "refused", "failed"


# ---------------------------------------------------------------- targets and how they execute
@dataclass(frozen=True)
class TargetSpec:
    """``NAME`` or ``NAME:DTYPE`` (``reference:float32``) or ``NAME:key=value,...``.

    A float dtype in the spec forces the float IR even when a quantized one exists.
    """

    label: str
    name: str
    options: tuple = ()

    @property
    def dtype(self) -> Optional[str]:
        return dict(self.options).get("dtype")

    @classmethod
    def parse(cls, text: str) -> "TargetSpec":
        text = str(text).strip()
        name, _, rest = text.partition(":")
        if not name:
            raise InputError(f"empty target name in {text!r}", field="targets")
        options = {}
        for item in filter(None, (s.strip() for s in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq:
                if item not in ("float64", "float32"):
                    raise InputError(f"target option {item!r} in {text!r}: expected float64, float32 "
                                     f"or key=value", field="targets")
                key, value = "dtype", item
            options[key.strip()] = _option_value(value.strip())
        return cls(label=text, name=name, options=tuple(sorted(options.items())))


def _option_value(text: str):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class Deviation:
    """A documented way a target departs from docs/ir.md, and what bounds the effect."""

    reason: str


def _nir_deviation(net: Network) -> Optional[Deviation]:
    from .backends.nir_export import nir_losses
    features = sorted({loss["feature"] for loss in nir_losses(net)})
    if not features:
        return None
    return Deviation(f"the NIR export cannot express {', '.join(features)} and runs its lossy "
                     f"equivalent (docs/backends.md, NIR)")


#: Targets that knowingly do not execute docs/ir.md exactly: name → (IR → Deviation or None).
KNOWN_DEVIATIONS = {
    "spinnaker": lambda net: Deviation(
        "PyNN/NEST neurons reset to a fixed value (hard reset) where the IR subtracts the spike "
        "size, fire several per step where the IR allows one, and run sPyNNaker's 16-bit weights"),
    "nengo-loihi": lambda net: Deviation(
        "nengo-loihi discretizes the network itself (Loihi 1 emulator), resets to a value where "
        "the IR subtracts, and fires several neurons per step where the IR allows one"),
    "nir": _nir_deviation,
}


@dataclass(frozen=True)
class Execution:
    """How one target executes the check's IR: which code and which arithmetic."""

    label: str
    implementation: str          # the registered target the backend is (or derives from)
    arithmetic: str              # "float64", "float32" or "fixed"
    deviation: Optional[Deviation] = None
    options: tuple = ()          # run options other than dtype: they may choose another code path

    def describe(self) -> str:
        return f"{self.implementation} ({self.arithmetic})"


def _registered_implementation(backend) -> str:
    """The most-derived registered target class ``backend`` is an instance of.

    A subclass of a registered backend (e.g. a test fixture) claims that
    backend's code and arithmetic, so it is held to the same exactness.
    """
    from .backends.registry import _targets
    registered = {}
    for name, spec in _targets().items():
        module, _, attr = spec.partition(":")
        registered[(module, attr)] = name
    for klass in type(backend).__mro__:
        name = registered.get((klass.__module__, klass.__qualname__))
        if name is not None:
            return name
    return getattr(backend, "name", "") or type(backend).__qualname__


def _supports_fixed_point(backend) -> bool:
    try:
        return backend.capabilities().supports("fixed_point")
    except Exception:  # a broken capabilities() is reported when the target runs
        return False


def execution_of(spec: TargetSpec, backend, net: Network) -> Execution:
    """The execution of ``spec`` on ``backend`` for ``net`` (the IR it will be given)."""
    implementation = _registered_implementation(backend)
    if net.fixed_point is not None and spec.dtype is None and _supports_fixed_point(backend):
        arithmetic = "fixed"
    else:
        dtypes = getattr(backend.capabilities(), "dtypes", ("float64",)) or ("float64",)
        arithmetic = str(spec.dtype or dtypes[0])
        if arithmetic.startswith("int"):
            # A target that only computes in integers (loihi) quantizes a float IR itself.
            arithmetic = "fixed"
    known = KNOWN_DEVIATIONS.get(implementation) or KNOWN_DEVIATIONS.get(spec.name)
    options = tuple((k, v) for k, v in spec.options if k != "dtype")
    return Execution(spec.label, implementation, arithmetic, known(net) if known else None, options)


# ---------------------------------------------------------------- expectations
@dataclass(frozen=True)
class Expectation:
    """What a pair of targets must agree on.

    ``bounds`` keys: ``spikes`` ("identical": same (step, neuron) events),
    ``state_rtol`` / ``payload_rtol`` / ``solution_rtol`` (relative, see
    docs/backends.md), ``state_rtol_per_step`` (the bound at step t is
    (t+1)·value), ``x_atol`` (∞-norm of the decoded x difference) and
    ``objective_atol`` (decoded objectives). An empty ``bounds`` holds nothing.
    """

    kind: str                     # "exact" | "approximate"
    bounds: dict
    reason: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "bounds": dict(self.bounds), "reason": self.reason}

    def summary(self) -> str:
        b = self.bounds
        if self.kind == "exact":
            return "bit-exact" if b.get("state_rtol") == 0.0 else f"same spikes, rel ≤ {b.get('state_rtol'):g}"
        if "state_rtol_per_step" in b:
            return f"≈ states ≤ (t+1)·{b['state_rtol_per_step']:.2g}"
        if "x_atol" in b:
            return f"≈ |Δx| ≤ {b['x_atol']:.3g}"
        if "objective_atol" in b:
            return f"≈ |Δobj| ≤ {b['objective_atol']:.3g}"
        return "≈ compared, not held"


def is_continuous(net: Network) -> bool:
    """True when every emission is a continuous function of the states.

    Then a small perturbation (rounding) changes the run by a small amount;
    otherwise (binary spikes, resets, a spike cap, a payload that jumps at a
    nonzero threshold) it can change a spike and the run by a whole spike.
    """
    for pop in net.populations:
        if pop.reset != "none":
            return False
        if pop.max_spikes_per_step is not None and pop.max_spikes_per_step < pop.size:
            return False
        finite = np.isfinite(pop.threshold)
        if pop.spike == "binary" and finite.any():
            return False
        if pop.spike == "graded" and pop.payload == "state" and np.any(pop.threshold[finite] != 0.0):
            return False
    return True


def max_inputs_per_neuron(net: Network) -> int:
    """k: the most terms summed into one neuron's input (synapses + bias + decay)."""
    counts = {p.name: np.zeros(p.size, dtype=np.int64) for p in net.populations}
    for proj in net.projections:
        W = proj.weights
        per_row = np.diff(sp.csr_matrix(W).indptr) if sp.issparse(W) else np.count_nonzero(W, axis=1)
        counts[proj.target] += per_row
    return int(max((c.max() for c in counts.values() if c.size), default=0)) + 2


def lif_spike_move(net: Network) -> Optional[float]:
    """μ: the largest change of the decoded x (∞-norm) that one spike causes, for the
    ``lif`` family (x = D·r + x_free with r the filtered spike counts), else None."""
    if net.family != "lif":
        return None
    binary = {p.name for p in net.populations if p.spike == "binary"}
    step = {}                      # filter population → the most one spike adds to one of its states
    for proj in net.projections:
        if proj.source in binary and proj.target not in binary:
            W = proj.weights
            largest = float(np.abs(W.data if sp.issparse(W) else W).max(initial=0.0))
            step[proj.target] = max(step.get(proj.target, 0.0), largest)
    move = 0.0
    for term in net.readout.terms:
        if term.target != "x" or term.population not in step or term.quantity != "state":
            continue
        M = sp.csc_matrix(term.matrix) if term.matrix is not None else sp.identity(
            net.population(term.population).size, format="csc")
        columns = abs(M).max(axis=0).toarray().ravel() if M.nnz else np.zeros(1)
        move = max(move, float(columns.max(initial=0.0)) * abs(term.scale) * step[term.population])
    return move if move > 0 else None


def expectation(target_a, target_b, net: Network, hw=None, *, float_net: Optional[Network] = None,
                quantization_bound: Optional[float] = None) -> Expectation:
    """The expectation for a pair, from their executions and the IR alone (never the problem's answer).

    ``target_a``/``target_b``: ``Execution`` objects (``execution_of``), or
    target names/specs, resolved with the registry. ``net`` is the IR the
    check compiled (the quantized one when ``hw`` is a fixed-point chip),
    ``float_net`` the float IR when they differ. ``quantization_bound`` is the
    objective bound of a float-vs-fixed pair (``objective_quantization_bound``);
    ``hw`` is accepted for symmetry with the CLI and only named in reasons.
    """
    a, b = (_as_execution(t, net) for t in (target_a, target_b))
    float_net = net if float_net is None else float_net
    family = float_net.family
    arithmetics = " vs ".join(sorted({a.arithmetic, b.arithmetic})) if a.arithmetic != b.arithmetic \
        else f"two {a.arithmetic} implementations"

    deviating = [side for side in (a, b) if side.deviation is not None]
    if deviating:
        why = "; ".join(f"{side.label}: {side.deviation.reason}" for side in deviating)
        return Expectation("approximate", {},
                           f"{why}. This moves the network's fixed point by a problem-dependent amount "
                           f"that no family bound covers (docs/backends.md, 'Equivalence checker'): "
                           f"compared, not held")
    if (a.implementation, a.arithmetic, a.options) == (b.implementation, b.arithmetic, b.options):
        return Expectation("exact", {"spikes": "identical", "state_rtol": 0.0, "payload_rtol": 0.0,
                                     "solution_rtol": 0.0},
                           f"same implementation ({a.implementation}), arithmetic ({a.arithmetic}) and "
                           f"options: deterministic code on the same IR is bit-identical")
    if a.arithmetic == "fixed" and b.arithmetic == "fixed":
        return Expectation("exact", {"spikes": "identical", "state_rtol": 0.0, "payload_rtol": 0.0,
                                     "solution_rtol": 0.0},
                           "both execute the quantized IR in the integer arithmetic of docs/ir.md §5, "
                           "which defines every rounding: bit-exact")
    if a.arithmetic == "float64" and b.arithmetic == "float64":
        return Expectation("exact", {"spikes": "identical", "state_rtol": FLOAT64_RTOL,
                                     "payload_rtol": FLOAT64_RTOL, "solution_rtol": FLOAT64_RTOL},
                           "two float64 implementations of docs/ir.md differ only in summation order: "
                           f"same spikes, states within {FLOAT64_RTOL:g} relative")

    move = lif_spike_move(float_net)
    if move is not None:
        return Expectation("approximate", {"x_atol": LIF_SPIKE_MOVES * move},
                           f"{arithmetics} on a lif network: a rounding (or a quantized threshold) can "
                           f"add or remove a binary spike, and one spike moves x by at most μ = {move:.3g}; "
                           f"each run of the same network stays within about two spike moves of its "
                           f"optimum, so the decoded x agree within {LIF_SPIKE_MOVES:g}μ")
    if "fixed" in (a.arithmetic, b.arithmetic):
        if quantization_bound is None:
            return Expectation("approximate", {},
                               f"float vs fixed point on a '{family}' network: its tensors are not the "
                               f"QP's data, so quantization has no first-order objective bound here: "
                               f"compared, not held")
        return Expectation("approximate", {"objective_atol": quantization_bound},
                           "float vs fixed point: the fixed-point run converges to the KKT point of the "
                           "quantized data; to first order the optimal objective moves by at most the "
                           "quantization bound (docs/backends.md), which the converged runs are held to")
    if not is_continuous(float_net):
        return Expectation("approximate", {}, f"{arithmetics} on a network with discontinuous emissions "
                                              f"(resets, caps or binary spikes) and no known family "
                                              f"bound: compared, not held")
    k = max_inputs_per_neuron(float_net)
    neurons = float_net.neuron_count
    rate = k * math.sqrt(neurons) * FLOAT32_UNIT_ROUNDOFF
    return Expectation("approximate", {"state_rtol_per_step": rate},
                       f"{arithmetics}: each update rounds a sum of at most k = {k} terms with relative "
                       f"error u = 2⁻²⁴ (≤ √N·k·u in the Euclidean norm, N = {neurons} neurons); emissions "
                       f"are continuous and the iteration does not expand, so while both runs take the "
                       f"same control decisions their states differ by at most (t+1)·√N·k·u of the "
                       f"largest state after t steps")


def _as_execution(target, net: Network) -> Execution:
    if isinstance(target, Execution):
        return target
    from .backends.base import Backend
    from .backends.registry import get_backend
    if isinstance(target, Backend):
        return execution_of(TargetSpec(target.name, target.name), target, net)
    spec = target if isinstance(target, TargetSpec) else TargetSpec.parse(target)
    return execution_of(spec, get_backend(spec.name), net)


# ---------------------------------------------------------------- quantization bound
def objective_quantization_bound(qp, optimum, float_net: Network, quantized_net: Network) -> Optional[float]:
    """First-order bound on |obj(fixed-point run) − obj(float run)| after convergence, or
    None when the network's tensors are not the QP's data (every family but primal–dual).

    A primal–dual network (its ``AdaptiveRestart`` rule names the primal, averaged
    primal and dual populations) holds the preconditioned QP's data as tensors:
    −P̃ (primal → primal), −K̃ᵀ (dual → primal), ±K̃ (primal → dual), −q̃ and −c̃
    (biases of primal and dual), the box (clamps of the primal). Quantization
    replaces each tensor T by T + δT (read off the two IRs entry by entry) and
    applies every gain with relative error ε_g = 2^−(G−1); the fixed-point run
    then converges to the KKT point of the perturbed data, and by the envelope
    theorem the optimal objective moves by at most

        ½|x̃|ᵀ|δP̃||x̃| + |δq̃|ᵀ|x̃| + |w̃|ᵀ(|δK̃||x̃| + |δc̃|) + |x̃|ᵀ|δK̃ᵀ||w̃| + |z̃_box|ᵀ|δbox|
        + ε_g·(½|x̃|ᵀ|P̃||x̃| + |q̃|ᵀ|x̃| + 2|w̃|ᵀ(|K̃||x̃| + |c̃|))

    at the classical optimum (x̃, w̃ = [z̃; ỹ], z̃_box) in the network's scaled
    variables, divided by the cost scale. Condition-free: no solve. Copies of one
    block (−P̃ from x and from x_ag; K̃ with 2σ and −K̃ with σ) are rounded alike
    (symmetric rounding of the same matrix), so a block's δ is the largest over its copies.
    """
    from .ir import AdaptiveRestart
    from .passes.precondition import Scaling
    rule = next((c for c in float_net.controls if isinstance(c, AdaptiveRestart)), None)
    if rule is None or optimum is None or not np.all(np.isfinite(optimum.x)):
        return None
    primal, dual = {rule.primal, rule.primal_average}, rule.dual
    scaling = float_net.provenance.get("scaling")
    if scaling is not None:
        scaling = Scaling.from_dict(scaling) if isinstance(scaling, dict) else scaling
        x = scaling.scale_primal(optimum.x)
        y, z, z_box = scaling.scale_duals(optimum.y, optimum.z, optimum.z_box)
        cost = float(scaling.cost)
    else:
        x, y, z, z_box, cost = optimum.x, optimum.y, optimum.z, optimum.z_box, 1.0
    ax, aw, azb = np.abs(x), np.abs(np.concatenate([z, y])), np.abs(z_box)
    n, m = ax.size, aw.size

    quantized = {p.name: p for p in quantized_net.projections}

    def block(sources: set, target: str, shape: tuple):
        """(largest |δW| over the block's copies, largest |W|), sparse on W's pattern."""
        delta = size = sp.csr_matrix(shape)
        for proj in float_net.projections:
            if proj.source in sources and proj.target == target and proj.name in quantized:
                W = sp.csr_matrix(proj.weights)
                delta = delta.maximum(abs(sp.csr_matrix(quantized[proj.name].weights) - W))
                size = size.maximum(abs(W))
        return delta, size

    dP, P = block(primal, rule.primal, (n, n))
    dKt, _ = block({dual}, rule.primal, (n, m))
    dK, K = block({rule.primal}, dual, (m, n))
    pops_f = {p.name: p for p in float_net.populations}
    pops_q = {p.name: p for p in quantized_net.populations}

    def delta(pop, key):
        a, b = getattr(pops_f[pop], key), getattr(pops_q[pop], key)
        finite = np.isfinite(a) & np.isfinite(b)
        return np.where(finite, np.abs(np.where(finite, a, 0) - np.where(finite, b, 0)),
                        np.where(a == b, 0.0, np.inf)), np.where(np.isfinite(a), np.abs(a), 0.0)

    dq, q = delta(rule.primal, "bias")
    dc, c = delta(dual, "bias")
    d_lo, _ = delta(rule.primal, "v_min")
    d_hi, _ = delta(rule.primal, "v_max")
    d_box = np.where(z_box < 0, d_lo, np.where(z_box > 0, d_hi, 0.0))
    spec = quantized_net.fixed_point
    eps_g = 2.0 ** -(spec.gain_mantissa_bits - 1) if spec is not None else 0.0
    total = (0.5 * ax @ (dP @ ax) + dq @ ax + aw @ (dK @ ax + dc) + ax @ (dKt @ aw)
             + float(np.sum(azb * d_box, where=azb > 0))
             + eps_g * (0.5 * ax @ (P @ ax) + q @ ax + 2.0 * aw @ (K @ ax + c)))
    return float(total / cost)


# ---------------------------------------------------------------- run results
@dataclass
class TargetRun:
    """One target's outcome: skipped/refused/failed with a reason, or a trace and its solution."""

    label: str
    name: str
    status: str
    reason: str = ""
    execution: Optional[Execution] = None
    quantized_ir: bool = False
    trace: Any = None
    solution: Any = None
    wall_time: float = 0.0
    error_vs_optimum: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"label": self.label, "target": self.name, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
        if self.execution is not None:
            out.update(implementation=self.execution.implementation,
                       arithmetic=self.execution.arithmetic, ir="quantized" if self.quantized_ir else "float")
            if self.execution.deviation is not None:
                out["deviation"] = self.execution.deviation.reason
        if self.trace is not None:
            out.update(steps=self.trace.steps, wall_time_s=self.wall_time,
                       spikes={name: int(c.sum()) for name, c in self.trace.spike_counts.items()})
        if self.solution is not None:
            s = self.solution
            out["solution"] = {"obj": _num(s.obj), "primal_residual": _num(s.primal_residual),
                               "dual_residual": _num(s.dual_residual),
                               "duality_gap": _num(s.duality_gap), "x": s.x.tolist()}
            out["vs_optimum"] = {k: _num(v) for k, v in self.error_vs_optimum.items()}
        return out


@dataclass
class Divergence:
    """Where two runs first part: the step, the population, the neuron and its QP row."""

    step: int
    population: str
    neuron: int
    what: str                   # "spike", "payload" or "state"
    detail: str
    row: Optional[str] = None
    resolution: int = 1         # state divergences are located to within this many steps

    def describe(self) -> str:
        where = f"{self.population}[{self.neuron}]" + (f" ({self.row})" if self.row else "")
        when = f"step {self.step}" if self.resolution <= 1 or self.what != "state" else \
            f"step ≤ {self.step} (sampled every {self.resolution})"
        return f"{when}, {where}, {self.what}: {self.detail}"

    def to_dict(self) -> dict:
        return {"step": self.step, "population": self.population, "neuron": self.neuron,
                "row": self.row, "what": self.what, "detail": self.detail,
                "resolution_steps": self.resolution}


@dataclass
class PairResult:
    a: str
    b: str
    expectation: Expectation
    holds: bool
    metrics: dict
    violations: list
    first_divergence: Optional[Divergence] = None
    first_spike_difference: Optional[Divergence] = None

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "expectation": self.expectation.to_dict(),
                "holds": self.holds, "violations": list(self.violations),
                "first_divergence": self.first_divergence.to_dict() if self.first_divergence else None,
                "first_spike_difference": (self.first_spike_difference.to_dict()
                                           if self.first_spike_difference else None),
                "metrics": _jsonable(self.metrics)}


@dataclass
class CheckReport:
    problem: str
    family: str
    steps: int
    hardware: Optional[str]
    runs: list
    pairs: list
    optimum: Any = None
    net: Any = None
    quantized_net: Any = None
    record_every: int = 1
    timing: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    require_all: bool = False
    labels: dict = field(default_factory=dict)        # population → QP row/variable names
    quantization: Optional[dict] = None               # the quantization report, when the check quantized

    @property
    def failures(self) -> list[str]:
        """Why the check fails: pairs out of bound and targets that failed to run."""
        out = [f"target {r.label} failed: {r.reason}" for r in self.runs if r.status == RUN_FAILED]
        if self.require_all:
            out += [f"target {r.label} {r.status}: {r.reason}" for r in self.runs
                    if r.status in (RUN_SKIPPED, RUN_REFUSED)]
        for pair in self.pairs:
            if not pair.holds:
                first = f"; first divergence: {pair.first_divergence.describe()}" if pair.first_divergence else ""
                out.append(f"{pair.a} vs {pair.b}: {'; '.join(pair.violations)}{first}")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures

    def run(self, label: str) -> TargetRun:
        return next(r for r in self.runs if r.label == label)

    def pair(self, a: str, b: str) -> PairResult:
        return next(p for p in self.pairs if {p.a, p.b} == {a, b})

    def to_dict(self) -> dict:
        opt = None
        if self.optimum is not None:
            opt = {"obj": _num(self.optimum.obj), "status": self.optimum.status.value,
                   "solver": self.optimum.solver, "x": self.optimum.x.tolist()}
        return _jsonable({
            "format": "snn-compile/check", "version": 1, "passed": self.passed,
            "problem": self.problem, "family": self.family, "steps": self.steps,
            "hardware": self.hardware, "record_every": self.record_every,
            "ir": None if self.net is None else {"neurons": self.net.neuron_count,
                                                 "synapses": self.net.synapse_count,
                                                 "quantized": self.quantized_net is not None},
            "optimum": opt, "targets": [r.to_dict() for r in self.runs],
            "pairs": [p.to_dict() for p in self.pairs], "failures": self.failures,
            "notes": list(self.notes), "quantization": self.quantization, "timing_s": self.timing,
            "constants": {"float64_rtol": FLOAT64_RTOL, "float32_unit_roundoff": FLOAT32_UNIT_ROUNDOFF,
                          "lif_spike_moves": LIF_SPIKE_MOVES, "van_rossum_tau_steps": VAN_ROSSUM_TAU,
                          "active_windows": ACTIVE_WINDOWS}})

    # ------------------------------------------------------------ terminal table
    def table(self) -> str:
        lines = [f"{self.problem}: {self.family} network, {self.steps} steps"
                 + (f", hardware {self.hardware}" if self.hardware else "")
                 + (f", optimum {self.optimum.obj:.9g}" if self.optimum is not None
                    and math.isfinite(self.optimum.obj) else ""), ""]
        rows = [("target", "status", "arithmetic", "time s", "objective", "rel obj err", "max residual")]
        for r in self.runs:
            if r.status != RUN_OK:
                reason = r.reason if len(r.reason) <= 100 else r.reason[:99] + "…"
                rows.append((r.label, r.status, "", "", "", "", reason))
                continue
            s, e = r.solution, r.error_vs_optimum
            arithmetic = r.execution.arithmetic + (" (quantized IR)" if r.quantized_ir else "") + \
                (", deviates" if r.execution.deviation is not None else "")
            rows.append((r.label, r.status, arithmetic,
                         f"{r.wall_time:.2f}", _fmt(s.obj if s else math.nan),
                         _fmt(e.get("relative_objective_error", math.nan)),
                         _fmt(e.get("max_residual", math.nan))))
        lines += _columns(rows)
        if self.pairs:
            lines.append("")
            rows = [("pair", "expected", "measured", "result")]
            for p in self.pairs:
                rows.append((f"{p.a} vs {p.b}", p.expectation.summary(), _measured(p),
                             "ok" if p.holds else "FAIL"))
            lines += _columns(rows)
            for p in self.pairs:
                if p.first_divergence is not None:
                    lines.append(f"  {p.a} vs {p.b}: first divergence: {p.first_divergence.describe()}")
                elif p.first_spike_difference is not None:
                    lines.append(f"  {p.a} vs {p.b}: spike trains part at "
                                 f"{p.first_spike_difference.describe()}")
        for note in self.notes:
            lines.append(f"note: {note}")
        lines.append("")
        failures = self.failures
        lines.append("PASSED: every pair holds its bound" if not failures else
                     f"FAILED ({len(failures)}): " + failures[0])
        return "\n".join(lines)

    # ------------------------------------------------------------ files
    def write(self, folder, *, plots: bool = True) -> list[Path]:
        """Write ``check.json`` (and ``raster_overlay.png``) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        paths = []
        if plots:
            paths.append(plot_raster_overlay(self, folder / "raster_overlay.png"))
        self.timing["plot"] = time.perf_counter() - started
        path = folder / "check.json"
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False))
        paths.insert(0, path)
        return paths


def _measured(p: PairResult) -> str:
    m, b = p.metrics, p.expectation.bounds
    if m.get("spikes_identical"):
        parts = ["same spikes"]
    elif m.get("spike_count_max_diff", 0) == 0:
        parts = ["spike times differ, counts equal"]
    else:
        parts = [f"spike counts differ by ≤ {m['spike_count_max_diff']}"]
    if "state_rtol_per_step" in b:
        parts.append(f"states {m.get('state_max_ratio_to_bound', 0):.2g} of bound")
    elif "state_rtol" in b:
        parts.append(f"states rel {m.get('state_max_rel', 0):.2g}")
    if m.get("x_max_abs") is not None:
        parts.append(f"|Δx| {m['x_max_abs']:.2g}")
    if "objective_atol" in b and m.get("objective_abs") is not None:
        parts.append(f"|Δobj| {m['objective_abs']:.2g}")
    return ", ".join(parts)


def _columns(rows) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    out = []
    for k, row in enumerate(rows):
        out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def _fmt(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def _num(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _jsonable(value):
    """JSON types for check.json; a non-finite number (a diverged run) is null."""
    return jsonable(value, nonfinite=lambda _: None)


# ---------------------------------------------------------------- row names
def row_labels(qp, net: Network) -> dict[str, list[str]]:
    """Population → one QP name per neuron, where the neuron stands for a QP row or variable.

    Constraint populations get constraint names (ineq then eq rows for the
    primal–dual family; the stacked rows [G; A; −A; lb; ub] of the projection
    and lif families), primal populations of n neurons variable names; the names
    then spread along one-to-one (diagonal) projections, so averages, filters and
    payload sums are named after the row or variable they follow.
    """
    if qp is None:
        return {}
    ineq = list(qp.ineq_names or (f"g{i}" for i in range(qp.m_ineq)))
    eq = list(qp.eq_names or (f"a{i}" for i in range(qp.m_eq)))
    variables = [qp.var_label(j) for j in range(qp.n)]
    lo = [f"lb {variables[j]}" for j in np.flatnonzero(np.isfinite(qp.lb))]
    hi = [f"ub {variables[j]}" for j in np.flatnonzero(np.isfinite(qp.ub))]
    stacked = ineq + [f"{e} (≤)" for e in eq] + [f"{e} (≥)" for e in eq] + lo + hi
    out = {}
    for pop in net.populations:
        if pop.role == "constraint" and pop.size == qp.m_ineq + qp.m_eq:
            out[pop.name] = ineq + eq
        elif pop.role == "constraint" and pop.size == len(stacked):
            out[pop.name] = stacked
        elif pop.role == "primal" and pop.size == qp.n:
            out[pop.name] = variables
    one_to_one = [(p.source, p.target) for p in net.projections if _is_diagonal(p.weights)]
    changed = True
    while changed:
        changed = False
        for a, b in one_to_one:
            for src, dst in ((a, b), (b, a)):
                if src in out and dst not in out:
                    out[dst] = out[src]
                    changed = True
    return out


def _is_diagonal(W) -> bool:
    if W.shape[0] != W.shape[1] or W.shape[0] == 0:
        return False
    coo = sp.coo_matrix(W)
    nonzero = coo.data != 0
    return bool(nonzero.any()) and bool(np.all(coo.row[nonzero] == coo.col[nonzero]))


# ---------------------------------------------------------------- comparisons
def _sorted_events(trace, population: str, size: int):
    steps, neurons, payloads = trace.events.get(population, (np.empty(0, np.int64),) * 3)
    keys = np.asarray(steps, dtype=np.int64) * max(size, 1) + np.asarray(neurons, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    return keys[order], np.asarray(payloads, dtype=np.float64)[order]


def _van_rossum_sq(keys_a, keys_b, size: int, steps: int, tau: float) -> np.ndarray:
    """Per-neuron squared discrete van Rossum distance, in units of one unmatched spike.

    f[t] = e^(−1/τ)·f[t−1] + s[t] (s: spikes at step t, +1 for a, −1 for b) and
    D² = (1 − e^(−2/τ))·Σ_t f[t]², so one lone spike (long run) gives D² = 1 and a
    spike shifted by δ steps about 2(1 − e^(−δ/τ)). Neurons whose spike trains
    are identical have D = 0 and are not filtered.
    """
    decay = math.exp(-1.0 / tau)
    out = np.zeros(size)
    differing = np.unique(np.setxor1d(keys_a, keys_b, assume_unique=True) % max(size, 1))
    if size == 0 or steps == 0 or differing.size == 0:
        return out
    keys = np.concatenate([keys_a, keys_b])
    signs = np.concatenate([np.ones(keys_a.size), -np.ones(keys_b.size)])
    keep = np.isin(keys % size, differing)
    keys, signs = keys[keep], signs[keep]
    column = np.searchsorted(differing, keys % size)
    chunk = max(1, STATE_SAMPLE_BUDGET // steps)
    for start in range(0, differing.size, chunk):
        stop = min(differing.size, start + chunk)
        mine = (column >= start) & (column < stop)
        grid = np.zeros((steps, stop - start))
        np.add.at(grid, (keys[mine] // size, column[mine] - start), signs[mine])
        filtered = _exponential_filter(grid, decay)
        out[differing[start:stop]] = (1.0 - decay ** 2) * np.sum(filtered ** 2, axis=0)
    return out


def _exponential_filter(grid: np.ndarray, decay: float) -> np.ndarray:
    """f[t] = decay·f[t−1] + grid[t] along axis 0, vectorised as decay^t·cumsum(decay^−j·grid[j])
    in blocks short enough that decay^−j stays below e^200."""
    steps = grid.shape[0]
    block = max(1, int(200.0 / -math.log(decay)))
    out = np.empty_like(grid)
    carry = np.zeros(grid.shape[1])
    for start in range(0, steps, block):
        part = grid[start:start + block]
        k = np.arange(part.shape[0], dtype=np.float64)
        grow, shrink = decay ** -k, decay ** k
        f = np.cumsum(part * grow[:, None], axis=0) * shrink[:, None]
        f += carry[None, :] * (shrink * decay)[:, None]
        out[start:start + part.shape[0]] = f
        carry = f[-1]
    return out


def _active_rows(keys, size: int, steps: int) -> np.ndarray:
    """Neurons that spike in each of ACTIVE_WINDOWS equal windows of the last quarter."""
    start = steps - steps // 4
    if size == 0 or steps // 4 < ACTIVE_WINDOWS:
        return np.zeros(size, dtype=bool)
    step, neuron = keys // size, keys % size
    late = step >= start
    window = ((step[late] - start) * ACTIVE_WINDOWS) // (steps - start)
    hits = np.zeros((ACTIVE_WINDOWS, size), dtype=bool)
    hits[window, neuron[late]] = True
    return hits.all(axis=0)


def _schedule_position(net: Network) -> dict[str, int]:
    order = {}
    for phase in net.schedule:
        for name in phase:
            order.setdefault(name, len(order))
    return order


def _rel_diff_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a − b| elementwise with equal values (including equal infinities) giving 0."""
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
    diff[(a == b) | (np.isnan(a) & np.isnan(b))] = 0.0
    diff[np.isnan(diff)] = np.inf
    return diff


def compare_pair(run_a: TargetRun, run_b: TargetRun, exp: Expectation, net: Network,
                 labels: Optional[dict] = None, *, tau: float = VAN_ROSSUM_TAU) -> PairResult:
    """Compare two runs of the same IR and hold them to ``exp`` (``labels``: ``row_labels``)."""
    labels = labels or {}
    ta, tb = run_a.trace, run_b.trace
    bounds = exp.bounds
    metrics: dict[str, Any] = {}
    violations: list[str] = []
    candidates: list[tuple] = []          # (step, schedule position, Divergence)
    position = _schedule_position(net)
    steps = min(ta.steps, tb.steps)

    def divergence(step, pop, neuron, what, detail, resolution=1) -> Divergence:
        names = labels.get(pop)
        row = names[neuron] if names is not None and 0 <= neuron < len(names) else None
        return Divergence(int(step), pop, int(neuron), what, detail, row, int(resolution))

    # ---- spikes
    spiking = [p for p in net.populations if p.name in ta.events or p.name in tb.events]
    identical = True
    first_spike = None
    vr_total, vr_max, vr_where = 0.0, 0.0, None
    active = {}
    payload_rel = 0.0
    for pop in spiking:
        ka, pa = _sorted_events(ta, pop.name, pop.size)
        kb, pb = _sorted_events(tb, pop.name, pop.size)
        only = np.setxor1d(ka, kb, assume_unique=True)
        if only.size:
            identical = False
            key = int(only[0])
            in_a = bool(np.isin(key, ka))
            d = divergence(key // pop.size, pop.name, key % pop.size, "spike",
                           f"spikes in {run_a.label if in_a else run_b.label} only")
            if first_spike is None or (d.step, position[d.population]) < (first_spike.step, position[first_spike.population]):
                first_spike = d
        common, ia, ib = np.intersect1d(ka, kb, assume_unique=True, return_indices=True)
        if common.size:
            diff = _rel_diff_rows(pa[ia], pb[ib])
            scale = max(float(np.abs(pa[ia][np.isfinite(pa[ia])]).max(initial=0.0)),
                        float(np.abs(pb[ib][np.isfinite(pb[ib])]).max(initial=0.0)))
            rel = diff / scale if scale > 0 else np.where(diff > 0, np.inf, 0.0)
            payload_rel = max(payload_rel, float(rel.max()))
            tol = bounds.get("payload_rtol")
            if tol is not None:
                bad = np.flatnonzero(rel > tol)
                if bad.size:
                    key = int(common[bad[0]])
                    candidates.append((key // pop.size, position[pop.name],
                                       divergence(key // pop.size, pop.name, key % pop.size, "payload",
                                                  f"payload {pa[ia][bad[0]]:.17g} vs {pb[ib][bad[0]]:.17g} "
                                                  f"(relative {rel[bad[0]]:.3g} > {tol:g})")))
        vr = _van_rossum_sq(ka, kb, pop.size, steps, tau)
        vr_total += float(vr.sum())
        if vr.size and vr.max() > vr_max:
            vr_max, vr_where = float(vr.max()), f"{pop.name}[{int(vr.argmax())}]"
        if pop.role == "constraint":
            act_a, act_b = _active_rows(ka, pop.size, steps), _active_rows(kb, pop.size, steps)
            names = labels.get(pop.name) or [f"{pop.name}[{i}]" for i in range(pop.size)]
            active[pop.name] = {run_a.label: [names[i] for i in np.flatnonzero(act_a)],
                                run_b.label: [names[i] for i in np.flatnonzero(act_b)],
                                "agree": bool(np.array_equal(act_a, act_b)),
                                "jaccard": _jaccard(act_a, act_b)}
    metrics["spikes_identical"] = identical
    metrics["payload_max_rel"] = payload_rel
    metrics["van_rossum_sq_total"] = vr_total
    metrics["van_rossum_sq_max"] = vr_max
    if vr_where:
        metrics["van_rossum_sq_max_at"] = vr_where
    metrics["active_set"] = active
    if first_spike is not None and bounds.get("spikes") == "identical":
        candidates.append((first_spike.step, position[first_spike.population], first_spike))
    if ta.events_truncated or tb.events_truncated:
        metrics["events_truncated"] = True

    # ---- spike counts (complete even when events were capped)
    count_max, count_total, count_where = 0, 0, None
    for name in ta.spike_counts:
        if name not in tb.spike_counts:
            continue
        delta = np.abs(ta.spike_counts[name].astype(np.int64) - tb.spike_counts[name].astype(np.int64))
        count_total += int(delta.sum())
        if delta.size and delta.max() > count_max:
            count_max = int(delta.max())
            i = int(delta.argmax())
            names = labels.get(name)
            count_where = f"{name}[{i}]" + (f" ({names[i]})" if names else "")
    metrics["spike_count_max_diff"] = count_max
    metrics["spike_count_total_diff"] = count_total
    if count_where:
        metrics["spike_count_max_diff_at"] = count_where

    # ---- discrete control decisions (restarts and the like)
    split = _decision_split(ta.control_log, tb.control_log)
    if split is not None:
        metrics["control_decisions_part_at"] = split[0]
        metrics["control_decisions_part"] = split[1]

    # ---- states: samples on common steps, then the final states
    state_rel, ratio_max = 0.0, 0.0
    per_step = bounds.get("state_rtol_per_step")
    state_tol = bounds.get("state_rtol")
    held_until = None                           # per-step pairs: states are held before this step
    if per_step is not None and split is not None:
        held_until = split[0]
    series = _state_series(ta, tb, net)
    if per_step is not None:
        exhausted = _float32_range_exhausted(series)
        if exhausted is not None and (held_until is None or exhausted < held_until):
            held_until = exhausted
            metrics["float32_range_exhausted_at"] = exhausted
    if held_until is not None:
        metrics["states_held_before_step"] = held_until
    resolution = max(ta.record_every or 1, tb.record_every or 1)
    for sample_steps, per_pop, scale in series:
        for name, (a, b) in per_pop.items():
            diff = _rel_diff_rows(a, b)                           # (samples, neurons)
            worst = diff.max(axis=1) if diff.shape[1] else np.zeros(len(sample_steps))
            with np.errstate(invalid="ignore", divide="ignore"):
                rel = np.where(worst == 0, 0.0, worst / np.where(scale > 0, scale, np.nan))
            rel = np.nan_to_num(rel, nan=np.inf)
            state_rel = max(state_rel, float(rel.max(initial=0.0)))
            if per_step is not None:
                limit = (sample_steps + 1) * per_step
                held = sample_steps < held_until if held_until is not None else np.ones(rel.size, bool)
                if held.any():
                    ratio_max = max(ratio_max, float((rel[held] / limit[held]).max()))
                bad = np.flatnonzero((rel > limit) & held)
            elif state_tol is not None:
                bad = np.flatnonzero(rel > state_tol)
            else:
                continue
            if bad.size:
                k = int(bad[0])
                tol_k = float(limit[k]) if per_step is not None else float(state_tol)
                over = np.flatnonzero(diff[k] > tol_k * scale[k]) if scale[k] > 0 else np.flatnonzero(diff[k])
                neuron = int(over[0]) if over.size else int(np.argmax(diff[k]))
                candidates.append((int(sample_steps[k]), position[name],
                                   divergence(sample_steps[k], name, neuron, "state",
                                              f"{a[k, neuron]:.17g} vs {b[k, neuron]:.17g} (relative "
                                              f"{rel[k]:.3g} > {tol_k:.3g})", resolution)))
    metrics["state_max_rel"] = state_rel
    if per_step is not None:
        metrics["state_max_ratio_to_bound"] = ratio_max

    # ---- decoded solutions
    sa, sb = run_a.solution, run_b.solution
    if sa is not None and sb is not None:
        sol_rel = 0.0
        for key in ("x", "y", "z", "z_box"):
            u, v = getattr(sa, key), getattr(sb, key)
            diff = _rel_diff_rows(u, v)
            scale = max(1.0, float(np.abs(u[np.isfinite(u)]).max(initial=0.0)),
                        float(np.abs(v[np.isfinite(v)]).max(initial=0.0)))
            rel = float(diff.max(initial=0.0)) / scale
            metrics[f"solution_{key}_rel"] = rel
            sol_rel = max(sol_rel, rel)
        metrics["solution_max_rel"] = sol_rel
        metrics["x_max_abs"] = float(_rel_diff_rows(sa.x, sb.x).max(initial=0.0))
        move = lif_spike_move(net)
        if move is not None:
            metrics["x_max_abs_in_spike_moves"] = metrics["x_max_abs"] / move
        metrics["objective_abs"] = abs(sa.obj - sb.obj) if math.isfinite(sa.obj) and math.isfinite(sb.obj) \
            else (0.0 if (math.isnan(sa.obj) and math.isnan(sb.obj)) else math.inf)
        if "solution_rtol" in bounds and sol_rel > bounds["solution_rtol"]:
            violations.append(f"decoded solutions differ by {sol_rel:.3g} relative "
                              f"(> {bounds['solution_rtol']:g})")
        if "x_atol" in bounds and not metrics["x_max_abs"] <= bounds["x_atol"]:
            violations.append(f"decoded x differ by {metrics['x_max_abs']:.3g} (> {bounds['x_atol']:.3g})")
        if "objective_atol" in bounds and not metrics["objective_abs"] <= bounds["objective_atol"]:
            violations.append(f"decoded objectives differ by {metrics['objective_abs']:.3g} "
                              f"(> {bounds['objective_atol']:.3g})")
    elif any(k in bounds for k in ("solution_rtol", "x_atol", "objective_atol")):
        metrics["solution_max_rel"] = None

    if ta.steps != tb.steps:
        violations.append(f"step counts differ: {ta.steps} vs {tb.steps}")
    # at one step and population a state divergence comes first: payloads and spikes follow from it
    order = {"state": 0, "payload": 1, "spike": 2}
    candidates.sort(key=lambda c: (c[0], c[1], order[c[2].what]))
    first = candidates[0][2] if candidates else None
    if first is not None:
        kinds = sorted({c[2].what for c in candidates})
        violations.insert(0, f"{', '.join(kinds)} out of bound from step {first.step}")
    return PairResult(run_a.label, run_b.label, exp, holds=not violations, metrics=metrics,
                      violations=violations, first_divergence=first, first_spike_difference=first_spike)


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = int(np.count_nonzero(a | b))
    return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union


def _decision_split(log_a: list, log_b: list):
    """(step, description) of the first control decision the runs do not share, or None.

    A decision is a log entry's step, event and (for restarts) source; the KKT
    values and primal weights it carries are continuous and not compared.
    """
    def decisions(log):
        return [(int(e.get("step", -1)), str(e.get("event")), str(e.get("source", "")))
                for e in log if e.get("event") != "stop"]
    da, db = decisions(log_a), decisions(log_b)
    for ea, eb in zip(da, db):
        if ea != eb:
            first = min(ea[0], eb[0])
            return first, f"{ea[1]}({ea[2]}) at step {ea[0]} vs {eb[1]}({eb[2]}) at step {eb[0]}"
    if len(da) != len(db):
        extra = (da if len(da) > len(db) else db)[min(len(da), len(db))]
        return extra[0], f"{extra[1]}({extra[2]}) at step {extra[0]} in one run only"
    return None


def _float32_range_exhausted(series) -> Optional[int]:
    """The first sample step where one run is non-finite while the other's states are within
    2^24 of the float32 maximum: from there float32 cannot follow (its sums overflow)."""
    limit = float(np.finfo(np.float32).max) * FLOAT32_UNIT_ROUNDOFF
    for sample_steps, per_pop, _ in series:
        for k in range(len(sample_steps)):
            finite_a = all(np.all(np.isfinite(a[k])) for a, _ in per_pop.values())
            finite_b = all(np.all(np.isfinite(b[k])) for _, b in per_pop.values())
            if finite_a and finite_b:
                continue
            peak = max(float(np.abs(m[k][np.isfinite(m[k])]).max(initial=0.0))
                       for pair in per_pop.values() for m in pair)
            return int(sample_steps[k]) if peak >= limit else None
    return None


def _state_series(ta, tb, net: Network):
    """[(sample steps, {population: (a, b)}, running network state scale)] for the
    common samples and, separately, the final states.

    The scale at a sample is the largest finite |state| any population of either
    run has reached up to that step: errors made while the states were large
    persist after they shrink, and they propagate between populations.
    """
    out = []
    names = [p.name for p in net.populations if p.name in ta.samples and p.name in tb.samples]
    if names:
        sa, sb = ta.samples[names[0]][0], tb.samples[names[0]][0]
        common, ia, ib = np.intersect1d(np.asarray(sa), np.asarray(sb), return_indices=True)
        if common.size:
            per_pop = {n: (np.asarray(ta.samples[n][1], dtype=np.float64)[ia],
                           np.asarray(tb.samples[n][1], dtype=np.float64)[ib]) for n in names}
            out.append((common.astype(np.int64), per_pop, _running_scale(per_pop, common.size)))
    finals = {p.name: (np.asarray(ta.final_state[p.name], dtype=np.float64)[None, :],
                       np.asarray(tb.final_state[p.name], dtype=np.float64)[None, :])
              for p in net.populations if p.name in ta.final_state and p.name in tb.final_state}
    if finals:
        scale = _running_scale(finals, 1)
        if out:
            scale = np.maximum(scale, out[0][2][-1:])
        out.append((np.array([min(ta.steps, tb.steps) - 1]), finals, scale))
    return out


def _running_scale(per_pop: dict, length: int) -> np.ndarray:
    scale = np.zeros(length)
    for a, b in per_pop.values():
        for m in (a, b):
            if m.shape[1]:
                finite = np.where(np.isfinite(m), np.abs(m), 0.0)
                scale = np.maximum(scale, finite.max(axis=1))
    return np.maximum.accumulate(scale)


# ---------------------------------------------------------------- the check
def _with_spike_recording(net: Network) -> Network:
    """The same IR with every population that can spike recorded (a trace flag, not semantics)."""
    pops = []
    changed = False
    for pop in net.populations:
        can_spike = pop.spike == "binary" or bool(np.any(np.isfinite(pop.threshold)))
        if can_spike and not pop.record:
            pop = dataclasses.replace(pop, record=True)
            changed = True
        pops.append(pop)
    return dataclasses.replace(net, populations=pops) if changed else net


def _resolve_targets(targets, backends) -> list[TargetSpec]:
    from .backends.registry import available_targets
    backends = dict(backends or {})
    if targets is None:
        names = [name for name, (ok, _) in available_targets().items() if ok]
    elif isinstance(targets, str):
        names = [t for t in (s.strip() for s in targets.split(",")) if t]
    else:
        names = [str(t) for t in targets]
    names += [label for label in backends if label not in names]
    specs = [TargetSpec.parse(n) for n in names]
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise InputError(f"a target is listed twice: {', '.join(labels)}", field="targets")
    if not specs:
        raise InputError("no targets to check", field="targets")
    return specs


def _instantiate(spec: TargetSpec, backends: dict):
    """(backend or None, status, reason). Unknown names are bad input (InputError)."""
    if spec.label in backends:
        return backends[spec.label], RUN_OK, ""
    from .backends.registry import available_targets, get_backend
    status = available_targets()
    if spec.name not in status:
        get_backend(spec.name)                          # raises InputError listing the known targets
    ok, reason = status[spec.name]
    if not ok:
        return None, RUN_SKIPPED, f"not installed: {reason}"
    try:
        return get_backend(spec.name), RUN_OK, ""
    except BackendUnavailable as exc:
        return None, RUN_SKIPPED, str(exc)


def _compile(problem, family: str, hardware, family_params: dict, qp):
    """(qp or None, float IR, quantized IR or None, quantization report or None, hardware or None, notes)."""
    from .api import as_qp
    from .ir import load_network
    notes = []
    hw = None
    if hardware is not None:
        from .hardware import load_hardware
        hw = load_hardware(hardware)
    if isinstance(problem, Network) or (isinstance(problem, (str, Path)) and Path(problem).is_dir()):
        net = problem if isinstance(problem, Network) else load_network(problem)
        qp = as_qp(qp) if qp is not None else None
        if qp is None:
            notes.append("no QP given with the IR: decoded solutions are not compared")
        quantized, q_report = None, None
        if net.fixed_point is not None:
            quantized, net = net, dataclasses.replace(net, fixed_point=None)
            notes.append("the IR is quantized: float targets run its dequantized parameters")
        elif hw is not None and hw.is_fixed_point:
            from .passes.quantize import quantize
            quantized, q_report = quantize(net, hw)
        return qp, net, quantized, q_report, hw, notes
    from .lower import lower
    qp = as_qp(problem)
    net = lower(qp, family, **family_params)
    quantized, q_report = None, None
    if hw is not None and hw.is_fixed_point:
        from .passes.quantize import quantize
        quantized, q_report = quantize(net, hw)
    return qp, net, quantized, q_report, hw, notes


def check(problem, targets=None, *, hardware=None, steps: int = DEFAULT_STEPS,
          family: str = "primal-dual", backends: Optional[dict] = None, qp=None,
          family_params: Optional[dict] = None, record_every: Optional[int] = None,
          van_rossum_tau: float = VAN_ROSSUM_TAU, require_all: bool = False,
          progress=None) -> CheckReport:
    """Compile ``problem`` once, run it on every target, compare every pair.

    ``problem``: a QP, a problem file, a ``Network`` or a saved IR folder (then
    ``qp`` gives the problem to decode against). ``targets``: names or specs
    (``"reference:float32"``), a comma-separated string, or None for every
    installed target. ``backends``: label → Backend instance, used instead of
    the registry for that label (and added to the targets when not listed).
    ``hardware``: a chip name/path; a fixed-point chip quantizes the IR once and
    the targets that execute fixed point get the quantized IR. ``require_all``:
    a skipped or refused target fails the check too.
    ``progress(message)`` is called as each target starts.
    """
    steps = int(steps)
    if steps < 1:
        raise InputError("must be at least 1", field="steps")
    if not van_rossum_tau > 0:
        raise InputError("must be positive", field="van_rossum_tau")
    backends = dict(backends or {})
    timing: dict[str, Any] = {"runs": {}}
    started = time.perf_counter()
    specs = _resolve_targets(targets, backends)
    instances = {s.label: _instantiate(s, backends) for s in specs}
    qp, float_net, quantized_net, q_report, hw, notes = _compile(problem, family, hardware,
                                                                 dict(family_params or {}), qp)
    float_net = _with_spike_recording(float_net)
    if quantized_net is not None:
        quantized_net = _with_spike_recording(quantized_net)
    timing["compile"] = time.perf_counter() - started

    started = time.perf_counter()
    optimum = None
    if qp is not None:
        from .classical import reference_solution
        optimum = reference_solution(qp)
    timing["classical"] = time.perf_counter() - started

    if record_every is None:
        record_every = max(1, math.ceil(steps * float_net.neuron_count / STATE_SAMPLE_BUDGET))
    record_every = int(record_every)

    runs: list[TargetRun] = []
    decode_time = 0.0
    for spec in specs:
        backend, status, reason = instances[spec.label]
        if backend is None:
            runs.append(TargetRun(spec.label, spec.name, status, reason))
            continue
        use_quantized = (quantized_net is not None and spec.dtype is None
                         and _supports_fixed_point(backend))
        net = quantized_net if use_quantized else float_net
        run = TargetRun(spec.label, spec.name, RUN_OK, quantized_ir=use_quantized)
        try:
            run.execution = execution_of(spec, backend, net)
            backend.check(net)
        except CapabilityError as exc:
            run.status, run.reason = RUN_REFUSED, str(exc)
            runs.append(run)
            continue
        except Exception as exc:
            run.status, run.reason = RUN_FAILED, f"{type(exc).__name__}: {exc}"
            runs.append(run)
            continue
        if progress is not None:
            progress(f"running {spec.label} ({run.execution.describe()}) for {steps} steps")
        t0 = time.perf_counter()
        try:
            trace = backend.run(net, steps, record_every=record_every, **dict(spec.options))
        except CapabilityError as exc:   # refuses this IR (or has no simulator): said, not a bug
            run.status, run.reason = RUN_REFUSED, str(exc)
        except Exception as exc:  # a requested target that cannot run is a failure, not a skip
            run.status, run.reason = RUN_FAILED, f"{type(exc).__name__}: {exc}"
        else:
            run.trace = trace
            if trace.steps != steps:
                run.status, run.reason = RUN_FAILED, f"ran {trace.steps} of {steps} steps"
        run.wall_time = time.perf_counter() - t0
        timing["runs"][spec.label] = run.wall_time
        if run.trace is not None and qp is not None:
            t0 = time.perf_counter()
            try:
                from .decode import decode_solution
                run.solution = decode_solution(net, run.trace, qp)
                run.error_vs_optimum = _error_vs_optimum(run.solution, optimum)
            except Exception as exc:
                run.status, run.reason = RUN_FAILED, f"decoding failed: {type(exc).__name__}: {exc}"
            decode_time += time.perf_counter() - t0
        runs.append(run)
    timing["decode"] = decode_time

    started = time.perf_counter()
    q_bound = None
    if quantized_net is not None and qp is not None:
        q_bound = objective_quantization_bound(qp, optimum, float_net, quantized_net)
        if q_bound is not None:
            notes.append(f"quantization moves the optimal objective by at most {q_bound:.3g} "
                         f"(first order, from the two IRs' tensors at the classical optimum)")
    labels = row_labels(qp, float_net)
    ran = [r for r in runs if r.status == RUN_OK]
    pairs = []
    for i, ra in enumerate(ran):
        for rb in ran[i + 1:]:
            exp = expectation(ra.execution, rb.execution, quantized_net or float_net, hw,
                              float_net=float_net, quantization_bound=q_bound)
            pair_net = quantized_net if (ra.quantized_ir and rb.quantized_ir) else float_net
            pairs.append(compare_pair(ra, rb, exp, pair_net, labels, tau=van_rossum_tau))
    timing["compare"] = time.perf_counter() - started
    timing["runs_total"] = float(sum(timing["runs"].values()))

    name = qp.name if qp is not None and getattr(qp, "name", None) else \
        (str(problem) if not isinstance(problem, Network) else "network")
    return CheckReport(problem=name, family=float_net.family, steps=steps,
                       hardware=None if hw is None else hw.name, runs=runs, pairs=pairs,
                       optimum=optimum, net=float_net, quantized_net=quantized_net,
                       record_every=record_every, timing=timing, notes=notes, require_all=require_all,
                       labels=labels, quantization=q_report.to_dict() if q_report is not None else None)


def _error_vs_optimum(solution, optimum) -> dict:
    out = {"max_residual": max(solution.primal_residual, solution.dual_residual, solution.duality_gap),
           "primal_residual": solution.primal_residual, "dual_residual": solution.dual_residual,
           "duality_gap": solution.duality_gap}
    if optimum is not None and math.isfinite(optimum.obj):
        out["relative_objective_error"] = abs(solution.obj - optimum.obj) / max(1.0, abs(optimum.obj))
        out["x_error_inf"] = float(np.max(np.abs(solution.x - optimum.x), initial=0.0))
    return out


# ---------------------------------------------------------------- the overlay raster
_MARKERS = ["o", "x", "+", "s", "^", "D", "v", "*"]


def plot_raster_overlay(report: CheckReport, path, *, max_points: int = 60_000) -> Path:
    """Every target's spikes on one raster: rows are spiking neurons (stacked by
    population), each target has its own marker, colour and a small vertical
    offset so coinciding spikes stay visible; first divergences are marked."""
    from .diagnostics import _pyplot
    plt = _pyplot()
    net = report.net
    ran = [r for r in report.runs if r.status == RUN_OK and r.trace is not None]
    offsets, total = {}, 0
    for pop in net.populations:
        if any(pop.name in r.trace.events for r in ran):
            offsets[pop.name] = total
            total += pop.size
    fig, ax = plt.subplots(figsize=(10, max(3.0, min(10, 0.18 * total + 2))))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    width = 0.6 / max(len(ran), 1)
    for k, run in enumerate(ran):
        xs, ys = [], []
        for name, offset in offsets.items():
            if name in run.trace.events:
                steps, neurons, _ = run.trace.events[name]
                xs.append(np.asarray(steps))
                ys.append(np.asarray(neurons) + offset)
        if not xs:
            continue
        x, y = np.concatenate(xs), np.concatenate(ys).astype(float)
        if x.size > max_points:          # thin uniformly: the picture, not the data, is the goal
            keep = np.linspace(0, x.size - 1, max_points).astype(np.int64)
            x, y = x[keep], y[keep]
        ax.scatter(x, y + (k - (len(ran) - 1) / 2) * width, s=10, marker=_MARKERS[k % len(_MARKERS)],
                   color=colours[k % len(colours)], linewidths=0.8, alpha=0.7, label=run.label)
    for pair in report.pairs:
        d = pair.first_divergence
        if d is not None and not pair.holds:
            ax.axvline(d.step, color="red", lw=0.8, ls="--")
            y = offsets.get(d.population, 0) + d.neuron if d.population in offsets else total - 0.5
            ax.annotate(f"{pair.a} vs {pair.b}: first divergence\n{d.what} {d.population}[{d.neuron}]",
                        (d.step, y), fontsize=7, color="red", xytext=(5, 5), textcoords="offset points")
    labels = _plot_row_labels(report, offsets, total)
    if labels is not None:
        ax.set_yticks(range(total))
        ax.set_yticklabels(labels, fontsize=7)
    ax.set_ylim(-1, max(total, 1))
    ax.set_xlim(0, max(report.steps, 1))
    ax.set_xlabel("network step")
    ax.set_ylabel("spiking neuron")
    verdict = "all pairs within bounds" if report.passed else "FAILED"
    ax.set_title(f"{report.problem}: spikes per target ({report.family}) — {verdict}")
    if ran:
        ax.legend(loc="upper right", fontsize=7)
    if not ran:
        ax.text(0.5, 0.5, "no target ran", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _plot_row_labels(report: CheckReport, offsets: dict, total: int):
    if total == 0 or total > 40 or report.net is None:
        return None
    out = []
    for name in offsets:
        names = report.labels.get(name)
        size = report.net.population(name).size
        out += [f"{name}[{i}]" + (f" {names[i]}" if names else "") for i in range(size)]
    return out
