"""Warm-starting a compiled network from a previous (or shifted) solution.

A network starts from its populations' ``v_init``. These live in the
*preconditioned* variables of the network (docs/ir.md §3), so a solution of
the user's QP is mapped through the inverse of ``provenance["scaling"]``:
x̃ = x / d, z̃ = c·z / e_ineq, ỹ = c·y / e_eq (``Scaling.scale_primal`` /
``scale_duals``).

- ``primal-dual``: the primal and dual populations named by the network's
  ``AdaptiveRestart`` rule, and their averages, start at (x̃, [z̃; ỹ]).
- ``projection``: its primal population starts at x̃ (it holds no duals).
- ``lif``: no population holds x (it is decoded from filtered spike counts),
  so there is nothing to warm-start; refused with a CapabilityError.

Box multipliers (z_box) are not state in any family (they are read from the
clamp excess), so they need no warm start.

The populations emit their initial state before step 0
(``emit_initial_state``, docs/ir.md §2), so the first step's delayed
projections already see the warm start: the run continues from it exactly.
"""
from __future__ import annotations

from typing import Mapping, Optional, Union

import numpy as np

from .errors import CapabilityError, InputError
from .ir import AdaptiveRestart
from .ir.nodes import per_neuron
from .passes.precondition import Scaling
from .solution import Solution

Previous = Union[Solution, Mapping[str, np.ndarray]]


def _field(previous: Previous, name: str, size: int) -> np.ndarray:
    value = previous.get(name) if isinstance(previous, Mapping) else getattr(previous, name, None)
    if value is None:
        return np.zeros(size)
    value = np.asarray(value, dtype=np.float64).reshape(-1)
    if value.size != size:
        raise InputError(f"expected {size} values, got {value.size}", field=f"previous.{name}")
    if not np.all(np.isfinite(value)):
        raise InputError("contains NaN or infinite entries", field=f"previous.{name}")
    return value


def _scaling(net, qp) -> Scaling:
    data = net.provenance.get("scaling")
    return Scaling.identity(qp) if data is None else Scaling.from_dict(data)


def _set_init(pop, values: np.ndarray):
    # Within the population's clamp: a state outside [v_min, v_max] is one the network never holds.
    pop.v_init = per_neuron(np.clip(values, pop.v_min, pop.v_max), pop.size, f"population '{pop.name}'",
                            "v_init")


def final_primal_weight(compiled) -> Optional[float]:
    """The primal weight ω the last run of ``compiled`` ended with (None before any restart).

    Restarted PDHG learns ω from the ratio of dual to primal movement; a warm
    start of a *similar* problem (same matrices, so the same preconditioning)
    may begin where the previous run ended instead of at the lowering's ω₀.
    """
    trace = compiled.last_trace
    weights = [e["primal_weight"] for e in (trace.control_log if trace is not None else [])
               if e.get("event") == "restart" and "primal_weight" in e]
    return float(weights[-1]) if weights else None


def warm_start(compiled, previous: Previous, *, primal_weight: Optional[float] = None):
    """Set the initial state of ``compiled`` (a CompiledNetwork) to ``previous``.

    ``previous`` is a ``Solution`` of a QP with the same sizes, or a mapping
    with ``x`` and optionally ``y``, ``z`` (absent duals start at zero). The
    values are in the user's variables; this maps them into the network's.
    ``primal_weight`` (primal-dual only) replaces the restart rule's initial
    ω, e.g. with ``final_primal_weight`` of the network that solved the
    previous problem. Returns ``compiled`` so calls chain:
    ``warm_start(net, prev).solve()``.
    """
    net, qp = compiled.net, compiled.qp
    x = _field(previous, "x", qp.n)
    y, z = _field(previous, "y", qp.m_eq), _field(previous, "z", qp.m_ineq)
    scaling = _scaling(net, qp)
    x_net = scaling.scale_primal(x)
    family = net.family
    if family == "primal-dual":
        rule = next((c for c in net.controls if isinstance(c, AdaptiveRestart)), None)
        names = rule.population_names if rule is not None else ("x", "x_ag", "v", "v_ag")
        y_net, z_net, _ = scaling.scale_duals(y, z, np.zeros(qp.n))
        v_net = np.concatenate([z_net, y_net])      # the dual population holds [z; y]
        primal, primal_avg, dual, dual_avg = (net.population(name) for name in names)
        for pop, values in ((primal, x_net), (primal_avg, x_net), (dual, v_net), (dual_avg, v_net)):
            _set_init(pop, values)
        if primal_weight is not None and rule is not None:
            omega = float(primal_weight)
            if not (np.isfinite(omega) and omega > 0):
                raise InputError(f"must be a finite positive number, got {omega:g}", field="primal_weight")
            rule.primal_weight_init = omega
    elif family == "projection":
        _set_init(next(p for p in net.populations if p.role == "primal"), x_net)
    else:
        raise CapabilityError(f"family '{family}' keeps no primal state to warm-start "
                              "(warm starts need the primal-dual or projection family)")
    return compiled

