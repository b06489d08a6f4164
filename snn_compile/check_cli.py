"""``snn-compile check``: run one compiled IR on several targets and compare them.

    snn-compile check PROBLEM --targets reference,brian2,nengo [--hardware H] [--steps N]
                      [--family F] [-o OUT] [--require-all] [--json] [--no-plots] [-q]

Prints a table of targets and pairs; with ``-o`` writes ``check.json`` and
``raster_overlay.png`` into OUT (assembled next to it and moved into place
complete). Exit code 0 when every pair holds its bound, 3 when a pair does not
or a requested, installed target fails to run; 2 for bad input.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .errors import InputError


def _check_parser():
    # snn_compile.cli imports this module: import it lazily, never at module level
    from .checker import DEFAULT_STEPS
    from .cli import FAMILIES, _Parser
    p = _Parser(prog="snn-compile check",
                description="Compile PROBLEM once, run the same IR on every target for the same "
                            "number of steps, and compare every pair of targets: exactly where both "
                            "are bit-exact or float64, within a stated bound otherwise "
                            "(docs/backends.md, 'Equivalence checker').",
                epilog="Exit codes: 0 every pair holds its bound; 3 a pair does not, or a target "
                       "failed to run; 2 bad input.")
    p.add_argument("problem", help="problem file (.yaml/.json, .mat, .qps, .npz) or a saved IR folder")
    p.add_argument("--targets", "-t", default=None,
                   help="comma-separated targets, e.g. reference,brian2,nengo; NAME:float32 runs a "
                        "target in float32 (default: every installed target)")
    p.add_argument("--hardware", help="chip config: a fixed-point chip quantizes the IR once; targets "
                                      "that execute fixed point get the quantized IR")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"steps every target runs (default {DEFAULT_STEPS})")
    p.add_argument("--family", "-f", default="primal-dual", choices=FAMILIES,
                   help="network family (default: primal-dual)")
    p.add_argument("--output", "-o", default=None, help="folder for check.json and raster_overlay.png")
    p.add_argument("--require-all", action="store_true",
                   help="also fail (exit 3) when a target is not installed or refuses the IR")
    p.add_argument("--json", action="store_true", help="print check.json to stdout instead of the table")
    p.add_argument("--no-plots", action="store_true", help="skip raster_overlay.png")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing; use the exit code")
    return p


def cmd_check(argv) -> int:
    args = _check_parser().parse_args(argv)
    from .staging import staged_folder
    from .checker import check
    from .cli import EXIT_CHECK_FAILED, EXIT_OK

    out = Path(args.output) if args.output else None
    if out is not None and out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder", source=str(out), field="--output")
    show = (lambda msg: print(msg, file=sys.stderr)) if not args.quiet and sys.stderr.isatty() else None
    report = check(args.problem, args.targets, hardware=args.hardware, steps=args.steps,
                   family=args.family, require_all=args.require_all, progress=show)
    if out is not None:
        with staged_folder(out) as staging:
            report.write(staging, plots=not args.no_plots)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    elif not args.quiet:
        print(report.table() + (f"\nwritten to {out}" if out is not None else ""))
    return EXIT_OK if report.passed else EXIT_CHECK_FAILED
