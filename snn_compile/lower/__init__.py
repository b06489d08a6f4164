"""Lowering: a QP to a network IR, one module per network family.

``lower(qp, family, **params)`` looks the family up in ``FAMILIES`` (family →
"module:function"); adding a family is one line there. Modules are imported
on first use, so a family whose module is absent or broken does not break the
others. Every family accepts ``scaling=`` (a ``passes.precondition.Scaling``):
it then lowers ``scaling.apply(qp)`` and records ``scaling.to_dict()`` in
``provenance["scaling"]``, while ``provenance["qp_hash"]`` stays the hash of
the ``qp`` passed in (the user's problem, which decoding maps back to).
"""
from __future__ import annotations

import importlib
import inspect

from ..errors import InputError
from ..ir import Network
from ..qp import QP

FAMILIES = {
    "primal-dual": "primal_dual:lower_primal_dual",
    "projection": "projection:lower_projection",
    "lif": "lif:lower_lif",
}


def family_lowering(family: str):
    """The lowering function of ``family`` (InputError naming the known ones)."""
    if family not in FAMILIES:
        raise InputError(f"unknown network family {family!r}; known families: "
                         f"{', '.join(sorted(FAMILIES))}", field="family")
    module, function = FAMILIES[family].split(":")
    name = f"{__name__}.{module}"
    try:
        return getattr(importlib.import_module(name), function)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise InputError(f"network family {family!r} is registered but {name} is missing",
                         field="family") from None


def lower(qp: QP, family: str = "primal-dual", **params) -> Network:
    """Compile ``qp`` to the network IR of ``family`` (parameters: see the family's module)."""
    function = family_lowering(family)
    signature = list(inspect.signature(function).parameters.values())
    accepted = [p.name for p in signature[1:]
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature)
    unknown = sorted(set(params) - set(accepted))
    if unknown and not takes_any:
        raise InputError(f"unknown parameter(s) {', '.join(unknown)} for family {family!r}; "
                         f"it accepts: {', '.join(accepted)}", field=unknown[0])
    return function(qp, **params)


__all__ = ["FAMILIES", "family_lowering", "lower"]
