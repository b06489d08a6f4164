"""The NIR target: the interpreter against hand-computed traces, the export's
round trip through ``nir.write``/``nir.read``, the exact loss list per family,
and re-simulation against the reference backend.

Interpreter parameters are dyadic so hand-computed values are exact in binary
floating point.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

nir = pytest.importorskip("nir")

from snn_compile.api import CompiledNetwork  # noqa: E402
from snn_compile.backends.base import required_features  # noqa: E402
from snn_compile.backends.nir_export import (NIRBackend, compare_with_reference,  # noqa: E402
                                             export_info, export_nir, format_comparison,
                                             format_losses, losses_path, nir_equivalent, nir_losses)
from snn_compile.backends.reference import simulate  # noqa: E402
from snn_compile.decode import decode_solution, readout  # noqa: E402
from snn_compile.errors import CapabilityError, InputError  # noqa: E402
from snn_compile.frontends import read_problem  # noqa: E402
from snn_compile.ir import (Gain, Network, Population, Projection, Readout,  # noqa: E402
                            ReadoutTerm, RunningAverage)
from snn_compile.lower import lower  # noqa: E402
from snn_compile.nir_interpreter import simulate_nir  # noqa: E402

FAMILIES = ("primal-dual", "projection", "lif")


@pytest.fixture(scope="module")
def hand2(repo_root):
    return read_problem(repo_root / "examples" / "hand2" / "problem.yaml")


def arr(*values):
    return np.array(values, dtype=np.float64)


def driven(node, bias=1.0, metadata=None):
    """input → Affine(0, bias) → node → Output: a node under constant input."""
    size = node.output_type["output"][0]
    return nir.NIRGraph(
        nodes={"in": nir.Input(np.array([1])), "drive": nir.Affine(np.zeros((size, 1)), np.full(size, bias)),
               "n": node, "out": nir.Output(np.array([size]))},
        edges=[("in", "drive"), ("drive", "n"), ("n", "out")], metadata=metadata or {})


# ---------------------------------------------------------------- interpreter, by hand
def test_lif_steps_by_hand():
    # a = dt/τ = 1/2, drive a·r = 1: v ← v/2 + 1; fire above 1.25, reset to 0.25
    lif = nir.LIF(tau=arr(2.0), r=arr(2.0), v_leak=arr(0.0), v_threshold=arr(1.25), v_reset=arr(0.25))
    run = simulate_nir(driven(lif), 5, dt=1.0, record=("n",), record_every=1)
    assert run.samples["n"][1][:, 0].tolist() == [1.0, 0.25, 1.125, 0.25, 1.125]
    assert run.events["n"][0].tolist() == [1, 3] and run.spike_counts["n"].tolist() == [2]
    assert run.graph_outputs["out"].tolist() == [0.0]          # no spike at the last step


def test_if_li_and_i_by_hand():
    # IF and I: v ← v + dt·r·I with dt·r = 1; LI: a = 1/4, v ← (3/4)v + (1/4)(v_leak + r·I)
    if_node = nir.IF(r=arr(2.0), v_threshold=arr(2.5), v_reset=arr(0.0))
    run = simulate_nir(driven(if_node), 4, dt=0.5, record_every=1)
    assert run.samples["n"][1][:, 0].tolist() == [1.0, 2.0, 0.0, 1.0]
    run = simulate_nir(driven(nir.I(r=arr(2.0))), 3, dt=0.5, record_outputs=True)
    assert run.output_history["out"][:, 0].tolist() == [1.0, 2.0, 3.0]   # I outputs its state
    li = nir.LI(tau=arr(4.0), r=arr(4.0), v_leak=arr(2.0))
    run = simulate_nir(driven(li, bias=0.0), 3, dt=1.0, record_every=1)
    assert run.samples["n"][1][:, 0].tolist() == [0.5, 0.875, 1.15625]


def test_cuba_nodes_by_hand():
    # i ← i/2 + w_in·I/2 (w_in 2: i ← i/2 + 1); v ← v/2 + i/2; fire above 0.6, reset 0
    params = dict(tau_syn=arr(2.0), tau_mem=arr(2.0), r=arr(1.0), v_leak=arr(0.0), w_in=arr(2.0))
    run = simulate_nir(driven(nir.CubaLIF(**params, v_threshold=arr(0.6), v_reset=arr(0.0))), 3, dt=1.0,
                       record=("n",), record_every=1)
    assert run.samples["n"][1][:, 0].tolist() == [0.5, 0.0, 0.0]
    assert run.currents["n"].tolist() == [1.75] and run.events["n"][0].tolist() == [1, 2]
    run = simulate_nir(driven(nir.CubaLI(**params)), 3, dt=1.0, record_every=1)
    assert run.samples["n"][1][:, 0].tolist() == [0.5, 1.0, 1.375]


def test_delay_and_stateless_maps():
    # a (I, dt·r = 1, input 1) outputs k + 1 at step k; b reads a through Delay(2 steps) and
    # the one-step edge lag: its input at step k is a's output of step k − 3.
    graph = nir.NIRGraph(
        nodes={"in": nir.Input(np.array([1])), "drive": nir.Affine(np.zeros((1, 1)), arr(1.0)),
               "a": nir.I(r=arr(2.0)), "d": nir.Delay(arr(1.0)), "w": nir.Linear(np.eye(1)),
               "b": nir.I(r=arr(2.0)), "s": nir.Scale(arr(2.0)), "t": nir.Threshold(arr(3.0)),
               "out": nir.Output(np.array([1])), "spk": nir.Output(np.array([1]))},
        edges=[("in", "drive"), ("drive", "a"), ("a", "d"), ("d", "w"), ("w", "b"), ("b", "out"),
               ("a", "s"), ("s", "t"), ("t", "spk")], metadata={"dt": 0.5})
    run = simulate_nir(graph, 6, record_every=1, record_outputs=True)    # dt from the metadata
    assert run.samples["b"][1][:, 0].tolist() == [0.0, 0.0, 0.0, 1.0, 3.0, 6.0]
    assert run.output_history["spk"][:, 0].tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]   # 2(k+1) > 3
    assert run.outputs["d"].tolist() == [4.0]   # what step 6 would read: a's input of step 4


def test_edges_into_a_node_are_summed_and_initial_state():
    graph = nir.NIRGraph(
        nodes={"in": nir.Input(np.array([1])), "b1": nir.Affine(np.zeros((2, 1)), arr(1.0, 2.0)),
               "b2": nir.Affine(np.zeros((2, 1)), arr(0.5, 0.5)), "n": nir.I(r=arr(1.0, 1.0),
                                                                             metadata={"v_init": arr(4.0, 8.0)}),
               "out": nir.Output(np.array([2]))},
        edges=[("in", "b1"), ("in", "b2"), ("b1", "n"), ("b2", "n"), ("n", "out")])
    assert simulate_nir(graph, 2, dt=1.0).states["n"].tolist() == [3.0, 5.0]
    assert simulate_nir(graph, 2, dt=1.0, initial_state="metadata").states["n"].tolist() == [7.0, 13.0]
    assert simulate_nir(graph, 1, dt=1.0, initial_state={"n": [1.0, 1.0]}).states["n"].tolist() == [2.5, 3.5]
    # external input on an Input node, through non-zero weights
    graph.nodes["b1"] = nir.Affine(np.ones((2, 1)), arr(0.0, 0.0))
    run = simulate_nir(graph, 2, dt=1.0, inputs={"in": np.array([[1.0], [2.0]])})
    assert run.states["n"].tolist() == [4.0, 4.0]


def test_interpreter_refusals():
    lif = nir.LIF(tau=arr(2.0), r=arr(2.0), v_leak=arr(0.0), v_threshold=arr(1.0))
    with pytest.raises(InputError, match="time step"):
        simulate_nir(driven(lif), 1)
    conv = nir.NIRGraph(nodes={"in": nir.Input(np.array([1, 4, 4])),
                               "c": nir.Conv2d(input_shape=(4, 4), weight=np.ones((1, 1, 2, 2)), stride=1,
                                               padding=0, dilation=1, groups=1, bias=np.zeros(1))},
                        edges=[("in", "c")], type_check=False)
    with pytest.raises(InputError, match="not supported"):
        simulate_nir(conv, 1, dt=1.0)
    loop = nir.NIRGraph(nodes={"in": nir.Input(np.array([1])), "a": nir.Linear(np.eye(1)),
                               "b": nir.Linear(np.eye(1)), "out": nir.Output(np.array([1]))},
                        edges=[("in", "a"), ("a", "b"), ("b", "a"), ("b", "out")], type_check=False)
    with pytest.raises(InputError, match="algebraic loop"):
        simulate_nir(loop, 1, dt=1.0)
    delayed = nir.NIRGraph(nodes={"in": nir.Input(np.array([1])), "d": nir.Delay(arr(0.75)),
                                  "out": nir.Output(np.array([1]))}, edges=[("in", "d"), ("d", "out")])
    with pytest.raises(InputError, match="multiples of dt"):
        simulate_nir(delayed, 1, dt=0.5)


# ---------------------------------------------------------------- export: round trip and mapping
@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_keeps_nodes_edges_and_parameters(family, hand2, tmp_path):
    net = lower(hand2, family)
    graph, losses = export_nir(net, tmp_path / "net.nir")
    back = nir.read(tmp_path / "net.nir")
    assert set(back.nodes) == set(graph.nodes)
    assert back.edges == graph.edges
    for name, node in graph.nodes.items():
        other = back.nodes[name]
        assert type(other) is type(node), name
        for key, value in node.to_dict().items():
            if key == "metadata":
                assert set(other.metadata) == set(value)
                for mkey, mvalue in value.items():
                    assert np.array_equal(other.metadata[mkey], mvalue), (name, mkey)
            elif key != "type":
                assert np.array_equal(other.to_dict()[key], value), (name, key)
    assert export_info(back)["losses"] == losses
    sidecar = json.loads(losses_path(tmp_path / "net.nir").read_text())
    assert sidecar["losses"] == losses and sidecar["nir_file"] == "net.nir"


def test_mapping_of_the_lif_family(hand2):
    net = lower(hand2, "lif")
    graph, _ = export_nir(net)
    dt, decay = net.dt, net.population("cons").decay
    cons, r = graph.nodes["cons"], graph.nodes["r"]
    assert isinstance(cons, nir.LIF) and isinstance(r, nir.LI)
    np.testing.assert_allclose(cons.tau, dt / (1 - decay), rtol=1e-15)
    np.testing.assert_allclose(cons.r, 1 / (1 - decay), rtol=1e-15)
    pop = net.population("cons")
    assert np.array_equal(cons.v_threshold, pop.threshold)
    assert np.array_equal(cons.v_reset, pop.threshold - pop.reset_value)
    assert np.array_equal(cons.metadata["v_init"], pop.v_init)
    assert np.array_equal(graph.nodes["bias:cons"].bias, pop.bias)
    lateral = net.projections[1]
    assert isinstance(graph.nodes["w:lateral"], nir.Linear)
    assert np.array_equal(graph.nodes["w:lateral"].weight, lateral.weights.toarray()
                          if sp.issparse(lateral.weights) else lateral.weights)
    # the readout x = D r + x_free becomes an Affine into Output "readout:x"
    x_term = next(t for t in net.readout.terms if t.target == "x")
    readout = graph.nodes["readout:x:0"]
    D = x_term.matrix.toarray() if sp.issparse(x_term.matrix) else x_term.matrix
    np.testing.assert_allclose(readout.weight, D, rtol=1e-15)
    np.testing.assert_allclose(readout.bias, net.readout.offsets["x"], rtol=1e-15)
    assert isinstance(graph.nodes["readout:x"], nir.Output)


def test_mapping_of_graded_populations_gains_and_delays():
    src = Population("src", 2, decay=0.0, threshold=[0.5, -0.25], spike="graded", payload="excess")
    dst = Population("dst", 1, bias=0.5, bias_gain="g", threshold=-np.inf, spike="graded")
    net = Network([src, dst], [Projection("src", "dst", [[1.0, 2.0]], delay=3, gain="h", name="p")],
                  gains=[Gain("g", 0.5), Gain("h", 4.0)])
    graph, losses = export_nir(net)
    assert isinstance(graph.nodes["src"], nir.LI) and isinstance(graph.nodes["dst"], nir.I)
    np.testing.assert_allclose(graph.nodes["src"].tau, [1.0, 1.0])      # δ = 0: τ = dt
    assert graph.nodes["dst"].r.tolist() == [1.0]
    assert np.array_equal(graph.nodes["delay:p"].delay, [2.0, 2.0])     # delay 3 = edge + 2·dt
    w = graph.nodes["w:p"]
    assert w.weight.tolist() == [[4.0, 8.0]] and w.bias.tolist() == [-(4.0 * 0.5 - 8.0 * 0.25)]
    assert graph.nodes["bias:dst"].bias.tolist() == [0.25]
    assert ("src", "delay:p") in graph.edges and ("delay:p", "w:p") in graph.edges
    assert [loss["feature"] for loss in losses] == ["graded_spikes"]


# ---------------------------------------------------------------- the loss list per family
EXPECTED_LOSSES = {
    "primal-dual": {"state_clamp", "graded_spikes", "zero_delay", "formula_gains",
                    "control:AdaptiveRestart", "readout:clamp_excess"},
    "projection": {"graded_spikes", "zero_delay"},
    "lif": {"initial_state", "reset_subtract", "max_spikes_per_step", "zero_delay"},
}


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_features_per_family_are_exact(family, hand2):
    net = lower(hand2, family)
    losses = nir_losses(net)
    assert {loss["feature"] for loss in losses} == EXPECTED_LOSSES[family]
    text = format_losses(losses)
    for loss in losses:
        assert f"{loss['feature']} at {loss['where']}" in text


def test_loss_places_per_family(hand2):
    def places(family, feature):
        return sorted(loss["where"] for loss in nir_losses(lower(hand2, family)) if loss["feature"] == feature)

    assert places("lif", "zero_delay") == ["projection 'filter'"]
    assert places("lif", "reset_subtract") == ["population 'cons'"]
    assert places("primal-dual", "state_clamp") == ["population 'v'", "population 'x'"]
    assert places("primal-dual", "graded_spikes") == ["population 'v'"]
    assert places("primal-dual", "formula_gains") == [f"gain '{g}'" for g in
                                                       sorted(["tau", "tau_b", "tau_1mb", "sigma", "b", "2sigma"])]
    assert places("projection", "graded_spikes") == ["population 'cons'"]
    assert places("projection", "zero_delay") == ["projection 'gradient_step'", "projection 'payload_0'",
                                                  "projection 'projection'"]


def feature_network() -> Network:
    """Uses most features NIR lacks: every one must appear in the loss list."""
    p = Population("p", 2, decay=0.5, bias=[0.5, 0.25], bias_gain="ramp", threshold=0.75, spike="binary",
                   reset="none", v_init=[0.25, 0.0], v_max=2.0, max_spikes_per_step=1, record=True)
    q = Population("q", 2, role="constraint", bias=-0.125, threshold=0.0, spike="graded", payload="excess",
                   reset="subtract", reset_value=0.5, record=True)
    return Network([p, q],
                   [Projection("p", "q", np.eye(2), delay=0, name="pq"),
                    Projection("q", "p", [[-0.5, 0.25], [0.0, -0.5]], delay=2, name="qp")],
                   gains=[Gain("ramp", 1.0, steps=(5,), values=(0.5,))],
                   schedule=[["p", "q"], ["p"]], controls=[RunningAverage(["q"])],
                   readout=Readout(terms=[ReadoutTerm("x", "q", "average"), ReadoutTerm("z", "p", "spike_rate")],
                                   sizes={"x": 2, "z": 2}))


def test_every_missing_feature_is_listed():
    net = feature_network()
    features = {loss["feature"] for loss in nir_losses(net)}
    assert features == {"state_clamp", "initial_state", "reset_none", "max_spikes_per_step",
                        "graded_spikes", "reset_subtract", "zero_delay", "multi_phase_schedule",
                        "partial_schedule", "gain_schedules", "control:RunningAverage",
                        "readout:average", "readout:spike_rate"}
    # every feature the network requires is either exported exactly or listed
    exact = NIRBackend().capabilities().features
    assert set(required_features(net)) <= exact | features | {"graded_excess", "delays"}


def test_refuses_what_nir_cannot_hold():
    mixed = Network([Population("m", 2, decay=[1.0, 0.5], spike="binary", threshold=1.0)])
    with pytest.raises(CapabilityError, match="mixes decay 1"):
        NIRBackend().check(mixed)
    src = Population("s", 1, threshold=-np.inf, spike="graded", payload="excess")
    excess = Network([src, Population("t", 1)], [Projection("s", "t", [[1.0]])])
    with pytest.raises(CapabilityError, match="finite θ"):
        export_nir(excess)
    with pytest.raises(InputError, match="unknown option"):
        NIRBackend().run(feature_network(), 1, dtype="float32")


# ---------------------------------------------------------------- re-simulation
def assert_same_run(a, b, net):
    for pop in net.populations:
        np.testing.assert_allclose(a.final_state[pop.name], b.final_state[pop.name], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a.samples[pop.name][1], b.samples[pop.name][1], rtol=1e-12, atol=1e-12)
        assert a.spike_counts[pop.name].tolist() == b.spike_counts[pop.name].tolist(), pop.name
    for name in a.events:
        assert all(np.array_equal(x, y) for x, y in zip(a.events[name][:2], b.events[name][:2])), name
    for name in a.averages:
        np.testing.assert_allclose(a.averages[name], b.averages[name], rtol=1e-12, atol=1e-12)


def lossless_network() -> Network:
    """Only features NIR expresses exactly: LIF/IF with reset to a value, LI/I emitting
    every step, biases, constant gains, delays 1 and 3."""
    a = Population("a", 2, decay=0.5, bias=[1.0, 0.75], threshold=[1.25, 1.0], spike="binary",
                   reset="to_value", reset_value=[0.125, 0.0], record=True)
    b = Population("b", 1, role="constraint", bias=-0.25, threshold=0.5, spike="binary",
                   reset="to_value", reset_value=0.0, record=True)
    c = Population("c", 2, decay=0.75, threshold=-np.inf, spike="graded")
    d = Population("d", 1, threshold=np.inf, spike="graded")
    return Network([a, b, c, d],
                   [Projection("a", "b", [[1.0, -0.5]], delay=1, gain="g"),
                    Projection("b", "a", [[-0.5], [0.25]], delay=3),
                    Projection("a", "c", np.eye(2), delay=2),
                    Projection("c", "a", [[0.0, -0.25], [0.125, 0.0]], delay=1),
                    Projection("c", "d", [[1.0, 1.0]], delay=1)],
                   gains=[Gain("g", 0.75)],
                   readout=Readout(terms=[ReadoutTerm("x", "c", "state"), ReadoutTerm("z", "d", "state")],
                                   sizes={"x": 2, "z": 1}))


def test_lossless_network_matches_the_reference_exactly():
    net = lossless_network()
    assert nir_losses(net) == []
    steps = 200
    ref = simulate(net, steps, record_every=1)
    out = NIRBackend().run(net, steps, record_every=1)
    assert_same_run(ref, out, net)
    assert ref.total_spikes() > 20     # the comparison covers real spiking


@pytest.mark.parametrize("family, steps", [("primal-dual", 60), ("projection", 40), ("lif", 3000)])
def test_family_exports_compute_exactly_the_listed_losses(family, steps, hand2):
    """The interpreter run of the written graph equals the reference run of the IR
    with every listed loss applied: the loss list is complete."""
    net = lower(hand2, family)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = simulate(nir_equivalent(net), steps, record_every=1)
        out = NIRBackend().run(net, steps, record_every=1)
    assert_same_run(ref, out, net)


def test_feature_network_computes_exactly_the_listed_losses():
    net = feature_network()
    ref = simulate(nir_equivalent(net), 50, record_every=1)
    out = NIRBackend().run(net, 50, record_every=1)
    assert_same_run(ref, out, net)
    assert out.total_spikes(["p"]) > 5
    for target, value in readout(net, out).items():     # averages and spike rates read the same
        np.testing.assert_allclose(value, readout(nir_equivalent(net), ref)[target], rtol=1e-12)


def test_graph_outputs_are_the_decoded_solution(hand2, tmp_path):
    """Output 'readout:x' of the graph is the user's x as decode_solution reads it."""
    for family, steps in (("lif", 500), ("primal-dual", 5), ("projection", 3)):
        net = lower(hand2, family)
        export_nir(net, tmp_path / f"{family}.nir")
        graph = nir.read(tmp_path / f"{family}.nir")
        run = simulate_nir(graph, steps)
        trace = NIRBackend().run(net, steps, record_every=0)
        solution = decode_solution(net, trace, hand2)
        np.testing.assert_allclose(run.graph_outputs["readout:x"], solution.x, rtol=1e-12, atol=1e-14)
        if "readout:z" in run.graph_outputs:
            np.testing.assert_allclose(run.graph_outputs["readout:z"], solution.z, rtol=1e-12, atol=1e-14)


