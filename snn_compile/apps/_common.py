"""What every application builder returns, and small helpers they share."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from ..errors import InputError
from ..qp import QP
from ..solution import Solution


class AppQP(NamedTuple):
    """A QP plus the map from its solution back to the application's answer.

        qp, decode = svm_dual(X, y)
        classifier = decode(sc.solve(qp))

    ``decode`` takes a ``Solution`` of ``qp`` (from the network or from
    ``snn_compile.classical.reference_solution``) and returns the application's
    object: a classifier, a coefficient vector, a portfolio, a control plan.
    """

    qp: QP
    decode: Callable[[Solution], Any]


def as_matrix(value, name: str, *, ndim: int = 2) -> np.ndarray:
    """A finite float array of ``ndim`` dimensions, or an InputError naming ``name``."""
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"not numeric ({exc})", field=name) from None
    if arr.ndim != ndim:
        raise InputError(f"expected a {ndim}-D array, got {arr.ndim}-D", field=name)
    if arr.size == 0:
        raise InputError("is empty", field=name)
    if not np.all(np.isfinite(arr)):
        raise InputError("contains NaN or infinite entries", field=name)
    return arr


def positive(value, name: str) -> float:
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise InputError(f"must be a finite positive number, got {value:g}", field=name)
    return value


def same_rows(X: np.ndarray, y: np.ndarray, x_name: str = "X", y_name: str = "y"):
    if X.shape[0] != y.shape[0]:
        raise InputError(f"{x_name} has {X.shape[0]} rows but {y_name} has {y.shape[0]} entries",
                         field=y_name)


def example_command_line(doc: str, name: str, fast_help: str, representative=None, **problem_file):
    """The command line every example shares: ``--out``, ``--fast`` and, when the example
    has a ``representative`` QP, ``--write-problem PATH``.

    Returns ``(args, out_folder)`` (the folder exists), or None when the call only
    wrote the representative problem (``problem_file`` are ``write_problem``'s
    keyword arguments).
    """
    import argparse
    from pathlib import Path

    from .problem_file import write_problem

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", default=f"out/{name}", help="folder for plots and results")
    parser.add_argument("--fast", action="store_true", help=fast_help)
    if representative is not None:
        parser.add_argument("--write-problem", metavar="PATH", help="write the representative QP and exit")
    args = parser.parse_args()
    if getattr(args, "write_problem", None):
        write_problem(representative().qp, args.write_problem, **problem_file)
        return None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return args, out
