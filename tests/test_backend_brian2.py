"""The brian2 target against the reference backend: identical spike trains and
states (docs/ir.md §2–4), the shared decode, and the standalone emitted script.

Every comparison runs 1000 steps unless said otherwise; the CSR summation order
is reproduced, so the runs agree to the bit, and the assertions use the
tolerances of the target's contract (spikes identical, states within 1e-9
relative).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("brian2")

from snn_compile import QP, read_problem  # noqa: E402
from snn_compile.backends.base import required_features  # noqa: E402
from snn_compile.backends.brian import Brian2Backend, describe, script_source  # noqa: E402
from snn_compile.backends.reference import ReferenceBackend  # noqa: E402
from snn_compile.decode import decode_solution  # noqa: E402
from snn_compile.errors import InputError  # noqa: E402
from snn_compile.ir import (Gain, Network, Population, Projection, Readout, ReadoutTerm,  # noqa: E402
                            RunningAverage)
from snn_compile.lower import lower  # noqa: E402

STEPS = 1000
RTOL = 1e-9


def random_qp(seed: int = 7, n: int = 20, m_ineq: int = 12, m_eq: int = 3) -> QP:
    """A strictly convex QP with inequalities, equalities and box bounds, several rows active."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    P = M.T @ M / n + 0.1 * np.eye(n)
    x_free = rng.standard_normal(n)
    G = rng.standard_normal((m_ineq, n))
    h = G @ x_free - rng.uniform(-2.0, 1.0, m_ineq)
    A = rng.standard_normal((m_eq, n))
    return QP(P=P, q=-P @ x_free, G=G, h=h, A=A, b=A @ (0.5 * x_free), lb=-1.5 * np.ones(n),
              ub=1.5 * np.ones(n), name="random20")


def recorded(net: Network) -> Network:
    for pop in net.populations:
        pop.record = True
    return net


def run_both(net: Network, steps: int = STEPS, **options):
    ref = ReferenceBackend().run(net, steps, record_every=1)
    got = Brian2Backend().run(net, steps, record_every=1, **options)
    return ref, got


def assert_same_run(ref, got):
    """Identical spikes (steps, neurons, counts), states within RTOL relative."""
    assert got.steps == ref.steps and got.updates == ref.updates
    for name in ref.final_state:
        ref_steps, ref_neurons, ref_payloads = ref.events[name]
        got_steps, got_neurons, got_payloads = got.events[name]
        np.testing.assert_array_equal(got_steps, ref_steps, err_msg=f"spike steps of {name}")
        np.testing.assert_array_equal(got_neurons, ref_neurons, err_msg=f"spiking neurons of {name}")
        np.testing.assert_allclose(got_payloads, ref_payloads, rtol=RTOL, atol=0, err_msg=name)
        np.testing.assert_array_equal(got.spike_counts[name], ref.spike_counts[name])
        np.testing.assert_array_equal(got.samples[name][0], ref.samples[name][0])
        np.testing.assert_allclose(got.samples[name][1], ref.samples[name][1], rtol=RTOL, atol=0,
                                   err_msg=f"states of {name}")
        np.testing.assert_allclose(got.clamp_excess[name], ref.clamp_excess[name], rtol=RTOL, atol=0)
    assert got.averages.keys() == ref.averages.keys()
    for name, mean in ref.averages.items():
        np.testing.assert_allclose(got.averages[name], mean, rtol=RTOL, atol=0)
    assert got.gains_final == pytest.approx(ref.gains_final, rel=RTOL)
    assert [e["event"] for e in got.control_log] == [e["event"] for e in ref.control_log]
    assert [e["step"] for e in got.control_log] == [e["step"] for e in ref.control_log]


# ---------------------------------------------------------------- the acceptance problems
@pytest.fixture(scope="module")
def hand2(repo_root):
    return read_problem(repo_root / "examples" / "hand2" / "problem.yaml")


@pytest.mark.parametrize("family", ["primal-dual", "projection", "lif"])
def test_hand_example_same_spike_trains(hand2, family):
    net = recorded(lower(hand2, family))
    ref, got = run_both(net)
    assert ref.total_spikes() > 0
    assert_same_run(ref, got)
    assert np.array_equal(decode_solution(net, got, hand2).x, decode_solution(net, ref, hand2).x)


@pytest.mark.parametrize("family", ["primal-dual", "projection", "lif"])
def test_random_qp_with_inequalities_and_bounds(family):
    qp = random_qp()
    net = recorded(lower(qp, family))
    ref, got = run_both(net)
    assert ref.total_spikes() > 0
    assert_same_run(ref, got)
    if family == "primal-dual":
        assert any(e["event"] == "restart" for e in ref.control_log)   # the restart rule ran


