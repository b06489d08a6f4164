"""The ``snn-compile`` command.

    snn-compile PROBLEM --target NAME [-o OUT] [options]   compile, run, decode
    snn-compile inspect PROBLEM                            sizes, sparsity, conditioning, optimum
    snn-compile targets                                    installed targets
    snn-compile check PROBLEM --targets a,b,...            run one IR on several targets, compare

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback),
1 internal error, 3 a check failed (``snn-compile check``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import CapabilityError, InputError, SnnCompileError

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_CHECK_FAILED = 0, 1, 2, 3
FAMILIES = ("primal-dual", "projection", "lif")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2."""

    def error(self, message):
        raise InputError(f"{self.prog}: {message} (see --help)")


def _targets_help() -> str:
    from .backends.registry import available_targets
    rows = []
    for name, (ok, reason) in sorted(available_targets().items()):
        rows.append(f"{name}" + ("" if ok else f" (not installed: {reason})"))
    return ", ".join(rows)


def _main_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="snn-compile",
        description="Compile a convex QP to a spiking network, run it on a target and decode "
                    "the solution. Other forms: 'snn-compile inspect PROBLEM', 'snn-compile targets', "
                    "'snn-compile check PROBLEM --targets reference,brian2,...'.",
        epilog=f"Installed targets: {_targets_help()}.")
    p.add_argument("problem", help="problem file: .yaml/.json (docs/problem-format.md), "
                                   "Maros–Meszaros .mat, .qps/.mps, or .npz")
    p.add_argument("--target", "-t", default="reference", help="backend to run on (default: reference)")
    p.add_argument("--family", "-f", default="primal-dual", choices=FAMILIES,
                   help="network family (default: primal-dual)")
    p.add_argument("--hardware", help="chip config name (hardware_configs/NAME.yaml) or path to a YAML file")
    p.add_argument("--steps", type=int, default=None, help="step budget (default: family's default)")
    p.add_argument("--tol", type=float, default=1e-3,
                   help="stop when all three qpbenchmark residuals are below this (default 1e-3)")
    p.add_argument("--check-every", type=int, default=None, help="steps between stopping checks")
    p.add_argument("--output", "-o", default=None,
                   help="output folder (IR, solution.json, plots); for a target that writes one "
                        "file (nir) that file, e.g. OUT.nir")
    p.add_argument("--no-plots", action="store_true", help="skip raster.png and convergence.png")
    p.add_argument("--quiet", "-q", action="store_true")
    return p


def _inspect_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="snn-compile inspect",
                description="Print sizes, sparsity, a conditioning estimate, the PSD check and the "
                            "classical optimum of a problem.")
    p.add_argument("problem")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


def cmd_inspect(argv) -> int:
    args = _inspect_parser().parse_args(argv)
    from .frontends import read_problem
    from .problem_report import inspect_problem
    qp = read_problem(args.problem)
    report = inspect_problem(qp)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for key, value in report.items():
            print(f"{key:>24}: {value}")
    return EXIT_OK


def cmd_targets(argv) -> int:
    _Parser(prog="snn-compile targets", description="List the targets and whether they are installed.") \
        .parse_args(argv)
    from .backends.registry import available_targets
    for name, (ok, reason) in sorted(available_targets().items()):
        print(f"{name:14} {'installed' if ok else 'not installed: ' + reason}")
    return EXIT_OK


def cmd_compile(argv) -> int:
    args = _main_parser().parse_args(argv)
    from .api import run_and_write
    solution = run_and_write(args.problem, target=args.target, family=args.family,
                             hardware=args.hardware, steps=args.steps, tol=args.tol,
                             check_every=args.check_every, output=args.output,
                             plots=not args.no_plots, progress=not args.quiet and sys.stderr.isatty())
    if not args.quiet:
        if solution.extras.get("target_report"):
            print(solution.extras["target_report"])
        float_run = solution.extras.get("float_reference")
        if float_run:
            print(f"quantized for {args.hardware}: residuals primal/dual/gap "
                  f"{solution.primal_residual:.2e}/{solution.dual_residual:.2e}/{solution.duality_gap:.2e}, "
                  f"obj {solution.obj:.9g}; the float network on the same budget: "
                  f"{float_run['primal_residual']:.2e}/{float_run['dual_residual']:.2e}/"
                  f"{float_run['duality_gap']:.2e}, obj {float_run['obj']:.9g}")
        print(f"status {solution.status.value}: obj {solution.obj:.9g} after {solution.steps} steps, "
              f"{solution.spikes} spikes; residuals primal {solution.primal_residual:.2e}, "
              f"dual {solution.dual_residual:.2e}, gap {solution.duality_gap:.2e}"
              + (f"; written to {args.output}" if args.output else ""))
    return EXIT_OK


def cmd_check(argv) -> int:
    from .check_cli import cmd_check as run_check
    return run_check(argv)


COMMANDS = {"inspect": cmd_inspect, "targets": cmd_targets, "check": cmd_check}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = COMMANDS.get(argv[0]) if argv else None
    try:
        return command(argv[1:]) if command else cmd_compile(argv)
    except SystemExit as exc:            # --help
        return int(exc.code or 0)
    except (InputError, CapabilityError) as err:
        print(f"snn-compile: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("snn-compile: interrupted", file=sys.stderr)
        return 130
    except SnnCompileError as err:
        print(f"snn-compile: error: {err}", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as err:  # an internal bug: say so plainly, keep the traceback for --debug users
        import os
        if os.environ.get("SNN_COMPILE_DEBUG"):
            raise
        print(f"snn-compile: internal error: {type(err).__name__}: {err} "
              f"(set SNN_COMPILE_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