def test_lif_family_decoded_x_stays_within_two_spike_moves_of_the_reference(hand2):
    """Measured (γ = 0.01, 10 000 steps): |x_nir − x_ref|∞ ≤ 0.0155 at the end, ≤ 0.0148 over
    the last fifth; the bound is two spike moves (each run stays within one move of x*)."""
    net = lower(hand2, "lif", gamma=0.01)
    steps = net.provenance["params"]["steps_hint"]
    ref = simulate(net, steps, record_every=1)
    out = NIRBackend().run(net, steps, record_every=1)
    term = next(t for t in net.readout.terms if t.target == "x")
    D = term.matrix.toarray() if sp.issparse(term.matrix) else np.asarray(term.matrix)
    spike_move = np.abs(D).max()          # how far one spike moves x (∞-norm): γ‖P⁻¹c‖∞
    assert spike_move == pytest.approx(0.01)
    x_ref = ref.samples["r"][1] @ D.T + net.readout.offsets["x"]
    x_nir = out.samples["r"][1] @ D.T + net.readout.offsets["x"]
    last = slice(4 * steps // 5, None)
    final_ref, final_nir = decode_solution(net, ref, hand2).x, decode_solution(net, out, hand2).x
    np.testing.assert_allclose(final_nir, x_nir[-1], rtol=1e-12)
    assert np.abs(final_nir - final_ref).max() <= 2 * spike_move
    assert np.abs(x_nir[last] - x_ref[last]).max() <= 2 * spike_move
    assert np.abs(x_nir[last] - [0.5, 0.5]).max() <= spike_move
    # the spike trains differ (fixed reset, no cap, a late start) but the count is close
    assert abs(out.total_spikes() - ref.total_spikes()) <= 0.25 * ref.total_spikes()


# ---------------------------------------------------------------- backend and reports
def test_emit_to_a_file_or_a_folder(hand2, tmp_path):
    net = lower(hand2, "lif")
    paths = NIRBackend().emit(net, tmp_path / "out.nir")
    assert [p.name for p in paths] == ["out.nir", "out.nir.losses.json"] and all(p.is_file() for p in paths)
    folder = tmp_path / "folder"
    folder.mkdir()
    assert [p.name for p in NIRBackend().emit(net, folder)] == ["network.nir", "network.nir.losses.json"]
    costs = json.loads(paths[1].read_text())["costs"]
    assert costs["stored_values"] == 2 * 25 and costs["nonzeros"] == sum(p.nnz for p in net.projections)
    assert NIRBackend.available() == (True, "")


def test_solve_through_the_nir_target(hand2):
    net = lower(hand2, "lif")
    compiled = CompiledNetwork(qp=hand2, net=net, target="nir", backend=NIRBackend())
    solution = compiled.solve(4000, tol=1e-9, check_every=500)
    assert compiled.last_trace.backend == "nir" and compiled.last_trace.steps == 4000
    assert len(compiled.last_history.rows) == 8
    assert np.abs(solution.x - 0.5).max() < 0.05
    assert compiled.last_trace.meta["nir_losses"] == nir_losses(net)


def test_compare_with_reference_report(hand2):
    net = lower(hand2, "lif")
    report = compare_with_reference(net, hand2, 2000)
    assert {loss["feature"] for loss in report["losses"]} == EXPECTED_LOSSES["lif"]
    spikes = report["spikes"]["cons"]
    assert spikes["reference_total"] == sum(spikes["reference_counts"]) > 0
    assert report["x_difference_inf"] == pytest.approx(
        np.abs(np.subtract(report["x_nir"], report["x_reference"])).max())
    assert "spikes of 'cons'" in format_comparison(report)
    text = NIRBackend().report(net, hand2, 500)
    assert text.startswith("NIR cannot express 4 thing(s)") and "measured over 500 steps" in text


def test_graded_populations_losses_depend_on_what_they_feed():
    def features(pop, feeds):
        sink = Population("sink", pop.size, threshold=-np.inf)
        projections = [Projection(pop.name, "sink", np.eye(pop.size))] if feeds else []
        return {loss["feature"] for loss in nir_losses(Network([pop, sink], projections))}

    always = Population("g", 2, threshold=-np.inf, spike="graded", max_spikes_per_step=1)
    assert features(always, feeds=True) == {"max_spikes_per_step"}
    assert features(always, feeds=False) == set()
    silent = Population("g", 2, threshold=np.inf, spike="graded")
    assert features(silent, feeds=False) == set()
    assert features(silent, feeds=True) == {"graded_spikes"}
    counted = Population("g", 2, threshold=0.5, spike="graded")    # spikes are counted, never read
    assert features(counted, feeds=False) == {"graded_spikes"}
    capped = Population("g", 2, bias=[0.5, 0.75], threshold=-np.inf, spike="graded", max_spikes_per_step=1)
    net = Network([capped, Population("sink", 2, threshold=-np.inf)],
                  [Projection("g", "sink", [[1.0, 0.5], [0.25, 1.0]])])
    ref = simulate(nir_equivalent(net), 10, record_every=1)
    out = NIRBackend().run(net, 10, record_every=1)
    assert_same_run(ref, out, net)
