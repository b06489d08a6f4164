"""The cross-backend equivalence checker: expectations per pair, verdicts on real
runs of every installed target, detection of a one-LSB corruption (float and
fixed point), skipped/refused/failed targets, metrics, and ``snn-compile check``.

Runs are short (300–2000 steps) so the module stays fast.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import math

import numpy as np
import pytest
import scipy.sparse as sp

from snn_compile import cli, read_problem
from snn_compile.backends.base import FEATURES, Backend, Capabilities
from snn_compile.backends.reference import ReferenceBackend
from snn_compile.checker import (FLOAT64_RTOL, LIF_SPIKE_MOVES, Deviation, Execution, TargetSpec, check,
                               expectation, lif_spike_move, row_labels, _active_rows,
                               _decision_split, _van_rossum_sq)
from snn_compile.errors import InputError
from snn_compile.check_cli import cmd_check
from snn_compile.lower import lower

MM_SMALL = ("HS21", "QPTEST", "HS35")

#: Targets written as backend modules; injected by instance when the registry does not list them yet.
BACKEND_CLASSES = {
    "brian2": ("snn_compile.backends.brian", "Brian2Backend"),
    "nengo": ("snn_compile.backends.nengo_sim", "NengoBackend"),
    "nengo-loihi": ("snn_compile.backends.nengo_sim", "NengoLoihiBackend"),
    "spinnaker": ("snn_compile.backends.spinnaker", "SpiNNakerBackend"),
    "nir": ("snn_compile.backends.nir_export", "NIRBackend"),
}


def installed_targets() -> tuple[list[str], dict]:
    """(registered installed target names, label → instance of the other installed backends)."""
    from snn_compile.backends.registry import available_targets
    registered = available_targets()
    names = [name for name, (ok, _) in registered.items() if ok]
    extra = {}
    for label, (module, attr) in BACKEND_CLASSES.items():
        if label in registered or importlib.util.find_spec(module) is None:
            continue
        cls = getattr(importlib.import_module(module), attr)
        if cls.available()[0]:
            extra[label] = cls()
    return names, extra


def problem_path(name, repo_root, shared) -> str:
    if name in ("hand2", "portfolio"):
        return str(repo_root / "examples" / name / "problem.yaml")
    return str(shared / "mat" / f"{name}.mat")


# ---------------------------------------------------------------- corrupted backends (fixtures)
class OneLsbOff(ReferenceBackend):
    """The reference backend with one weight moved by one least-significant bit.

    Float IR: ``np.nextafter`` on entry (row, col) of projection ``projection``.
    Quantized IR: +1 (−1 at the top of the range) on that entry's integer mantissa
    in the first weight slice.
    """

    def __init__(self, projection: str, row: int, col: int):
        self.projection, self.row, self.col = projection, row, col

    def run(self, net, steps, **options):
        return super().run(self.corrupt(net), steps, **options)

    def corrupt(self, net):
        index = [p.name for p in net.projections].index(self.projection)
        if net.fixed_point is None:
            W = net.projections[index].weights.copy()
            dense = W.toarray() if sp.issparse(W) else W
            assert dense[self.row, self.col] != 0.0
            dense[self.row, self.col] = np.nextafter(dense[self.row, self.col], np.inf)
            projections = list(net.projections)
            projections[index] = dataclasses.replace(projections[index], weights=dense)
            return dataclasses.replace(net, projections=projections)
        spec = net.fixed_point
        fixed = spec.projections[index]
        first = fixed.slices[0]
        M = first.mantissa.toarray() if sp.issparse(first.mantissa) else first.mantissa.copy()
        assert M[self.row, self.col] != 0
        limit = 2 ** (fixed.mantissa_bits - 1) - 1
        M[self.row, self.col] += 1 if M[self.row, self.col] < limit else -1
        slices = [dataclasses.replace(first, mantissa=M)] + list(fixed.slices[1:])
        projections = list(spec.projections)
        projections[index] = dataclasses.replace(fixed, slices=slices)
        return dataclasses.replace(net, fixed_point=dataclasses.replace(spec, projections=projections))


class Refuses(Backend):
    name = "refuses"

    def capabilities(self):
        return Capabilities(features=frozenset({"binary_spikes"}))

    def run(self, net, steps, **options):  # pragma: no cover - never reached: check() refuses
        raise AssertionError("ran a refused network")


class Crashes(Backend):
    name = "crashes"

    def capabilities(self):
        return Capabilities(features=frozenset(FEATURES))

    def run(self, net, steps, **options):
        raise RuntimeError("simulator exploded")


class GhostBackend(Backend):
    """A registered target whose package is missing."""
    name = "ghost"

    @classmethod
    def available(cls):
        return False, "needs ghostlib (pip install ghostlib)"

    def capabilities(self):  # pragma: no cover - never instantiated
        return Capabilities(features=frozenset(FEATURES))

    def run(self, net, steps, **options):  # pragma: no cover
        raise AssertionError


# ---------------------------------------------------------------- expectations
@pytest.fixture(scope="module")
def hand2(repo_root):
    return read_problem(repo_root / "examples/hand2/problem.yaml")


def test_expectation_table(hand2):
    pd, lif, proj = (lower(hand2, f) for f in ("primal-dual", "lif", "projection"))
    ref64 = Execution("reference", "reference", "float64")
    ref32 = Execution("reference:float32", "reference", "float32")
    brian = Execution("brian2", "brian2", "float64")
    fixed = Execution("reference", "reference", "fixed")
    lava = Execution("loihi", "loihi", "fixed")
    nest = Execution("spinnaker", "spinnaker", "float64", Deviation("hard reset"))

    same = expectation(ref64, Execution("corrupt", "reference", "float64"), pd)
    assert same.kind == "exact" and same.bounds["state_rtol"] == 0.0 and same.bounds["spikes"] == "identical"
    bit = expectation(fixed, lava, pd)
    assert bit.kind == "exact" and bit.bounds["state_rtol"] == 0.0 and "§5" in bit.reason
    f64 = expectation(ref64, brian, pd)
    assert f64.kind == "exact" and f64.bounds["state_rtol"] == FLOAT64_RTOL == f64.bounds["solution_rtol"]

    f32 = expectation(ref64, ref32, pd)
    assert f32.kind == "approximate" and set(f32.bounds) == {"state_rtol_per_step"}
    # k = 6: a dual neuron of hand2 sums K·x_new and K·x_old (2 + 2 synapses), its bias and its decay
    assert f32.bounds["state_rtol_per_step"] == 6 * math.sqrt(pd.neuron_count) * 2.0 ** -24
    assert expectation(ref64, ref32, proj).bounds.keys() == {"state_rtol_per_step"}

    move = lif_spike_move(lif)
    assert move == pytest.approx(lif.provenance["params"]["gamma"])     # P = I, c = (1, 1): one spike moves x by γ
    lif32 = expectation(ref64, ref32, lif)
    assert lif32.kind == "approximate" and lif32.bounds == {"x_atol": LIF_SPIKE_MOVES * move}

    quantized = expectation(fixed, ref64, pd, quantization_bound=1e-4)
    assert quantized.bounds == {"objective_atol": 1e-4}
    assert expectation(fixed, ref64, pd).bounds == {}              # no bound computed: compared, not held
    deviating = expectation(nest, ref64, lif)
    assert deviating.kind == "approximate" and deviating.bounds == {} and "hard reset" in deviating.reason

    builtin = Execution("nengo", "nengo", "float64")
    literal = Execution("nengo:builtin_neurons=false", "nengo", "float64", options=(("builtin_neurons", False),))
    assert expectation(builtin, literal, lif).bounds["state_rtol"] == FLOAT64_RTOL   # another code path

    # target names resolve through the registry
    assert expectation("reference", "reference:float32", pd).bounds == f32.bounds
    assert expectation("reference", "reference", pd).kind == "exact"


def test_expectations_do_not_depend_on_the_problem(repo_root, maros_meszaros):
    """Same family and arithmetic: the same kind and the same bound formula on every problem."""
    kinds = set()
    for name in ("hand2", *MM_SMALL):
        net = lower(read_problem(problem_path(name, repo_root, maros_meszaros)), "primal-dual")
        exp = expectation("reference", "reference:float32", net)
        kinds.add((exp.kind, tuple(exp.bounds)))
        k_sqrt_n_u = exp.bounds["state_rtol_per_step"] / 2.0 ** -24 / math.sqrt(net.neuron_count)
        assert k_sqrt_n_u == int(k_sqrt_n_u)                     # k: an integer count of terms
    assert kinds == {("approximate", ("state_rtol_per_step",))}


# ---------------------------------------------------------------- the check on real runs
@pytest.mark.parametrize("name", ["hand2", "portfolio", *MM_SMALL])
def test_check_passes_across_installed_targets(name, repo_root, maros_meszaros):
    names, extra = installed_targets()
    report = check(problem_path(name, repo_root, maros_meszaros), names + ["reference:float32"],
                   backends=extra, steps=500)
    assert report.passed, report.table()
    ran = {r.label for r in report.runs if r.status == "ok"}
    assert {"reference", "reference:float32"} <= ran
    assert not [r for r in report.runs if r.status == "failed"]
    for pair in report.pairs:
        if pair.expectation.kind == "exact":
            assert pair.metrics["spikes_identical"], (pair.a, pair.b)
    ref = report.run("reference")
    assert ref.error_vs_optimum["relative_objective_error"] < 1e-3      # 500 steps solve these
    if "brian2" in ran:
        assert report.pair("reference", "brian2").expectation.kind == "exact"


@pytest.mark.parametrize("name", ["hand2", "HS35"])
def test_check_lif_family_across_installed_targets(name, repo_root, maros_meszaros):
    names, extra = installed_targets()
    report = check(problem_path(name, repo_root, maros_meszaros), names + ["reference:float32"],
                   backends=extra, family="lif", steps=1000)
    assert report.passed, report.table()
    pair = report.pair("reference", "reference:float32")
    assert "x_atol" in pair.expectation.bounds and pair.holds
    for run in report.runs:
        if run.status == "ok" and run.execution.deviation is not None:
            deviating = report.pair("reference", run.label)
            assert deviating.expectation.bounds == {}                   # compared, not held
            assert "x_max_abs_in_spike_moves" in deviating.metrics


def test_report_json_table_and_overlay(repo_root, tmp_path):
    report = check(repo_root / "examples/hand2/problem.yaml", ["reference", "reference:float32"], steps=300)
    paths = report.write(tmp_path)
    assert [p.name for p in paths] == ["check.json", "raster_overlay.png"]
    data = json.loads((tmp_path / "check.json").read_text())
    assert data["passed"] is True and data["steps"] == 300 and data["problem"] == "hand2"
    assert [t["label"] for t in data["targets"]] == ["reference", "reference:float32"]
    pair = data["pairs"][0]
    assert pair["expectation"]["kind"] == "approximate" and pair["holds"] is True
    for key in ("spike_count_max_diff", "van_rossum_sq_total", "active_set", "state_max_rel", "solution_max_rel"):
        assert key in pair["metrics"]
    assert pair["metrics"]["active_set"]["v"]["agree"] is True
    assert pair["metrics"]["active_set"]["v"]["reference"] == ["sum_le_1"]    # the active constraint
    for target in data["targets"]:
        assert target["vs_optimum"]["relative_objective_error"] < 1e-6
    table = report.table()
    assert "reference vs reference:float32" in table and "PASSED" in table
    assert (tmp_path / "raster_overlay.png").stat().st_size > 1000


# ---------------------------------------------------------------- a corruption of one LSB is found
@pytest.mark.parametrize("name, family, projection", [
    ("hand2", "primal-dual", "x into x_ag"),
    ("portfolio", "primal-dual", "x into x_ag"),
    ("hand2", "lif", "filter"),
    ("HS35", "projection", "distance"),
])
def test_one_lsb_float_corruption_is_detected(name, family, projection, repo_root, maros_meszaros):
    path = problem_path(name, repo_root, maros_meszaros)
    net = lower(read_problem(path), family)
    W = next(p for p in net.projections if p.name == projection).weights
    dense = W.toarray() if sp.issparse(W) else W
    source = next(p for p in net.projections if p.name == projection).source
    # a synapse the run uses: from the source neuron that emits most, to any neuron it reaches
    counts = ReferenceBackend().run(net, 400, record_every=0).spike_counts[source]
    active = [int(c) for c in np.argsort(-counts, kind="stable") if np.any(dense[:, c])]
    col = active[0]
    row = int(np.flatnonzero(dense[:, col])[0])
    bad = OneLsbOff(projection, row, col)
    assert np.nextafter(dense[row, col], np.inf) - dense[row, col] <= 4e-16 * max(1.0, abs(dense[row, col]))

    report = check(path, ["reference"], backends={"corrupt": bad}, family=family, steps=400)
    assert not report.passed
    pair = report.pair("reference", "corrupt")
    assert pair.expectation.kind == "exact" and pair.expectation.bounds["state_rtol"] == 0.0
    assert not pair.holds
    first = pair.first_divergence
    target = next(p for p in net.projections if p.name == projection).target
    assert first is not None and first.what == "state"
    assert (first.population, first.neuron) == (target, row)      # where the corrupted synapse lands
    assert first.row == row_labels(read_problem(path), net)[target][row]
    assert first.resolution == 1
    assert f"step {first.step}" in report.failures[0] and target in report.failures[0]

    control = check(path, ["reference"], backends={"same": OneLsbOff.__mro__[1]()}, family=family, steps=400)
    assert control.passed and control.pair("reference", "same").metrics["state_max_rel"] == 0.0


def test_one_lsb_mantissa_corruption_is_detected(repo_root):
    pytest.importorskip("snn_compile.passes.quantize")
    path = repo_root / "examples/hand2/problem.yaml"
    bad = OneLsbOff("x into x_ag", 0, 0)
    report = check(path, ["reference"], backends={"corrupt": bad}, hardware="loihi2", steps=300)
    assert report.quantized_net is not None
    runs = {r.label: r for r in report.runs}
    assert runs["reference"].execution.arithmetic == runs["corrupt"].execution.arithmetic == "fixed"
    pair = report.pair("reference", "corrupt")
    assert pair.expectation.kind == "exact" and pair.expectation.bounds["state_rtol"] == 0.0
    assert not pair.holds and not report.passed
    first = pair.first_divergence
    assert (first.population, first.neuron, first.row) == ("x_ag", 0, "x1")


def test_fixed_point_against_float_within_the_quantization_bound(repo_root):
    pytest.importorskip("snn_compile.passes.quantize")
    report = check(repo_root / "examples/hand2/problem.yaml", ["reference", "reference:float64"],
                   hardware="loihi2", steps=2000)
    runs = {r.label: r for r in report.runs}
    assert runs["reference"].quantized_ir and runs["reference"].execution.arithmetic == "fixed"
    assert not runs["reference:float64"].quantized_ir
    pair = report.pair("reference", "reference:float64")
    bound = pair.expectation.bounds["objective_atol"]
    assert 0 < pair.metrics["objective_abs"] <= bound < 1e-2
    assert report.passed, report.table()


# ---------------------------------------------------------------- skipped, refused, failed
def test_not_installed_refused_and_failed_targets(repo_root, monkeypatch):
    from snn_compile.backends import registry
    monkeypatch.setitem(registry.BUILTIN, "ghost", f"{__name__}:GhostBackend")
    path = repo_root / "examples/hand2/problem.yaml"
    report = check(path, ["reference", "ghost"], backends={"refuses": Refuses()}, steps=200)
    status = {r.label: (r.status, r.reason) for r in report.runs}
    assert status["ghost"] == ("skipped", "not installed: needs ghostlib (pip install ghostlib)")
    assert status["refuses"][0] == "refused" and "graded spikes" in status["refuses"][1]
    assert report.passed                               # skipped and refused are said, not failures
    assert not check(path, ["reference", "ghost"], steps=50, require_all=True).passed

    crashed = check(path, ["reference"], backends={"crashes": Crashes()}, steps=200)
    assert crashed.run("crashes").status == "failed" and "simulator exploded" in crashed.run("crashes").reason
    assert not crashed.passed and "crashes failed" in crashed.failures[0]
    assert crashed.pairs == []


# ---------------------------------------------------------------- metrics
def test_target_specs():
    assert TargetSpec.parse("reference").options == ()
    assert TargetSpec.parse("reference:float32").dtype == "float32"
    spec = TargetSpec.parse("nengo:builtin_neurons=false,seed=3")
    assert (spec.name, spec.label, dict(spec.options)) == \
        ("nengo", "nengo:builtin_neurons=false,seed=3", {"builtin_neurons": False, "seed": 3})
    with pytest.raises(InputError, match="float16"):
        TargetSpec.parse("reference:float16")


def test_van_rossum_units_and_active_rows():
    size, steps = 3, 2000
    lone = _van_rossum_sq(np.array([100 * size + 1]), np.empty(0, np.int64), size, steps, 10.0)
    assert lone[1] == pytest.approx(1.0) and lone[0] == lone[2] == 0.0
    shifted = _van_rossum_sq(np.array([100 * size]), np.array([105 * size]), size, steps, 10.0)
    assert shifted[0] == pytest.approx(2 * (1 - math.exp(-0.5)))
    same = np.arange(0, 2000, 7) * size + 2
    assert not _van_rossum_sq(same, same, size, steps, 10.0).any()
    # neuron 0 fires all through the last quarter, neuron 1 only early in it
    keys = np.concatenate([np.arange(1500, 2000) * size, np.arange(1500, 1600) * size + 1])
    assert _active_rows(np.sort(keys), size, steps).tolist() == [True, False, False]


def test_decision_split_names_the_first_differing_restart():
    a = [{"step": 63, "event": "restart", "source": "current", "kkt": 1.0},
         {"step": 511, "event": "restart", "source": "average", "kkt": 0.1}]
    b = [{"step": 63, "event": "restart", "source": "current", "kkt": 1.0000001},
         {"step": 511, "event": "restart", "source": "current", "kkt": 0.1}]
    assert _decision_split(a, a) is None
    assert _decision_split(a, b)[0] == 511
    assert _decision_split(a, a[:1]) == (511, "restart(average) at step 511 in one run only")


def test_row_labels_follow_the_families(repo_root):
    qp = read_problem(repo_root / "examples/portfolio/problem.yaml")
    pd = row_labels(qp, lower(qp, "primal-dual"))
    assert pd["v"] == list(qp.ineq_names) + list(qp.eq_names) == pd["v_ag"]
    assert pd["x"] == list(qp.var_names) == pd["x_ag"]
    lif = row_labels(qp, lower(qp, "lif"))
    eq = qp.eq_names[0]
    assert lif["cons"][:qp.m_ineq + 2] == [*qp.ineq_names, f"{eq} (≤)", f"{eq} (≥)"] and lif["r"] == lif["cons"]


def test_check_accepts_a_saved_ir_with_its_problem(repo_root, tmp_path):
    from snn_compile.ir import save_network
    qp = read_problem(repo_root / "examples/hand2/problem.yaml")
    folder = save_network(lower(qp, "primal-dual"), tmp_path / "ir")
    report = check(folder, ["reference", "reference:float32"], qp=qp, steps=200)
    assert report.passed and report.run("reference").solution is not None
    bare = check(folder, ["reference", "reference:float32"], steps=200)
    assert bare.run("reference").solution is None and "not compared" in bare.notes[0]


# ---------------------------------------------------------------- the command
@pytest.fixture
def check_command(monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "check", cli.COMMANDS.get("check", cmd_check))
    return cli.main


def test_cli_check_writes_outputs_and_exits_0(check_command, repo_root, tmp_path, capsys):
    out = tmp_path / "out"
    code = check_command(["check", str(repo_root / "examples/hand2/problem.yaml"),
                          "--targets", "reference,reference:float32", "--steps", "300", "-o", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["check.json", "raster_overlay.png"]
    printed = capsys.readouterr().out
    assert "reference vs reference:float32" in printed and "PASSED" in printed
    assert json.loads((out / "check.json").read_text())["passed"] is True


def test_cli_check_exit_codes(check_command, repo_root, tmp_path, capsys):
    problem = str(repo_root / "examples/hand2/problem.yaml")
    # a requested target that fails to run (an option the reference backend refuses) → 3
    code = check_command(["check", problem, "--targets", "reference,reference:bogus=1", "--steps", "100",
                          "-o", str(tmp_path / "fail"), "--json"])
    assert code == 3
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] is False and "bogus" in data["failures"][0]
    assert json.loads((tmp_path / "fail" / "check.json").read_text())["passed"] is False
    assert check_command(["check", problem, "--targets", "nope"]) == 2
    assert check_command(["check", problem, "--steps", "0"]) == 2
    assert check_command(["check", problem, "--targets", "reference,reference"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("snn-compile: error:") for line in err)
