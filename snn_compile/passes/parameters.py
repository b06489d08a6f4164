"""Parameter streaming: new q, h, b, lb, ub for a network whose matrices stay.

Receding-horizon control solves the same QP structure again and again with
new vectors. These passes rewrite only what depends on the vectors —
biases, thresholds, clamps, initial states, and the restart rule's copy of
the problem's vectors — and reuse every weight, step size and scaling of the
compiled network, so an update costs O(n + m), not a recompilation. Like every
pass they are pure: a new ``Network`` comes back, the input is untouched.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import CapabilityError, InputError
from ..ir import AdaptiveRestart, Network
from ..qp import QP, matvec
from .precondition import Scaling

STREAMABLE_FAMILIES = ("primal-dual", "projection", "lif")


def _scaling_of(net: Network, qp: QP) -> Scaling:
    data = net.provenance.get("scaling")
    return Scaling.identity(qp) if data is None else (data if isinstance(data, Scaling) else Scaling.from_dict(data))


def _replace_populations(net: Network, changes: dict, controls=None) -> Network:
    pops = [dataclasses.replace(p, **changes[p.name]) if p.name in changes else p for p in net.populations]
    return Network(pops, net.projections, gains=net.gains, schedule=net.schedule,
                   controls=net.controls if controls is None else controls, readout=net.readout,
                   dt=net.dt, provenance=net.provenance)


def _check_same_structure(net: Network, old: QP, new: QP):
    if (new.n, new.m_ineq, new.m_eq) != (net.provenance.get("n"), net.provenance.get("m_ineq"),
                                         net.provenance.get("m_eq")):
        raise InputError("an update must keep the problem's sizes", field="update")
    for name in ("lb", "ub"):
        if not np.array_equal(np.isfinite(getattr(old, name)), np.isfinite(getattr(new, name))):
            raise InputError("an update may change finite bounds but not which bounds are finite "
                             "(that changes the network's structure: recompile)", field=name)


def update_parameters(net: Network, old: QP, new: QP) -> Network:
    """The network of ``new`` (same P, G, A as ``old``), reusing ``net``'s weights."""
    if getattr(net, "fixed_point", None) is not None:
        raise CapabilityError("parameter streaming into a quantized network is not supported yet: "
                              "update the float network and quantize it again")
    _check_same_structure(net, old, new)
    family = net.family
    if family == "primal-dual":
        return _update_primal_dual(net, new)
    if family == "projection":
        return _update_projection(net, new)
    if family == "lif":
        return _update_lif(net, new)
    raise CapabilityError(f"parameter streaming is defined for the families {STREAMABLE_FAMILIES}, "
                          f"not {family!r}")


def _update_primal_dual(net: Network, qp: QP) -> Network:
    s = _scaling_of(net, qp)
    q, h, b = s.cost * s.d * qp.q, s.e_ineq * qp.h, s.e_eq * qp.b
    lb, ub = qp.lb / s.d, qp.ub / s.d
    changes = {"x": dict(bias=-q, v_min=lb, v_max=ub, v_init=np.clip(net.population("x").v_init, lb, ub)),
               "x_ag": dict(v_init=np.clip(net.population("x_ag").v_init, lb, ub)),
               "v": dict(bias=-np.concatenate([h, b]))}
    controls = [dataclasses.replace(c, problem=dataclasses.replace(c.problem, q=q, h=h, b=b, lb=lb, ub=ub))
                if isinstance(c, AdaptiveRestart) else c for c in net.controls]
    return _replace_populations(net, changes, controls)


def _update_projection(net: Network, qp: QP) -> Network:
    from ..lower.common import stack_constraint_rows
    scaled = _scaling_of(net, qp).apply(qp) if net.provenance.get("scaling") else qp
    rows = stack_constraint_rows(scaled)
    norms = np.sqrt(rows.row_norms_sq())
    norms[norms == 0] = 1.0
    eta = net.provenance["params"]["eta"]
    return _replace_populations(net, {"cons": dict(bias=-rows.h / norms), "grad": dict(bias=-eta * scaled.q)})


def _update_lif(net: Network, qp: QP) -> Network:
    from ..lower.common import stack_constraint_rows
    from ..lower.lif import _solver
    scaled = _scaling_of(net, qp).apply(qp) if net.provenance.get("scaling") else qp
    params = net.provenance["params"]
    P = scaled.P + params["ridge"] * np.eye(qp.n) if params["ridge"] else scaled.P
    x_free = -_solver(P)(scaled.q)
    rows = stack_constraint_rows(scaled)
    cons = net.population("cons")
    # The equality margins (half a spike) depend only on weights: keep them.
    margin = cons.threshold - _unmargined_thresholds(net)
    v_free = matvec(rows.C, x_free)
    changes = {"cons": dict(bias=params["leak"] * params["dt"] * v_free, v_init=v_free,
                            threshold=rows.h + margin)}
    updated = _replace_populations(net, changes)
    updated.readout = dataclasses.replace(net.readout, offsets={**net.readout.offsets, "x": x_free})
    updated.provenance = {**net.provenance, "thresholds_base": rows.h}
    return updated


def _unmargined_thresholds(net: Network) -> np.ndarray:
    """The rows' h as lowered (before equality margins), remembered across updates."""
    base = net.provenance.get("thresholds_base")
    if base is not None:
        return np.asarray(base)
    cons = net.population("cons")
    kinds = np.array(net.provenance["params"].get("row_kind_list", []), dtype=object)
    if kinds.size != cons.size:
        raise CapabilityError("this lif network does not record its row kinds; recompile it to stream")
    spike = cons.reset_value
    margin = np.where(np.isin(kinds, ("eq_up", "eq_lo")), net.provenance["params"]["equality_margin"] * spike, 0.0)
    return cons.threshold - margin


def with_initial_state(net: Network, states: dict) -> Network:
    """A copy of ``net`` starting from ``states`` (population → state vector): a warm start."""
    unknown = set(states) - {p.name for p in net.populations}
    if unknown:
        raise InputError(f"unknown population(s) {sorted(unknown)}", field="states")
    pops = {p.name: p for p in net.populations}
    # Clip into the clamps: after an update the old state may lie outside new bounds.
    return _replace_populations(net, {name: dict(v_init=np.clip(np.asarray(v, dtype=np.float64),
                                                                pops[name].v_min, pops[name].v_max))
                                      for name, v in states.items()})