@pytest.mark.parametrize("name", ["HS21", "QPTEST", "HS35", "LOTSCHD"])
def test_maros_meszaros_primal_dual(maros_meszaros, name):
    qp = read_problem(maros_meszaros / "mat" / f"{name}.mat")
    net = recorded(lower(qp, "primal-dual"))
    ref, got = run_both(net)
    assert any(e["event"] == "restart" for e in ref.control_log)   # (HS21's duals never fire)
    assert_same_run(ref, got)
    ref_sol, got_sol = decode_solution(net, ref, qp), decode_solution(net, got, qp)
    for key in ("x", "y", "z", "z_box"):
        np.testing.assert_allclose(getattr(got_sol, key), getattr(ref_sol, key), rtol=RTOL, atol=1e-12)


# ---------------------------------------------------------------- every IR feature at once
def feature_zoo(seed: int = 0, cap: int | None = 2) -> Network:
    """Partial and reordered schedule phases, delays 0–3 from spiking and always-emitting
    sources, self-projections, all resets and payloads, a spike cap, mixed −∞/finite
    thresholds, clamps, gain schedules on a bias and a projection, a running average,
    initial-state emissions."""
    rng = np.random.default_rng(seed)

    def weights(m, n, density=0.6):
        mask = rng.random((m, n)) < density
        return sp.csr_matrix(np.where(mask, rng.uniform(-0.6, 0.6, (m, n)), 0.0))

    pops = [
        Population("a", 6, decay=0.9, bias=rng.uniform(-0.3, 0.5, 6), bias_gain="gb", v_min=-2.0,
                   v_max=2.0, threshold=[0.2, -np.inf, 0.1, 0.3, -np.inf, 0.0], payload="state",
                   reset="subtract", reset_value=0.5, v_init=rng.uniform(-1, 1, 6), emit_initial_state=True),
        Population("b", 5, decay=0.8, bias=rng.uniform(0.0, 0.4, 5), threshold=0.5, spike="binary",
                   reset="to_value", reset_value=rng.uniform(-0.2, 0.1, 5), max_spikes_per_step=cap),
        Population("c", 4, decay=0.5, bias=rng.uniform(-0.1, 0.1, 4), reset="subtract",
                   reset_value=0.01, v_init=rng.uniform(-1, 1, 4), emit_initial_state=True),
        Population("d", 3, bias=rng.uniform(-0.05, 0.1, 3), v_min=0.0, threshold=0.25, payload="excess"),
    ]
    projections = [
        Projection("a", "b", weights(5, 6), delay=1), Projection("b", "c", weights(4, 5), delay=2),
        Projection("c", "d", weights(3, 4), delay=0), Projection("b", "d", weights(3, 5), delay=0),
        Projection("d", "a", weights(6, 3), delay=3), Projection("c", "a", weights(6, 4), delay=1, gain="gp"),
        Projection("a", "a", weights(6, 6, 0.3), delay=1), Projection("c", "c", weights(4, 4, 0.5), delay=2),
    ]
    gains = [Gain("gb", 1.0, steps=(50, 120), values=(0.5, 2.0)),
             Gain("gp", 0.3, steps=(80,), values=(-0.2,))]
    readout = Readout(terms=[ReadoutTerm("x", "a", "average"), ReadoutTerm("z", "d", "spike_rate"),
                             ReadoutTerm("z_box", "a", "clamp_excess", scale=2.0, divide_by_gain="gb")],
                      sizes={"x": 6, "z": 3, "z_box": 6})
    return recorded(Network(pops, projections, gains, schedule=[["a", "b", "c", "d"], ["c", "b", "d"]],
                            controls=[RunningAverage(("a", "c"))], readout=readout))


def test_every_ir_feature_matches_the_reference_bit_for_bit():
    net = feature_zoo()
    spec, _ = describe(net)
    mechanisms = {p["name"]: p["mechanism"] for p in spec["projections"]}
    assert mechanisms == {"a->b": "on_pre", "b->c": "on_pre", "c->d": "summed", "b->d": "on_pre",
                          "d->a": "on_pre", "c->a": "summed", "a->a": "on_pre", "c->c": "summed"}
    assert {"initial_emission", "partial_schedule", "multi_phase_schedule", "delays", "zero_delay",
            "max_spikes_per_step", "reset_to_value", "reset_subtract", "graded_excess", "always_emit",
            "gain_schedules", "control:RunningAverage", "readout:average"} <= set(required_features(net))
    ref, got = run_both(net, 300)
    assert_same_run(ref, got)
    for name in ref.final_state:          # same operations in the same order: equal bits
        assert np.array_equal(got.samples[name][1], ref.samples[name][1])
    assert got.updates["a"] == 150 and ref.spike_counts["c"].sum() == 0      # c emits, never spikes
    uncapped = ReferenceBackend().run(feature_zoo(cap=None), 300)
    assert uncapped.spike_counts["b"].sum() > ref.spike_counts["b"].sum()    # the cap binds


