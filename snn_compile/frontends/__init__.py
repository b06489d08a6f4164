"""Front ends: every way a problem gets into the compiler ends in a validated ``QP``.

``read_problem`` picks a reader by file suffix (see ``READERS``) or takes a
``qpsolvers.Problem`` / ``cvxpy.Problem`` object. Every refusal is an
``InputError`` that names the source file, the field and, where known, the line.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from ..qp import QP
from .maros_mat import read_maros_mat
from .modeling import from_cvxpy, from_qpsolvers
from .npz_format import read_npz
from .qps import read_qps
from .yaml_format import read_yaml

#: Lower-case file suffix → reader(path, name=...) -> QP.
READERS = {
    ".yaml": read_yaml, ".yml": read_yaml, ".json": read_yaml,
    ".mat": read_maros_mat,
    ".qps": read_qps, ".mps": read_qps,
    ".npz": read_npz,
}


def read_problem(path_or_obj, *, name: str | None = None) -> QP:
    """A ``QP`` from a problem file or a ``qpsolvers``/``cvxpy`` problem object."""
    if isinstance(path_or_obj, QP):
        return path_or_obj if name is None else path_or_obj.replace(name=name)
    if isinstance(path_or_obj, (str, os.PathLike)):
        path = Path(path_or_obj)
        reader = READERS.get(path.suffix.lower())
        if reader is None:
            known = ", ".join(sorted(READERS))
            raise InputError(f"unknown problem file type '{path.suffix}' (known: {known})", source=str(path))
        return reader(path, name=name)
    module = type(path_or_obj).__module__.split(".")[0]
    if module == "qpsolvers":
        return from_qpsolvers(path_or_obj, name=name)
    if module == "cvxpy":
        return from_cvxpy(path_or_obj, name=name)
    raise InputError(f"cannot read a problem from a {type(path_or_obj).__name__} object; give a file path, "
                     "a qpsolvers.Problem or a cvxpy.Problem")


__all__ = ["READERS", "read_problem", "read_yaml", "read_maros_mat", "read_qps", "read_npz",
           "from_cvxpy", "from_qpsolvers"]
