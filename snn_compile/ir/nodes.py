"""The node types of the network IR: one small validated dataclass each.

The exact discrete-time semantics of every field are in ``docs/ir.md``; the
reference backend (``snn_compile.backends.reference``) is their executable form.
Per-neuron parameters are float64 arrays of the population's size; matrices are
dense arrays or ``scipy.sparse`` CSR.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np
import scipy.sparse as sp

from ..errors import InputError

Matrix = Union[np.ndarray, sp.csr_matrix]

SPIKE_KINDS = ("binary", "graded")
PAYLOADS = ("state", "excess")          # graded payload: v, or v − threshold
RESETS = ("none", "subtract", "to_value")
ROLES = ("primal", "constraint", "filter", "aux")
QUANTITIES = ("state", "clamp_excess", "average", "spike_rate")
TARGETS = ("x", "y", "z", "z_box")


def _fail(node: str, field_: str, reason: str):
    raise InputError(reason, source=f"IR {node}", field=field_)


def per_neuron(value, size: int, node: str, field_: str) -> np.ndarray:
    """Broadcast a scalar or check a vector: every per-neuron field is an array."""
    arr = np.array(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(size, float(arr))
    if arr.shape != (size,):
        _fail(node, field_, f"expected {size} values, got shape {arr.shape}")
    if np.any(np.isnan(arr)):
        _fail(node, field_, "contains NaN")
    return arr


def as_weight_matrix(value, shape: tuple[int, int], node: str, field_: str) -> Matrix:
    if sp.issparse(value):
        mat = sp.csr_matrix(value, dtype=np.float64)
        mat.sort_indices()
    else:
        mat = np.array(value, dtype=np.float64)
    if mat.shape != shape:
        _fail(node, field_, f"expected shape {shape}, got {mat.shape}")
    data = mat.data if sp.issparse(mat) else mat
    if not np.all(np.isfinite(data)):
        _fail(node, field_, "contains non-finite weights")
    return mat


@dataclass(eq=False)
class Population:
    """A group of neurons sharing one update rule; parameters are per neuron.

    Update (see docs/ir.md §2): I = g_b·bias + Σ g_k W_k e_k;  u = decay⊙v + I;
    v = clip(u, v_min, v_max); fire where v > threshold; emit; reset.
    """

    name: str
    size: int
    role: str = "aux"
    decay: Any = 1.0
    bias: Any = 0.0
    bias_gain: Optional[str] = None
    v_min: Any = -np.inf
    v_max: Any = np.inf
    v_init: Any = 0.0
    threshold: Any = -np.inf
    spike: str = "graded"
    payload: str = "state"
    reset: str = "none"
    reset_value: Any = 0.0
    max_spikes_per_step: Optional[int] = None
    record: bool = False
    emit_initial_state: bool = False

    def __post_init__(self):
        node = f"population '{self.name}'"
        if not self.name or not isinstance(self.name, str):
            _fail(node, "name", "must be a non-empty string")
        if int(self.size) != self.size or self.size < 0:
            _fail(node, "size", "must be a non-negative integer")
        self.size = int(self.size)
        for key, allowed in (("role", ROLES), ("spike", SPIKE_KINDS), ("payload", PAYLOADS),
                             ("reset", RESETS)):
            if getattr(self, key) not in allowed:
                _fail(node, key, f"must be one of {allowed}, got {getattr(self, key)!r}")
        for key in ("decay", "bias", "v_min", "v_max", "v_init", "threshold", "reset_value"):
            setattr(self, key, per_neuron(getattr(self, key), self.size, node, key))
        if np.any(self.v_min > self.v_max):
            _fail(node, "v_min", "v_min > v_max for some neuron")
        if np.any(~np.isfinite(self.decay)) or np.any(~np.isfinite(self.bias)):
            _fail(node, "decay", "decay and bias must be finite")
        if np.any(~np.isfinite(self.v_init)):
            _fail(node, "v_init", "must be finite")
        if self.max_spikes_per_step is not None and int(self.max_spikes_per_step) < 1:
            _fail(node, "max_spikes_per_step", "must be ≥ 1 or None")


@dataclass(eq=False)
class Projection:
    """Synapses ``source → target``: ``I_target += gain(t) · W @ e_source(t − delay)``."""

    source: str
    target: str
    weights: Matrix
    delay: int = 1
    gain: Optional[str] = None
    name: str = ""

    def __post_init__(self):
        self.name = self.name or f"{self.source}->{self.target}"
        if int(self.delay) != self.delay or self.delay < 0:
            _fail(f"projection '{self.name}'", "delay", "must be a non-negative integer")
        self.delay = int(self.delay)
        if not (sp.issparse(self.weights) or isinstance(self.weights, np.ndarray)):
            self.weights = np.asarray(self.weights, dtype=np.float64)
        if self.weights.ndim != 2:
            _fail(f"projection '{self.name}'", "weights", "must be a 2-D matrix")
        self.weights = as_weight_matrix(self.weights, self.weights.shape,
                                        f"projection '{self.name}'", "weights")

    @property
    def nnz(self) -> int:
        return int(self.weights.nnz) if sp.issparse(self.weights) else int(np.count_nonzero(self.weights))


#: Closed-form step-size terms of restarted accelerated PDHG (docs/ir.md §2.1).
#: Each is a function of the epoch counter t (1 at the first step after the start
#: or a restart) and the primal weight ω, both owned by the AdaptiveRestart rule.
APDHG_TERMS = ("b", "1-b", "tau", "tau*b", "tau*(1-b)", "sigma")


@dataclass(eq=False)
class Gain:
    """A global scalar multiplying projections/biases that name it.

    Without ``formula`` it is piecewise constant over steps: ``value`` until
    ``steps[0]``, then ``values[0]`` from step ``steps[0]`` on, and so on.
    With ``formula="apdhg"`` it is ``value × term(t, ω)`` where ``params``
    holds ``term`` (one of APDHG_TERMS) and the constants ``L``, ``k``, ``s``
    (docs/ir.md §2.1). Control rules may rescale a gain at run time.
    """

    name: str
    value: float
    steps: tuple = ()
    values: tuple = ()
    formula: Optional[str] = None
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        node = f"gain '{self.name}'"
        self.value = float(self.value)
        self.steps = tuple(int(s) for s in self.steps)
        self.values = tuple(float(v) for v in self.values)
        if len(self.steps) != len(self.values):
            _fail(node, "steps", "steps and values must have the same length")
        if any(b <= a for a, b in zip(self.steps, self.steps[1:])) or any(s < 0 for s in self.steps):
            _fail(node, "steps", "must be non-negative and strictly increasing")
        if not all(np.isfinite((self.value,) + self.values)):
            _fail(node, "value", "must be finite")
        if self.formula not in (None, "apdhg"):
            _fail(node, "formula", f"unknown formula {self.formula!r} (known: apdhg)")
        if self.formula == "apdhg":
            if self.steps:
                _fail(node, "steps", "a formula gain has no piecewise schedule")
            if self.params.get("term") not in APDHG_TERMS:
                _fail(node, "params.term", f"must be one of {APDHG_TERMS}")
            for key in ("L", "k", "s"):
                value = self.params.get(key)
                if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                    _fail(node, f"params.{key}", "must be a finite non-negative number")
            if not 0 < self.params["s"] < 1 or self.params["k"] <= 0:
                _fail(node, "params", "needs 0 < s < 1 and k > 0")
            self.params = {"term": self.params["term"], "L": float(self.params["L"]),
                           "k": float(self.params["k"]), "s": float(self.params["s"])}

    def at(self, step: int, *, epoch_step: int | None = None, primal_weight: float = 1.0) -> float:
        """g(step) before run-time multipliers; ``epoch_step`` is t of docs/ir.md §2.1."""
        if self.formula == "apdhg":
            t = step + 1 if epoch_step is None else epoch_step
            return self.value * apdhg_term(self.params, t, primal_weight)
        value = self.value
        for s, v in zip(self.steps, self.values):
            if step >= s:
                value = v
        return value


def apdhg_term(params: dict, t: int, omega: float) -> float:
    """b = 2/(t+1), τ = 1/(b·L/s + ω·k/√s), σ = √s·ω/k (docs/ir.md §2.1).

    Evaluated for every gain on every step: only the requested term is computed.
    """
    term, L, k, s = params["term"], params["L"], params["k"], params["s"]
    b = 2.0 / (t + 1)
    if term == "b":
        return b
    if term == "1-b":
        return 1.0 - b
    if term == "sigma":
        return math.sqrt(s) * omega / k
    tau = 1.0 / (b * L / s + omega * k / math.sqrt(s))
    return tau if term == "tau" else tau * b if term == "tau*b" else tau * (1.0 - b)


@dataclass(eq=False)
class ReadoutTerm:
    """``target += scale · matrix @ quantity(population) / gain(step)``.

    ``matrix`` None means identity. ``divide_by_gain`` lets a clamp excess
    (α·z_box) be read back as a dual without the backend knowing α.
    """

    target: str
    population: str
    quantity: str = "state"
    matrix: Optional[Matrix] = None
    scale: float = 1.0
    divide_by_gain: Optional[str] = None

    def __post_init__(self):
        node = f"readout term for '{self.target}'"
        if self.target not in TARGETS:
            _fail(node, "target", f"must be one of {TARGETS}")
        if self.quantity not in QUANTITIES:
            _fail(node, "quantity", f"must be one of {QUANTITIES}")
        if self.matrix is not None:
            m = self.matrix
            shape = m.shape if hasattr(m, "shape") else np.shape(m)
            self.matrix = as_weight_matrix(m, tuple(shape), node, "matrix")
        self.scale = float(self.scale)


@dataclass(eq=False)
class Readout:
    """Maps network quantities to the (preconditioned) QP's x, y, z, z_box."""

    terms: list = field(default_factory=list)
    offsets: dict = field(default_factory=dict)   # target -> vector added at the end
    sizes: dict = field(default_factory=dict)     # target -> length (n, m_eq, m_ineq, n)

    def __post_init__(self):
        for key in self.sizes:
            if key not in TARGETS:
                _fail("readout", "sizes", f"unknown target {key!r}")
        self.sizes = {k: int(v) for k, v in self.sizes.items()}
        self.offsets = {k: per_neuron(v, self.sizes.get(k, np.size(v)), "readout", f"offsets.{k}")
                        for k, v in self.offsets.items()}