def test_stop_callback_and_sampling_interval():
    net = feature_zoo()
    stop = lambda step, ctx: step >= 149 and ctx.snapshot().steps == step + 1  # noqa: E731
    ref = ReferenceBackend().run(net, 400, record_every=7, stop=stop, check_every=25)
    got = Brian2Backend().run(net, 400, record_every=7, stop=stop, check_every=25)
    assert got.stopped_early and ref.stopped_early and got.steps == ref.steps == 150
    assert got.control_log == ref.control_log
    for name in ref.final_state:
        np.testing.assert_array_equal(got.samples[name][0], ref.samples[name][0])
        np.testing.assert_allclose(got.samples[name][1], ref.samples[name][1], rtol=RTOL, atol=0)
        np.testing.assert_allclose(got.final_state[name], ref.final_state[name], rtol=RTOL, atol=0)


def test_event_log_is_capped_like_the_reference():
    net = feature_zoo()
    ref = ReferenceBackend().run(net, 200, max_events=40, record_every=0)
    got = Brian2Backend().run(net, 200, max_events=40, record_every=0)
    assert got.events_truncated and ref.events_truncated
    for name, columns in ref.events.items():
        assert len(got.events[name][0]) == len(columns[0]) <= 40
        for mine, theirs in zip(got.events[name], columns):
            np.testing.assert_array_equal(mine, theirs)
        np.testing.assert_array_equal(got.spike_counts[name], ref.spike_counts[name])


def test_empty_populations_and_no_samples():
    qp = QP(P=np.eye(3), q=np.array([1.0, -2.0, 0.5]), lb=-np.ones(3), ub=np.ones(3))
    net = lower(qp, "primal-dual")                      # no constraints: v and v_ag are empty
    assert net.population("v").size == 0
    ref = ReferenceBackend().run(net, 200, record_every=0)
    got = Brian2Backend().run(net, 200, record_every=0)
    assert got.samples == {} and got.record_every == 0
    np.testing.assert_allclose(got.final_state["x"], ref.final_state["x"], rtol=RTOL, atol=0)
    assert got.final_state["v"].shape == (0,)


def test_options_are_checked():
    net = feature_zoo()
    backend = Brian2Backend()
    assert backend.available() == (True, "")
    backend.check(net)
    with pytest.raises(InputError, match="unknown option"):
        backend.run(net, 5, dtype="float32")
    with pytest.raises(InputError, match="codegen"):
        backend.run(net, 5, codegen="cpp_standalone")
    with pytest.raises(InputError, match="sample_populations"):
        backend.run(net, 5, sample_populations=["nope"])


@pytest.mark.slow
def test_cython_codegen_matches(hand2):
    """The one compiled test: the first build takes a while, later runs hit the
    persistent cache (see docs/backends.md)."""
    net = recorded(lower(hand2, "primal-dual"))
    ref, got = run_both(net, 200, codegen="cython")
    assert got.meta["codegen"] == "cython"
    assert_same_run(ref, got)


# ---------------------------------------------------------------- the emitted standalone script
def run_script_without_snn_compile(folder, steps: int) -> dict:
    """Run run_brian2.py in a fresh interpreter that cannot import snn_compile."""
    blocker = ("import runpy, sys; sys.modules['snn_compile'] = None; "
               "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    cmd = [sys.executable, "-c", blocker, str(folder / "run_brian2.py"), "--steps", str(steps),
           "--output", str(folder / "result.json")]
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((folder / "result.json").read_text())


@pytest.mark.parametrize("family,steps", [("primal-dual", 600), ("lif", 400)])
def test_emitted_script_reproduces_the_solution(tmp_path, hand2, maros_meszaros, family, steps):
    qp = read_problem(maros_meszaros / "mat" / "HS21.mat") if family == "primal-dual" else hand2
    net = lower(qp, family)
    paths = Brian2Backend().emit(net, tmp_path)
    assert sorted(p.name for p in paths) == ["network.json", "network.npz", "run_brian2.py"]
    text = (tmp_path / "run_brian2.py").read_text()
    assert "snn_compile" not in text and "scipy" not in text
    result = run_script_without_snn_compile(tmp_path, steps)

    trace = Brian2Backend().run(net, steps, record_every=0)
    solution = decode_solution(net, trace, qp)
    assert result["steps"] == steps
    for key in ("x", "y", "z", "z_box"):
        np.testing.assert_allclose(result["solution"][key], getattr(solution, key), rtol=RTOL, atol=1e-12)
    for name, state in trace.final_state.items():
        np.testing.assert_allclose(result["final_state"][name], state, rtol=RTOL, atol=0)
        assert result["spike_counts"][name] == trace.spike_counts[name].tolist()
    assert result["restarts"] == sum(e["event"] == "restart" for e in trace.control_log)
    if family == "primal-dual":
        assert result["restarts"] > 0


def test_script_source_is_self_contained():
    text = script_source()
    compile(text, "run_brian2.py", "exec")
    assert "import brian2" in text and "def build_network" in text and "class Controls" in text
