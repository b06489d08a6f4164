"""The reference backend against hand-computed traces (docs/ir.md §2–4).

Expected numbers are written out by hand, not recomputed by a second
simulator; parameters are dyadic so every value is exact in binary floating point.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from snn_compile.backends.base import Backend, Capabilities
from snn_compile.backends.reference import ReferenceBackend, simulate
from snn_compile.backends.registry import available_targets, get_backend
from snn_compile.decode import decode_solution, readout, unscale
from snn_compile.errors import CapabilityError, InputError
from snn_compile.ir import (AdaptiveRestart, Gain, Network, Population, Projection, Readout,
                            ReadoutTerm, RunningAverage, ScaledProblem, load_network)
from snn_compile.qp import QP
from snn_compile.runtime import ControlRuntime, GainState
from snn_compile.solution import Status
from snn_compile.trace import EventLog, Trace


def states(trace: Trace, pop: str) -> list:
    return trace.samples[pop][1][:, 0].tolist()


# ---------------------------------------------------------------- the hand trace
def hand_network() -> Network:
    """Two neurons a, b coupled with delay 1.

    a: δ=0.5, bias 1, θ=1.25, v_max=1.375, binary, subtract 1
    b: δ=1,   bias −0.25, θ=0.5, v_min=0, binary, subtract 1
    a→b weight 1, b→a weight −0.5, both delay 1; every step updates a then b.
    """
    a = Population("a", 1, decay=0.5, bias=1.0, v_max=1.375, threshold=1.25, spike="binary",
                   reset="subtract", reset_value=1.0, record=True)
    b = Population("b", 1, role="constraint", bias=-0.25, v_min=0.0, threshold=0.5, spike="binary",
                   reset="subtract", reset_value=1.0, record=True)
    return Network([a, b], [Projection("a", "b", [[1.0]], delay=1),
                            Projection("b", "a", [[-0.5]], delay=1)])


# step | a: I, u → v (clamp, fire, reset)          | b: I, u → v
# 0    | 1,   1        → 1                          | −0.25, −0.25 → 0 (c=−0.25)
# 1    | 1,   1.5      → 1.375 (c=0.125) fire → .375 | −0.25, −0.25 → 0 (c=−0.25)
# 2    | 1,   1.1875   → 1.1875                     | −0.25+1, 0.75 → fire → −0.25
# 3    | 1−.5, 1.09375 → 1.09375                    | −0.25, −0.5 → 0 (c=−0.5)
# 4    | 1,   1.546875 → 1.375 (c=.171875) fire → .375 | −0.25, −0.25 → 0 (c=−0.25)
# 5    | 1,   1.1875   → 1.1875                     | −0.25+1, 0.75 → fire → −0.25
A_STATES = [1.0, 0.375, 1.1875, 1.09375, 0.375, 1.1875]
B_STATES = [0.0, 0.0, -0.25, 0.0, 0.0, -0.25]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_hand_computed_trace(dtype):
    trace = simulate(hand_network(), 6, record_every=1, dtype=dtype)
    assert trace.steps == 6 and trace.dtype == dtype
    assert trace.samples["a"][0].tolist() == [0, 1, 2, 3, 4, 5]
    assert states(trace, "a") == A_STATES
    assert states(trace, "b") == B_STATES
    assert trace.final_state["a"].dtype == np.dtype(dtype)
    assert trace.raster("a")[0].tolist() == [1, 4]
    assert trace.raster("b")[0].tolist() == [2, 5]
    assert trace.events["a"][2].tolist() == [1.0, 1.0]      # binary payload
    assert {k: v.tolist() for k, v in trace.spike_counts.items()} == {"a": [2], "b": [2]}
    assert trace.updates == {"a": 6, "b": 6}
    # the last update (step 5) did not clamp either neuron
    assert trace.clamp_excess["a"].tolist() == [0.0] and trace.clamp_excess["b"].tolist() == [0.0]


def test_clamp_excess_is_that_of_the_last_update():
    trace = simulate(hand_network(), 5)                       # ends after step 4
    assert trace.clamp_excess["a"].tolist() == [0.171875]
    assert trace.clamp_excess["b"].tolist() == [-0.25]
    assert trace.final_state["a"].tolist() == [0.375]


def test_dense_raster_matches_events():
    grid = simulate(hand_network(), 6).raster("b", dense=True)
    assert grid[:, 0].tolist() == [0, 0, 1, 0, 0, 1]
    with pytest.raises(InputError, match="not recorded"):
        simulate(Network([Population("q", 1)]), 1).raster("q")


# ---------------------------------------------------------------- spike rules
def test_graded_excess_payload_reaches_the_target():
    # src: v = 1.75 every step (δ=0), θ=1 → emits v − θ = 0.75; dst integrates 2·0.75 per step.
    src = Population("src", 1, decay=0.0, bias=1.75, threshold=1.0, payload="excess", record=True)
    dst = Population("dst", 1)
    trace = simulate(Network([src, dst], [Projection("src", "dst", [[2.0]], delay=1)]), 3,
                     record_every=1)
    assert trace.events["src"][2].tolist() == [0.75, 0.75, 0.75]
    assert states(trace, "dst") == [0.0, 1.5, 3.0]


def test_to_value_reset_and_graded_state_payload():
    # v: 0.375, 0.75 → fire (payload 0.75), reset to −0.125, 0.25, 0.625 → fire, −0.125
    pop = Population("p", 1, bias=0.375, threshold=0.5, reset="to_value", reset_value=-0.125,
                     record=True)
    trace = simulate(Network([pop]), 5, record_every=1)
    assert states(trace, "p") == [0.375, -0.125, 0.25, -0.125, 0.25]
    steps, neurons, payloads = trace.events["p"]
    assert steps.tolist() == [1, 3] and payloads.tolist() == [0.75, 0.625]


def test_max_spikes_per_step_picks_largest_excess_lowest_index_on_ties():
    def fired_at_step0(bias, threshold, k):
        pop = Population("p", len(bias), decay=0.0, bias=bias, threshold=threshold, spike="binary",
                         max_spikes_per_step=k, record=True)
        return simulate(Network([pop]), 1).events["p"][1].tolist()

    assert fired_at_step0([0.5, 1.0, 1.0, 0.25], 0.0, 1) == [1]          # tie 1 vs 2 → 1
    assert fired_at_step0([2.0, 1.0], [1.5, 0.0], 1) == [1]              # v − θ, not v
    assert fired_at_step0([1.0, 0.5, 1.0, 1.0], 0.0, 2) == [0, 2]        # three tied, K=2
    assert fired_at_step0([0.25, 3.0, 2.0, 1.0, 3.0], 0.0, 3) == [1, 2, 4]
    assert fired_at_step0([1.0, -1.0, 1.0], 0.0, 5) == [0, 2]            # cap not reached
    # θ = −∞: every neuron fires with infinite excess, so the lowest indices win
    pop = Population("p", 3, bias=1.0, spike="binary", max_spikes_per_step=2, record=True)
    assert simulate(Network([pop]), 1).events["p"][1].tolist() == [0, 1]


def test_spike_only_when_threshold_finite_or_binary():
    graded_always = Population("g", 2, bias=1.0, role="constraint", record=True)  # θ = −∞, graded
    trace = simulate(Network([graded_always]), 4)
    assert trace.total_spikes() == 0 and trace.events["g"][0].size == 0


# ---------------------------------------------------------------- schedules, delays, gains
def test_two_phase_schedule_idle_population_emits_zero():
    # x updates at even steps only; w (every step) reads x with delay 1, so it
    # sees x's emission 1 after even steps and 0 after odd ones.
    x = Population("x", 1, bias=1.0, decay=0.0)
    w = Population("w", 1)
    net = Network([x, w], [Projection("x", "w", [[1.0]], delay=1)], schedule=[["x", "w"], ["w"]])
    trace = simulate(net, 5, record_every=1)
    assert states(trace, "w") == [0.0, 1.0, 1.0, 2.0, 2.0]
    assert trace.updates == {"x": 3, "w": 5}


def test_delay_zero_reads_the_same_step():
    src = Population("src", 1, decay=0.0, bias=1.0)
    now = Population("now", 1, decay=0.0)
    late = Population("late", 1, decay=0.0)
    net = Network([src, now, late], [Projection("src", "now", [[2.0]], delay=0),
                                     Projection("src", "late", [[2.0]], delay=1)])
    trace = simulate(net, 2, record_every=1)
    assert states(trace, "now") == [2.0, 2.0]
    assert states(trace, "late") == [0.0, 2.0]


def test_longer_delay():
    src = Population("src", 1, decay=0.0, bias=1.0, threshold=0.5, spike="binary",
                     reset="to_value", reset_value=-10.0)   # fires at step 0 only... then recovers
    dst = Population("dst", 1)
    trace = simulate(Network([src, dst], [Projection("src", "dst", [[1.0]], delay=3)]), 5,
                     record_every=1)
    # src (δ=0) has v = 1 > 0.5 every step → emits 1 every step; dst sees it from step 3 on
    assert states(trace, "dst") == [0.0, 0.0, 0.0, 1.0, 2.0]


def test_gain_schedule_switches_at_its_step():
    g = Gain("g", 1.0, steps=(3,), values=(0.5,))
    bias_driven = Population("p", 1, bias=1.0, bias_gain="g")
    src = Population("s", 1, decay=0.0, bias=1.0)
    proj_driven = Population("q", 1)
    net = Network([bias_driven, src, proj_driven], [Projection("s", "q", [[4.0]], delay=0, gain="g")],
                  gains=[g], schedule=[["p", "s", "q"]])
    trace = simulate(net, 5, record_every=1)
    assert states(trace, "p") == [1.0, 2.0, 3.0, 3.5, 4.0]
    assert states(trace, "q") == [4.0, 8.0, 12.0, 14.0, 16.0]
    assert trace.gains_final == {"g": 0.5}


def test_running_average_counts_updates_only():
    # x updates at steps 0, 2, 4 (v = 1, 2, 3): the average is 2, not an average over steps
    x = Population("x", 2, bias=[1.0, 2.0])
    y = Population("y", 1)
    net = Network([x, y], schedule=[["x", "y"], ["y"]], controls=[RunningAverage(["x"])])
    trace = simulate(net, 5)
    assert trace.averages["x"].tolist() == [2.0, 4.0]
    assert set(trace.averages) == {"x"}


def test_formula_gain_without_restart_uses_t_equal_step_plus_one():
    # term b = 2/(t+1) with t = step + 1: g = 1, 2/3, 1/2, 2/5
    b = Gain("b", 1.0, formula="apdhg", params={"term": "b", "L": 1.0, "k": 1.0, "s": 0.25})
    net = Network([Population("p", 1, bias=1.0, bias_gain="b")], gains=[b])
    trace = simulate(net, 4, record_every=1)
    assert states(trace, "p") == pytest.approx([1.0, 5 / 3, 13 / 6, 77 / 30], rel=1e-15)
    assert trace.gains_final["b"] == pytest.approx(0.4, rel=1e-15)


def test_gain_state_formula_reads_epoch_step_and_primal_weight():
    params = {"L": 2.0, "k": 0.5, "s": 0.25}
    gains = GainState([Gain("b", 1.0, formula="apdhg", params={"term": "b", **params}),
                       Gain("sigma", 3.0, formula="apdhg", params={"term": "sigma", **params}),
                       Gain("tau", 1.0, formula="apdhg", params={"term": "tau", **params}),
                       Gain("c", 2.0, steps=(5,), values=(4.0,))])
    assert gains.values(0)[:4] == [1.0, 3.0, 1 / (8.0 + 1.0), 2.0]    # t=1: b=1, τ=1/(bL/s+ωk/√s)
    gains.primal_weight = 2.0
    gains.epoch_step = 3                                                  # b = 2/4
    assert gains.values(7)[:4] == [0.5, 6.0, 1 / (0.5 * 8.0 + 2.0), 4.0]
    gains.set_multiplier("c", 0.5)
    assert gains.value("c", 7) == 2.0 and gains.value(None, 7) == 1.0


def _restart_problem():
    # min ½x² − x  s.t.  x ≤ 0.5 (no bounds)
    return ScaledProblem(P=np.eye(1), q=[-1.0], G=np.ones((1, 1)), h=[0.5], A=np.zeros((0, 1)),
                         b=[], lb=[-np.inf], ub=[np.inf])


def test_kkt_error_by_hand():
    from snn_compile.runtime import kkt_error
    # x = 1, v = 0: g = 0, r_p = 0.5, gap = 1 − 1 = 0
    assert kkt_error(_restart_problem(), np.array([1.0]), np.array([0.0])) == pytest.approx(0.5)
    # x = 4, v = 0: r_d = 3, r_p = 3.5, gap = 16 − 4 = 12
    assert kkt_error(_restart_problem(), np.array([4.0]), np.array([0.0])) == pytest.approx(
        np.sqrt(9 + 12.25 + 144))


def test_adaptive_restart_by_hand():
    """x counts up by 1 per step, its 'average' by 0.5; the check after step 3 compares
    KKT(4, 0) ≈ 12.9 with KKT(2, 0) ≈ 2.69, restarts from the average (artificial
    criterion: t = 5 ≥ 0.36·4), and moves ω from 0.5 to √(0.5·0.5/10) since v never moved."""
    pops = [Population("x", 1, bias=1.0), Population("x_avg", 1, bias=0.5),
            Population("v", 1), Population("v_avg", 1)]
    rule = AdaptiveRestart(4, _restart_problem(), "x", "x_avg", "v", "v_avg", primal_weight_init=0.5)
    net = Network(pops, [Projection("x", "v", np.zeros((1, 1)), delay=1)], controls=[rule])
    trace = simulate(net, 6)
    restarts = [e for e in trace.control_log if e["event"] == "restart"]
    assert [e["step"] for e in restarts] == [3]
    assert restarts[0]["source"] == "average"
    assert restarts[0]["primal_weight"] == pytest.approx(np.sqrt(0.5 * 0.05))
    # after the restart both x and its average restart from 2, then count on
    assert trace.final_state["x"].tolist() == [4.0]
    assert trace.final_state["x_avg"].tolist() == [3.0]


def test_control_context_gives_restart_rules_what_they_need():
    """The pieces a restart uses: states, latest emissions, ω and averages, all writable."""
    x = Population("x", 2, bias=1.0)                        # graded, emits its state
    y = Population("y", 2)
    net = Network([x, y], [Projection("x", "y", np.eye(2), delay=2)],
                  schedule=[["x", "y"], ["y"]], controls=[RunningAverage(["x"])])
    seen = {}

    def stop(step, ctx):
        if step == 2:                                        # x updated at steps 0 and 2: v = 2
            seen["avg"] = ctx.average("x").tolist()
            ctx.set_state("x", [10.0, 20.0])
            ctx.set_latest_emission("x", [10.0, 20.0])     # y reads it at step 4 (delay 2)
            ctx.reset_averages()
            ctx.gains.primal_weight = 3.0
        return False

    trace = simulate(net, 6, stop=stop, check_every=1, record_every=1)
    assert seen["avg"] == [1.5, 1.5]
    # y integrates e_x(t−2): e_x(0)=1 at step 2, e_x(2)=10|20 at step 4 (overwritten), 0 otherwise
    assert trace.samples["y"][1].tolist() == [[0, 0], [0, 0], [1, 1], [1, 1], [11, 21], [11, 21]]
    assert trace.averages["x"].tolist() == [11.0, 21.0]     # restarted: one update (step 4) since


def test_stop_callback_ends_the_run():
    seen = []

    def stop(step, ctx):
        seen.append((step, ctx.state("p")[0]))
        return ctx.state("p")[0] >= 6.0

    trace = simulate(Network([Population("p", 1, bias=1.0)]), 100, stop=stop, check_every=3)
    assert seen == [(2, 3.0), (5, 6.0)]
    assert trace.steps == 6 and trace.stopped_early
    assert trace.control_log == [{"step": 5, "event": "stop", "reason": "stop callback"}]


# ---------------------------------------------------------------- readout and decoding
def readout_network() -> Network:
    # x: δ=0, bias 4·α with α=0.5 → u = 2, clamped to 1 → clamp excess 1 (= α·z̃_box with z̃_box = 2)
    x = Population("x", 2, role="primal", decay=0.0, bias=[4.0, 1.0], bias_gain="alpha", v_max=1.0)
    z = Population("z", 1, role="constraint", bias=0.25, threshold=0.5, spike="binary",
                   reset="subtract", reset_value=0.5)
    terms = [ReadoutTerm("x", "x", "state"),
             ReadoutTerm("z_box", "x", "clamp_excess", scale=-1.0, divide_by_gain="alpha"),
             ReadoutTerm("z", "z", "spike_rate", matrix=[[2.0]])]
    return Network([x, z], gains=[Gain("alpha", 0.5)], readout=Readout(
        terms, offsets={"x": [0.0, 0.25]}, sizes={"x": 2, "z": 1, "z_box": 2, "y": 0}))


def test_readout_applies_terms_gains_and_offsets():
    trace = simulate(readout_network(), 8)
    # z: 0.25, 0.5 (not > θ), 0.75 → fire → 0.25, 0.5, 0.75 → fire, … → steps 2, 4, 6: rate 3/8
    assert trace.spike_counts["z"].tolist() == [3]
    values = readout(readout_network(), trace)
    assert values["x"].tolist() == [1.0, 0.75]               # state 0.5 + offset 0.25 on neuron 1
    assert values["z_box"].tolist() == [-2.0, 0.0]           # −c / α
    assert values["z"].tolist() == [0.75]                     # 2 · 3/8
    assert values["y"].shape == (0,)


def test_decode_solution_maps_back_through_the_scaling():
    net = readout_network()
    net.provenance["scaling"] = {"d": [2.0, 4.0], "e_ineq": [0.5], "e_eq": [], "cost": 0.25}
    trace = simulate(net, 8)
    values = unscale(net, readout(net, trace))
    assert values["x"].tolist() == [2.0, 3.0]                # d ⊙ x̃
    assert values["z"].tolist() == [1.5]                      # e_ineq ⊙ z̃ / c = 0.5·0.75/0.25
    assert values["z_box"].tolist() == [-4.0, 0.0]           # z̃_box / (d·c)
    qp = QP(P=np.eye(2), q=np.zeros(2), G=[[1.0, 1.0]], h=[10.0], lb=[-5.0, -5.0], ub=[5.0, 5.0])
    sol = decode_solution(net, trace, qp)
    assert sol.x.tolist() == [2.0, 3.0] and sol.z.tolist() == [1.5]
    assert sol.steps == 8 and sol.spikes == 3 and sol.status == Status.MAX_STEPS
    assert sol.obj == 0.5 * (4.0 + 9.0)
    assert sol.dual_residual == 4.5                           # |Px + Gᵀz + z_box| = |(−0.5, 4.5)|
    assert decode_solution(net, trace, qp, Status.OPTIMAL).status == Status.OPTIMAL


def test_unscale_is_identity_without_scaling():
    net = readout_network()
    assert unscale(net, {"x": np.array([1.0, 2.0])})["x"].tolist() == [1.0, 2.0]


# ---------------------------------------------------------------- memory and options
def test_events_memory_follows_spikes_not_steps():
    silent = Population("s", 500, bias=0.0, threshold=1.0, spike="binary", record=True)
    trace = simulate(Network([silent]), 2000, record_every=0)
    steps, neurons, payloads = trace.events["s"]
    assert steps.size == neurons.size == payloads.size == 0
    assert trace.samples == {}

    log = EventLog(max_events=5)
    log.append(0, np.arange(3), 1.0)
    log.append(1, np.arange(4), 2.0)
    assert log.truncated and log.count == 5
    steps, neurons, payloads = log.arrays()
    assert steps.tolist() == [0, 0, 0, 1, 1] and payloads.tolist() == [1, 1, 1, 2, 2]


def test_event_cap_keeps_counting():
    pop = Population("p", 4, bias=1.0, threshold=0.5, decay=0.0, spike="binary", record=True)
    trace = simulate(Network([pop]), 10, max_events=6)
    assert trace.events["p"][0].size == 6 and trace.events_truncated is True
    assert trace.spike_counts["p"].tolist() == [10, 10, 10, 10]


def test_default_sampling_is_bounded():
    trace = simulate(Network([Population("p", 3, bias=1.0)]), 5000)
    idx, values = trace.samples["p"]
    assert trace.record_every == 5 and len(idx) == 1000 and idx[-1] == 4999
    assert values[-1].tolist() == [5000.0] * 3


@pytest.mark.parametrize("density", [0.05, 0.5])
def test_sparse_spike_propagation_equals_the_full_matvec(density):
    """Column-by-column propagation of few spikes gives the same bits as a full CSR matvec
    (the network is chaotic, so any rounding difference would show)."""
    rng = np.random.default_rng(3)
    n = 200
    W = sp.random(n, n, density=density, random_state=rng, format="csr")
    W.data -= 0.5
    pops = [Population("s", n, bias=rng.random(n) * 0.2, threshold=1.0, payload="excess",
                       reset="subtract", reset_value=1.0, decay=0.95),
            Population("t", n, decay=0.9, v_min=-3.0, v_max=3.0)]
    projs = [Projection("s", "t", W, delay=1, gain="g"), Projection("s", "s", W * 0.1, delay=2),
             Projection("t", "s", W * 0.05, delay=1)]
    net = Network(pops, projs, gains=[Gain("g", 0.5, steps=(50,), values=(1.0,))])
    dense = simulate(net, 300, event_fraction=0.0)
    events = simulate(net, 300, event_fraction=1.0)
    assert dense.total_spikes() > 100
    for name in ("s", "t"):
        np.testing.assert_array_equal(dense.final_state[name], events.final_state[name])


def test_sparse_spike_propagation_through_dense_weights():
    # dense W: BLAS sums in its own order, so equal to rounding only (few steps: no chaos yet)
    W = np.random.default_rng(4).standard_normal((30, 40))
    src = Population("s", 40, bias=np.linspace(0, 1, 40), decay=0.0, threshold=0.9, spike="binary")
    net = Network([src, Population("t", 30)], [Projection("s", "t", W, delay=1)])
    dense = simulate(net, 5, event_fraction=0.0)
    events = simulate(net, 5, event_fraction=1.0)
    np.testing.assert_allclose(dense.final_state["t"], events.final_state["t"], rtol=1e-13, atol=1e-13)
    assert dense.total_spikes() == 5 * 4                       # neurons 36..39 fire every step


def test_unknown_option_and_bad_dtype_are_refused():
    net = Network([Population("p", 1)])
    with pytest.raises(InputError, match="unknown option"):
        simulate(net, 1, warp_speed=True)
    with pytest.raises(InputError, match="dtype"):
        simulate(net, 1, dtype="int32")


def test_trace_save_load_round_trip(tmp_path):
    trace = simulate(hand_network(), 6, record_every=2)
    trace.control_log.append({"step": 3, "event": "restart", "kkt": float("inf")})
    back = Trace.load(trace.save(tmp_path / "trace"))
    assert back.steps == 6 and back.updates == trace.updates and back.gains_final == trace.gains_final
    assert back.control_log[-1]["kkt"] == float("inf")
    for group in ("final_state", "clamp_excess", "spike_counts"):
        for name, arr in getattr(trace, group).items():
            np.testing.assert_array_equal(getattr(back, group)[name], arr)
    for name, cols in trace.events.items():
        for x, y in zip(cols, back.events[name]):
            assert x.dtype == y.dtype and x.tolist() == y.tolist()
    assert back.samples["a"][1].tolist() == trace.samples["a"][1].tolist()


# ---------------------------------------------------------------- interface and registry
def test_registry_lists_and_loads_reference():
    assert available_targets()["reference"] == (True, "")
    assert isinstance(get_backend("reference"), ReferenceBackend)
    with pytest.raises(InputError, match="registered targets: .*reference"):
        get_backend("no-such-chip")


def test_check_names_the_missing_capability():
    class BinaryOnly(Backend):
        name = "binary-only"

        def capabilities(self):
            return Capabilities(frozenset({"binary_spikes", "reset_subtract", "state_clamp",
                                           "decay"}))

        def run(self, net, steps, **kw):
            raise AssertionError

    BinaryOnly().check(Network([Population("p", 1, spike="binary", threshold=1.0)]))
    with pytest.raises(CapabilityError, match=r"lacks graded spikes .*\(population 'b'\)"):
        BinaryOnly().check(hand_network_with_graded())
    with pytest.raises(NotImplementedError, match="no artifacts"):
        BinaryOnly().emit(Network([Population("p", 1)]), "unused")


def hand_network_with_graded() -> Network:
    return Network([Population("a", 1, spike="binary", threshold=1.0), Population("b", 1)])


def test_reference_emit_saves_the_ir(tmp_path):
    paths = ReferenceBackend().emit(hand_network(), tmp_path)
    assert [p.name for p in paths] == ["arrays.npz", "manifest.json"]
    assert load_network(paths[0].parent).neuron_count == 2


@pytest.mark.parametrize("flag, expected", [(True, 3.0), (False, 0.0)])
def test_initial_state_emission(flag, expected):
    """docs/ir.md §2: with emit_initial_state, a delay-1 reader sees v_init at step 0."""
    x = Population("x", 1, v_init=3.0, emit_initial_state=flag)
    y = Population("y", 1, decay=0.0)
    net = Network([x, y], [Projection("x", "y", np.ones((1, 1)), delay=1)], schedule=[["x", "y"]])
    trace = simulate(net, 1)
    assert trace.final_state["y"].tolist() == [expected]
    assert trace.spike_counts["x"].tolist() == [0]          # not a spike: threshold −∞ emits every update
