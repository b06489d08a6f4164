"""The user API: ``compile`` a QP for a target, then ``solve`` (or ``run``) it.

    import snn_compile as sc
    net = sc.compile("problem.yaml", target="reference")
    solution = net.solve()

``solve(problem)`` is the one-call form. Stopping is KKT-based: every
``check_every`` steps the current network state is decoded and scored on the
*original* problem; the run stops once all three qpbenchmark residuals are
below ``tol``.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .certificates import is_dual_infeasibility_certificate, is_primal_infeasibility_certificate
from .decode import decode_solution
from .errors import InputError
from .ir import Network, save_network
from .qp import QP
from .solution import Solution, Status
from .staging import staged_folder

#: Step budgets per family when the caller gives none.
DEFAULT_STEPS = {"primal-dual": 200_000, "projection": 50_000, "lif": 100_000}
#: Steps between stopping checks (the primal-dual restart check also runs every 64).
DEFAULT_CHECK_EVERY = 64


def as_qp(problem) -> QP:
    """A ``QP`` from a QP, a file path, a qpsolvers.Problem or a cvxpy.Problem."""
    if isinstance(problem, QP):
        return problem
    from .frontends import read_problem
    return read_problem(problem)


@dataclass
class SolveHistory:
    """What the stopping checks saw: one row per check (for the convergence plot)."""

    rows: list = field(default_factory=list)
    snapshots: list = field(default_factory=list)   # (step, Solution) kept for certificates

    def add(self, step: int, sol: Solution):
        self.rows.append({"step": step, "obj": sol.obj, "primal_residual": sol.primal_residual,
                          "dual_residual": sol.dual_residual, "duality_gap": sol.duality_gap})
        self.snapshots.append((step, sol))


@dataclass
class CompiledNetwork:
    """A QP compiled for one target: the IR plus the backend that runs it."""

    qp: QP
    net: Network
    target: str
    backend: Any
    hardware: Any = None
    reports: dict = field(default_factory=dict)
    last_trace: Any = None
    last_history: Optional[SolveHistory] = None

    @property
    def family(self) -> str:
        return self.net.family

    def update(self, *, q=None, h=None, b=None, lb=None, ub=None) -> "CompiledNetwork":
        """New problem vectors for the same matrices: biases, thresholds and clamps change in
        place of a recompilation (weights, step sizes and scaling are reused)."""
        from .passes.parameters import update_parameters
        changes = {k: v for k, v in dict(q=q, h=h, b=b, lb=lb, ub=ub).items() if v is not None}
        new_qp = self.qp.with_vectors(**changes)
        self.net = update_parameters(self.net, self.qp, new_qp)
        self.qp = new_qp
        return self

    def warm_start(self, previous, *, primal_weight: Optional[float] = None) -> "CompiledNetwork":
        """Start the next run from ``previous`` (a Solution, or {x, y, z} in the user's variables)."""
        from .warm_start import warm_start
        return warm_start(self, previous, primal_weight=primal_weight)

    def run(self, steps: int, **options):
        """Run ``steps`` network steps from the initial state; returns the backend's Trace."""
        self.last_trace = self.backend.run(self.net, steps, **options)
        return self.last_trace

    def solve(self, steps: Optional[int] = None, *, tol: float = 1e-3,
              check_every: Optional[int] = None, progress: bool = False, warm_start: bool = False,
              **options) -> Solution:
        """Run until all three residuals (original problem) are below ``tol`` or the budget ends.

        ``warm_start=True`` starts from the final state of the previous solve (e.g. after
        ``update``) instead of the network's initial state.
        """
        if warm_start and self.last_trace is not None:
            from .passes.parameters import with_initial_state
            self.net = with_initial_state(self.net, self.last_trace.final_state)
        steps = DEFAULT_STEPS.get(self.family, 100_000) if steps is None else int(steps)
        if steps < 1:
            raise InputError("must be at least 1", field="steps")
        check_every = int(check_every or DEFAULT_CHECK_EVERY)
        history = SolveHistory()
        outcome = {}

        def stop(step, ctx) -> bool:
            sol = decode_solution(self.net, ctx.snapshot(), self.qp, status=Status.MAX_STEPS)
            history.add(step + 1, sol)
            if not np.all(np.isfinite(sol.x)):
                outcome["status"] = Status.DIVERGED
                return True
            if sol.succeeded(tol):
                outcome["status"] = Status.OPTIMAL
                return True
            return False

        trace = self.backend.run(self.net, steps, stop=stop, check_every=check_every,
                                 progress=progress, **options)
        status = outcome.get("status") or self._diagnose(history, trace)
        solution = decode_solution(self.net, trace, self.qp, status=status)
        if status is not Status.DIVERGED and not np.all(np.isfinite(solution.x)):
            solution.status = Status.DIVERGED
        if solution.status is Status.MAX_STEPS and solution.succeeded(tol):
            solution.status = Status.OPTIMAL          # the very last steps got there
        solution.solver = f"snn-compile/{self.target}/{self.family}"
        solution.extras.update({"tol": tol, "check_every": check_every,
                                "restarts": sum(e.get("event") == "restart" for e in trace.control_log),
                                "wall_time_s": trace.wall_time})
        self.last_trace, self.last_history = trace, history
        return solution

    def _diagnose(self, history: SolveHistory, trace) -> Status:
        """After the budget ran out: a certificate from late iterates, or MAX_STEPS."""
        if len(history.snapshots) < 4:
            return Status.MAX_STEPS
        (_, mid), (_, end) = history.snapshots[len(history.snapshots) // 2], history.snapshots[-1]
        if not np.all(np.isfinite(end.x)):
            return Status.DIVERGED
        if is_primal_infeasibility_certificate(self.qp, end.y - mid.y, end.z - mid.z, end.z_box - mid.z_box):
            return Status.INFEASIBLE
        if is_dual_infeasibility_certificate(self.qp, end.x - mid.x):
            return Status.UNBOUNDED
        return Status.MAX_STEPS

    def save(self, directory) -> Path:
        return save_network(self.net, directory)


def compile(problem, target: str = "reference", *, family: str = "primal-dual",
            hardware=None, **family_params) -> CompiledNetwork:
    """Read/validate ``problem``, lower it to ``family``'s network, prepare it for ``target``.

    ``hardware`` (a name in hardware_configs/ or a YAML path) quantizes the
    network for that chip unless the config is floating point.
    """
    from .backends.registry import get_backend
    from .lower import lower

    qp = as_qp(problem)
    backend = get_backend(target)
    net = lower(qp, family, **family_params)
    reports: dict[str, Any] = {}
    hw = None
    if hardware is not None:
        from .hardware import load_hardware
        from .passes.mapping import map_network
        hw = load_hardware(hardware)
        if hw.arithmetic == "fixed":
            from .passes.quantize import quantize
            net, reports["quantization"] = quantize(net, hw)
        reports["mapping"] = map_network(net, hw)
    backend.check(net)
    return CompiledNetwork(qp=qp, net=net, target=target, backend=backend, hardware=hw, reports=reports)


def solve(problem, target: str = "reference", *, family: str = "primal-dual", hardware=None,
          steps: Optional[int] = None, tol: float = 1e-3, check_every: Optional[int] = None,
          progress: bool = False, **family_params) -> Solution:
    """Compile and solve in one call; returns a ``Solution`` scored on the original problem."""
    compiled = compile(problem, target, family=family, hardware=hardware, **family_params)
    return compiled.solve(steps, tol=tol, check_every=check_every, progress=progress)


# ---------------------------------------------------------------- the CLI's main job
def run_and_write(problem_path, *, target="reference", family="primal-dual", hardware=None,
                  steps=None, tol=1e-3, check_every=None, output=None, plots=True,
                  progress=False) -> Solution:
    """What ``snn-compile PROBLEM --target T -o OUT`` does.

    The output folder is assembled in a temporary sibling and moved into place
    only when complete, so an error never leaves a half-written folder and an
    existing one is replaced only by a finished result.
    """
    compiled = compile(problem_path, target, family=family, hardware=hardware)
    if output is None:
        solution = compiled.solve(steps, tol=tol, check_every=check_every, progress=progress)
        _compare_with_float(compiled, solution, family=family, steps=steps, tol=tol,
                            check_every=check_every)
        return solution
    out = Path(output)
    if getattr(compiled.backend, "output_kind", "folder") == "file":
        return _write_artifact_file(compiled, out, steps=steps, tol=tol, check_every=check_every,
                                    progress=progress)
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a folder", source=str(out), field="--output")
    with staged_folder(out) as staging:
        solution = compiled.solve(steps, tol=tol, check_every=check_every, progress=progress)
        _compare_with_float(compiled, solution, family=family, steps=steps, tol=tol,
                            check_every=check_every)
        _write_outputs(compiled, solution, staging, plots=plots)
    return solution


def _write_artifact_file(compiled: CompiledNetwork, out: Path, *, steps, tol, check_every,
                         progress) -> Solution:
    """``-o OUT.nir`` for a target whose artifact is one file (``output_kind = "file"``).

    ``emit`` writes the file and its sidecars (e.g. OUT.nir.losses.json) into a
    temporary sibling folder; they move into place only after the run, so an
    error leaves nothing half-written. The solution comes from running the
    target; its ``report(net, qp, steps)``, if it has one, goes into
    ``solution.extras["target_report"]`` for the CLI to print.
    """
    if out.is_dir():
        raise InputError(f"is a folder; target '{compiled.target}' writes one file (e.g. OUT.nir)",
                         source=str(out), field="--output")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        written = compiled.backend.emit(compiled.net, staging / out.name)
        solution = compiled.solve(steps, tol=tol, check_every=check_every, progress=progress)
        report = getattr(compiled.backend, "report", None)
        if report is not None:
            budget = DEFAULT_STEPS.get(compiled.family, 100_000) if steps is None else int(steps)
            solution.extras["target_report"] = report(compiled.net, compiled.qp, budget)
        for path in written:
            os.replace(path, out.parent / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return solution


def _compare_with_float(compiled: CompiledNetwork, solution: Solution, **solve_options):
    """For a quantized network: the same problem, family and budget in float on the
    reference backend, so the quality lost to quantization is printed beside it."""
    if getattr(compiled.net, "fixed_point", None) is None:
        return
    family = solve_options.pop("family")
    steps = solve_options.pop("steps")
    reference = compile(compiled.qp, "reference", family=family).solve(steps, **solve_options)
    solution.extras["float_reference"] = {
        key: getattr(reference, key) for key in ("obj", "steps", "primal_residual", "dual_residual",
                                                 "duality_gap")} | {"status": reference.status.value}


def _write_outputs(compiled: CompiledNetwork, solution: Solution, folder: Path, *, plots: bool):
    from .classical import reference_solution
    from .diagnostics import plot_convergence, plot_raster

    compiled.backend.emit(compiled.net, folder) if compiled.target != "reference" else \
        save_network(compiled.net, folder / "ir")
    reference = reference_solution(compiled.qp)
    data = solution.to_dict()
    data["problem"] = compiled.qp.name
    data["target"], data["family"] = compiled.target, compiled.family
    if math.isfinite(reference.obj):
        data["reference_obj"] = reference.obj
        data["relative_objective_error"] = abs(solution.obj - reference.obj) / max(1.0, abs(reference.obj))
    for name, report in compiled.reports.items():
        data[name] = report.to_dict() if hasattr(report, "to_dict") else report
    (folder / "solution.json").write_text(json.dumps(data, indent=1))
    if plots and compiled.last_trace is not None:
        labels = _constraint_labels(compiled.qp)
        plot_raster(compiled.net, compiled.last_trace, folder / "raster.png", row_labels=labels,
                    title=f"{compiled.qp.name}: spike raster ({compiled.family}, {compiled.target})")
        if compiled.last_history and compiled.last_history.rows:
            plot_convergence(compiled.last_history.rows, folder / "convergence.png",
                             optimum=reference.obj, tol=solution.extras.get("tol"),
                             title=f"{compiled.qp.name}: convergence ({compiled.family}, {compiled.target})")


def _constraint_labels(qp: QP) -> list:
    ineq = list(qp.ineq_names or (f"g{i}" for i in range(qp.m_ineq)))
    eq = list(qp.eq_names or (f"a{i}" for i in range(qp.m_eq)))
    return ineq + eq


