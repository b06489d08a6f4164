"""Targets ``loihi`` (fixed_pt Lava models) and ``lava`` (floating_pt): bit-identity with the
fixed-point reference, agreement with the float reference, the deployment folder, the CLI,
and cleanup after failures and timeouts (no processes, no /dev/shm segments left)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lava.magma.core.process.process")

import snn_compile as sc  # noqa: E402
from snn_compile.api import CompiledNetwork, compile as compile_problem  # noqa: E402
from snn_compile.backends._lava_runner import LavaRunError, LavaTimeout, _group_members  # noqa: E402
from snn_compile.backends.loihi import LavaBackend, LoihiBackend, schedule_levels  # noqa: E402
from snn_compile.backends.reference import ReferenceBackend  # noqa: E402
from snn_compile.decode import decode_solution  # noqa: E402
from snn_compile.errors import InputError  # noqa: E402
from snn_compile.hardware import load_hardware  # noqa: E402
from snn_compile.ir import Gain, Network, Population, Projection, RunningAverage  # noqa: E402
from snn_compile.lower import lower  # noqa: E402
from snn_compile.passes.quantize import quantize  # noqa: E402
from snn_compile.qp import QP  # noqa: E402
from snn_compile.synthetic import random_qp  # noqa: E402

LOIHI2 = load_hardware("loihi2")


# ---------------------------------------------------------------- problems
@pytest.fixture(scope="module")
def hand2(repo_root) -> QP:
    return sc.read_problem(repo_root / "examples" / "hand2" / "problem.yaml")


@pytest.fixture(scope="module")
def anymal(shared_data) -> QP:
    d = np.load(shared_data / "lava_anymal" / "ex_qp_small.npz")
    return QP(P=d["A"], q=d["C"].ravel(), A=d["B"], b=d["D"].ravel(), name="anymal")


def mixed_network(initial_emission: bool = False) -> Network:
    """Every other IR feature: delays 2 and 3, a delay-0 projection, a two-phase schedule in which
    b and c update every other step, binary spikes with subtractive reset and a spike cap, excess
    payloads with clamp and reset to value, decay, scheduled and constant gains, a running
    average, and a population (d) connected to nothing (its own part of the Lava graph)."""
    rng = np.random.default_rng(1)
    pops = [Population("a", 3, decay=0.9, bias=[0.1, -0.2, 0.05], bias_gain="g", v_init=[0.3, -0.1, 0.2],
                       emit_initial_state=initial_emission),
            Population("b", 4, spike="binary", threshold=0.5, reset="subtract", reset_value=0.5,
                       max_spikes_per_step=1, record=True),
            Population("c", 2, payload="excess", threshold=0.2, v_min=-1, v_max=1, reset="to_value",
                       reset_value=0.0, record=True),
            Population("d", 2, decay=0.5, bias=[0.3, -0.4])]
    projections = [Projection("a", "b", rng.uniform(-1, 1, (4, 3)), delay=3, gain="h", name="a->b"),
                   Projection("b", "c", rng.uniform(0, 0.5, (2, 4)), delay=0, gain="h", name="b->c"),
                   Projection("c", "a", rng.uniform(-0.3, 0.3, (3, 2)), delay=2, gain="h", name="c->a")]
    gains = [Gain("g", 1.0, steps=(10, 25), values=(0.5, 2.0)), Gain("h", 0.8)]
    return Network(pops, projections, gains=gains, schedule=[["a", "b", "c", "d"], ["a", "d"]],
                   controls=[RunningAverage(("a", "c"))])


# ---------------------------------------------------------------- comparisons
def assert_bit_identical(ref, lava):
    """Integer states at every step, spike trains (events) and counts, clamp excesses,
    averages, controls and overflow statistics are equal bit for bit."""
    fixed_ref, fixed_lava = ref.meta["fixed_point"], lava.meta["fixed_point"]
    for name in ref.final_state:
        assert np.array_equal(fixed_ref["integer_state"][name], fixed_lava["integer_state"][name]), name
        assert np.array_equal(ref.samples[name][0], lava.samples[name][0]), name
        assert np.array_equal(ref.samples[name][1], lava.samples[name][1]), f"states of {name}"
        assert np.array_equal(ref.spike_counts[name], lava.spike_counts[name]), name
        assert np.array_equal(ref.clamp_excess[name], lava.clamp_excess[name]), name
    assert ref.events.keys() == lava.events.keys()
    for name, columns in ref.events.items():
        for a, b in zip(columns, lava.events[name]):
            assert np.array_equal(a, b), f"spike events of {name}"
    for name, mean in ref.averages.items():
        assert np.array_equal(mean, lava.averages[name]), name
    assert ref.updates == lava.updates and ref.gains_final == lava.gains_final
    assert ref.control_log == lava.control_log
    assert fixed_ref["overflow"] == fixed_lava["overflow"]


def assert_float_close(ref, lava, rtol=1e-9):
    for name in ref.final_state:
        a, b = ref.samples[name][1], lava.samples[name][1]
        scale = np.maximum(np.abs(a), 1e-300)
        assert np.all(np.abs(a - b) <= rtol * scale + 1e-300), f"states of {name}"
        assert np.array_equal(ref.spike_counts[name], lava.spike_counts[name]), name
    assert [e["event"] for e in ref.control_log] == [e["event"] for e in lava.control_log]


def run_both_fixed(net, steps, hardware=LOIHI2):
    qnet, _ = quantize(net, hardware)
    ref = ReferenceBackend().run(qnet, steps, record_every=1)
    lava = LoihiBackend().run(qnet, steps, record_every=1)
    return qnet, ref, lava


# ---------------------------------------------------------------- timing map (no Lava)
def test_sub_steps_follow_the_delay_zero_chains(hand2):
    updates, level, substeps = schedule_levels(lower(hand2, "primal-dual"))
    assert substeps == 3 and {k: v[0] for k, v in level.items()} == {"x": 0, "v": 1, "x_ag": 1, "v_ag": 2}
    _, level, substeps = schedule_levels(lower(hand2, "lif"))
    assert substeps == 2 and level == {"cons": [0], "r": [1]}
    updates, level, substeps = schedule_levels(mixed_network())
    assert substeps == 2 and updates["b"] == [True, False] and level["c"] == [1, 0]


# ---------------------------------------------------------------- bit identity (loihi)
@pytest.mark.parametrize("family, hardware", [("primal-dual", "loihi2"), ("projection", "loihi2"),
                                              ("lif", "loihi2"), ("lif", "spinnaker1")])
def test_fixed_point_is_bit_identical_on_the_hand_example(hand2, family, hardware):
    """spinnaker1: the multiplier leak and the accumulator that saturates before the shift."""
    qnet, ref, lava = run_both_fixed(lower(hand2, family), 200, load_hardware(hardware))
    assert_bit_identical(ref, lava)
    assert lava.backend == "loihi" and lava.meta["lava"]["select_tag"] == "fixed_pt"
    assert sum(lava.spike_counts[p.name].sum() for p in qnet.populations if p.role == "constraint") > 0


def test_fixed_point_is_bit_identical_on_a_random_qp_with_restarts():
    qnet, ref, lava = run_both_fixed(lower(random_qp(), "primal-dual"), 200)
    assert_bit_identical(ref, lava)
    assert any(e["event"] == "restart" for e in lava.control_log)     # host writes are exercised
    assert len(lava.events["v"][0]) > 0


def test_fixed_point_is_bit_identical_on_every_other_feature():
    net = mixed_network()
    qnet, ref, lava = run_both_fixed(net, 120)
    assert_bit_identical(ref, lava)
    assert len(lava.events["b"][0]) > 0 and len(lava.events["c"][0]) > 0
    assert lava.meta["lava"]["substeps"] == 2


def test_anymal_fixed_point_is_bit_identical_and_meets_the_constraints(anymal):
    """1000 steps compared at every step (the 300 of the issue included); ‖Ax − k‖∞ < 0.1."""
    qnet, ref, lava = run_both_fixed(lower(anymal, "primal-dual"), 1000)
    assert_bit_identical(ref, lava)
    x = decode_solution(qnet, lava, anymal).x
    assert np.max(np.abs(anymal.A @ x - anymal.b)) < 0.1
    assert lava.meta["lava"]["lava_steps"] == 3000


def test_initial_emission_in_fixed_point():
    """docs/ir.md §2: a delay-1 reader sees what v_init emits at step 0 (here every number is
    exact in fixed point, so the integer run equals the float semantics)."""
    net = Network([Population("src", 1, v_init=0.5, emit_initial_state=True), Population("dst", 1)],
                  [Projection("src", "dst", np.ones((1, 1)), delay=1, gain="g")], gains=[Gain("g", 1.0)])
    qnet, _ = quantize(net, LOIHI2)
    lava = LoihiBackend().run(qnet, 3, record_every=1)
    assert lava.samples["dst"][1].ravel().tolist() == [0.5, 1.0, 1.5]
    assert np.array_equal(lava.samples["dst"][1], ReferenceBackend().run(net, 3, record_every=1).samples["dst"][1])


# ---------------------------------------------------------------- float (lava)
@pytest.mark.parametrize("name", ["hand2", "random20", "mixed"])
def test_float_models_match_the_float_reference(hand2, name):
    net = {"hand2": lambda: lower(hand2, "primal-dual"), "random20": lambda: lower(random_qp(), "primal-dual"),
           "mixed": lambda: mixed_network(initial_emission=True)}[name]()
    ref = ReferenceBackend().run(net, 200, record_every=1)
    lava = LavaBackend().run(net, 200, record_every=1)
    assert_float_close(ref, lava)
    assert lava.meta["lava"]["select_tag"] == "floating_pt"


def test_anymal_float_matches_the_float_reference(anymal):
    net = lower(anymal, "primal-dual")
    assert_float_close(ReferenceBackend().run(net, 300, record_every=1),
                       LavaBackend().run(net, 300, record_every=1))


# ---------------------------------------------------------------- API, deployment, CLI
def test_solve_stops_where_the_reference_stops(hand2):
    reference = compile_problem(hand2, "reference", hardware="loihi2")
    expected = reference.solve(2000, tol=1e-3)
    compiled = CompiledNetwork(qp=reference.qp, net=reference.net, target="loihi", backend=LoihiBackend())
    solution = compiled.solve(2000, tol=1e-3)
    assert solution.status == expected.status == sc.Status.OPTIMAL
    assert solution.steps == expected.steps < 2000
    assert np.array_equal(solution.x, expected.x)


def test_a_float_network_is_quantized_for_loihi2(hand2):
    net = lower(hand2, "primal-dual")
    trace = LoihiBackend().run(net, 50)
    assert trace.meta["lava"]["quantized_for"] == "loihi2" and trace.dtype == "int64"
    qnet, _ = quantize(net, LOIHI2)
    assert np.array_equal(trace.final_state["x"], ReferenceBackend().run(qnet, 50).final_state["x"])


def test_unknown_options_and_steps_are_refused(hand2):
    net = lower(hand2, "primal-dual")
    with pytest.raises(InputError, match="unknown option"):
        LavaBackend().run(net, 10, dtype="float32")
    with pytest.raises(InputError):
        LavaBackend().run(net, -1)


def test_deployment_folder_runs_on_its_own(hand2, tmp_path):
    """emit → `python run.py` in a fresh process, from another directory: same solution."""
    qnet, _ = quantize(lower(hand2, "primal-dual"), LOIHI2)
    backend = LoihiBackend()
    trace = backend.run(qnet, 150)
    expected = decode_solution(qnet, trace, hand2)
    folder = tmp_path / "deploy"
    written = backend.emit(qnet, folder)
    for name in ("run.py", "graph.json", "graph.npz", "_lava_processes.py", "_lava_runner.py", "README.md",
                 "resources.txt", "resources.json", "deployment.json"):
        assert folder / name in written
    assert json.loads((folder / "deployment.json").read_text())["steps"] == 150
    assert "3 Lava time step(s) per network step" in (folder / "resources.txt").read_text()
    assert "0.5" not in (folder / "run.py").read_text()          # data lives in the npz/json files
    done = subprocess.run([sys.executable, str(folder / "run.py")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = np.load(folder / "result" / "solution.npz")
    assert np.array_equal(result["x"], expected.x) and np.array_equal(result["z"], expected.z)
    hw = subprocess.run([sys.executable, str(folder / "run.py"), "--hw"], cwd=tmp_path, capture_output=True,
                        text=True, timeout=300)
    assert hw.returncode == 3 and "lava-loihi" in hw.stderr


def test_cli_writes_a_loihi_deployment(repo_root, tmp_path, monkeypatch):
    from snn_compile.backends import registry
    from snn_compile.cli import main
    monkeypatch.setitem(registry.BUILTIN, "loihi", "snn_compile.backends.loihi:LoihiBackend")
    out = tmp_path / "out"
    code = main([str(repo_root / "examples" / "hand2" / "problem.yaml"), "--target", "loihi", "--hardware",
                 "loihi2", "-o", str(out), "--steps", "300", "--no-plots", "--quiet"])
    assert code == 0
    solution = json.loads((out / "solution.json").read_text())
    assert solution["status"] == "optimal" and np.allclose(solution["x"], [0.5, 0.5], atol=1e-3)
    assert {"run.py", "graph.npz", "resources.txt", "README.md", "ir"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "deployment.json").read_text())["steps"] == solution["steps"]


# ---------------------------------------------------------------- robustness
def assert_cleaned_up(error: LavaRunError):
    assert error.segments, "the run created shared memory"
    assert not [s for s in error.segments if (Path("/dev/shm") / s).exists()]
    assert _group_members(error.worker_pid) == []
    assert not error.scratch.exists()        # the worker's TMPDIR (multiprocessing's sockets)


def test_a_timeout_kills_the_run_and_leaves_nothing(hand2):
    started = time.monotonic()
    with pytest.raises(LavaTimeout) as info:
        LavaBackend().run(lower(hand2, "primal-dual"), 10**7, timeout=3)
    assert time.monotonic() - started < 60
    assert_cleaned_up(info.value)


def test_a_failing_process_is_reported_and_leaves_nothing(hand2):
    with pytest.raises(LavaRunError, match="fault injected at step 40") as info:
        LoihiBackend().run(lower(hand2, "primal-dual"), 200, fail_at_step=40)
    assert not isinstance(info.value, LavaTimeout)
    assert_cleaned_up(info.value)


def test_the_worker_cleans_up_when_its_parent_dies(repo_root, tmp_path):
    script = tmp_path / "parent.py"
    script.write_text("import snn_compile as sc\n"
                      "from snn_compile.backends.loihi import LavaBackend\n"
                      f"qp = sc.read_problem({str(repo_root / 'examples/hand2/problem.yaml')!r})\n"
                      "LavaBackend().run(sc.lower.lower(qp, 'primal-dual'), 10**7)\n")
    parent = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=dict(os.environ, TMPDIR=str(tmp_path)))
    try:
        group, log = None, None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (log and log.exists() and log.read_text().strip()):
            group, log = _worker_of(parent.pid)
            time.sleep(0.2)
        assert group is not None and log.read_text().strip(), "the worker started Lava"
        time.sleep(1.0)
        segments = log.read_text().split()
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 20
    while (_group_members(group) or log.parent.exists()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group_members(group) == []
    assert not [s for s in segments if (Path("/dev/shm") / s).exists()]
    assert not log.parent.exists()           # the worker's scratch folder went too
    assert not any(p.name.startswith("snn-lava-job-") for p in tmp_path.iterdir())


def _worker_of(parent_pid: int):
    """(process group, shared-memory log) of the Lava worker a process started, or (None, None)."""
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if b"worker" in argv and argv[-3:-2] == [str(parent_pid).encode()]:
            return int(stat[stat.rindex(")") + 2:].split()[2]), Path(argv[-4].decode())
    return None, None
