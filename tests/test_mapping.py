"""The mapper: per-core limits split populations, too-large networks and neurons
are refused with the numbers, and the time/energy estimate is the documented one."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from snn_compile.errors import InputError
from snn_compile.hardware import load_hardware
from snn_compile.ir import Network, Population, Projection
from snn_compile.passes.mapping import ResourceError, map_network, unsupported_features


def with_resources(name: str, **changes):
    hw = load_hardware(name)
    return dataclasses.replace(hw, resources=dataclasses.replace(hw.resources, **changes))


def lonely(size: int) -> Network:
    """One population and no synapses: only the neuron count matters."""
    return Network([Population("x", size, threshold=1.0, spike="binary")])


def two_populations() -> Network:
    """a (10 binary neurons, fires) ⇄ b (5 graded, emits every update), alternating steps."""
    a = Population("a", 10, threshold=1.0, spike="binary")
    b = Population("b", 5)
    return Network([a, b], [Projection("a", "b", np.ones((5, 10))),
                            Projection("b", "a", np.ones((10, 5)))],
                   schedule=[["a"], ["b"]])


# ---------------------------------------------------------------- partitioning
def test_population_one_neuron_too_large_for_a_core_splits_in_two():
    report = map_network(lonely(1025), "loihi1")
    assert report.cores_used == 2 and report.chips_used == 1
    assert [(c.start, c.stop) for c in report.cores] == [(0, 1024), (1024, 1025)]
    assert map_network(lonely(1024), "loihi1").cores_used == 1
    assert map_network(lonely(257), "spinnaker1").cores_used == 2


def test_network_too_large_for_the_chip_is_refused_with_numbers():
    with pytest.raises(ResourceError) as err:
        map_network(lonely(128 * 1024 + 1), "loihi1")
    text = str(err.value)
    assert "129 cores" in text and "has 128" in text and "1 over" in text and "loihi1" in text


def test_more_chips_when_allowed():
    report = map_network(lonely(128 * 1024 + 1), "loihi1", max_chips=2)
    assert report.cores_used == 129 and report.chips_used == 2 and report.boards_used == 1
    assert report.cores[-1].chip == 1 and report.cores[127].chip == 0
    assert map_network(lonely(128 * 1024 + 1), "loihi1", max_chips=math.inf).chips_used == 2


def test_spinnaker_default_is_one_board_and_boards_are_counted():
    hw = load_hardware("spinnaker1")
    per_board = 48 * 16 * 256
    assert map_network(lonely(per_board), hw).boards_used == 1
    with pytest.raises(ResourceError) as err:
        map_network(lonely(per_board + 1), hw)
    assert "769 cores" in str(err.value) and "48 spinnaker1 chips have 768" in str(err.value)
    report = map_network(lonely(per_board + 1), hw, max_chips=96)
    assert (report.chips_used, report.boards_used) == (49, 2)


def test_synapse_memory_splits_cores():
    # 100 neurons × 1000 synapses × 2 B = 2000 B each; 131072 B per core → 65 per core
    src = Population("src", 1000, threshold=1.0, spike="binary")
    dst = Population("dst", 100, threshold=1.0, spike="binary")
    net = Network([src, dst], [Projection("src", "dst", np.ones((100, 1000)))])
    report = map_network(net, "loihi1")
    dst_cores = [c for c in report.cores if c.population == "dst"]
    assert [c.neurons for c in dst_cores] == [65, 35]
    assert all(c.synapse_bytes <= 131072 for c in dst_cores)
    assert dst_cores[0].synapse_bytes == 65 * 1000 * 2
    assert report.synapse_memory_bytes == 100 * 1000 * 2
    assert dst_cores[0].input_axons == 1000


def test_fan_in_above_the_limit_is_refused_with_numbers():
    src = Population("src", 4097, threshold=1.0, spike="binary")
    dst = Population("dst", 2, threshold=1.0, spike="binary")
    weights = np.zeros((2, 4097))
    weights[1, :] = 1.0          # neuron 1 has 4097 inputs, neuron 0 none
    net = Network([src, dst], [Projection("src", "dst", sp.csr_matrix(weights))])
    with pytest.raises(ResourceError) as err:
        map_network(net, "loihi1")
    text = str(err.value)
    assert "'dst' neuron 1" in text and "4097" in text and "4096" in text and "1 over" in text


def test_neuron_too_large_for_core_memory_is_refused():
    hw = with_resources("loihi1", synapse_memory_bytes_per_core=1000, max_fan_in=None,
                        input_axons_per_core=None)
    src = Population("src", 600, threshold=1.0, spike="binary")
    dst = Population("dst", 1, threshold=1.0, spike="binary")
    net = Network([src, dst], [Projection("src", "dst", np.ones((1, 600)))])
    with pytest.raises(ResourceError) as err:
        map_network(net, hw)
    assert "1200" in str(err.value) and "1000" in str(err.value) and "200 over" in str(err.value)


def test_input_axon_limit_splits_cores():
    # each dst neuron reads 4 distinct src neurons; 10 input axons per core → 2 neurons per core
    hw = with_resources("loihi1", input_axons_per_core=10, max_fan_in=None)
    src = Population("src", 40, threshold=1.0, spike="binary")
    dst = Population("dst", 10, threshold=1.0, spike="binary")
    weights = np.zeros((10, 40))
    for i in range(10):
        weights[i, 4 * i:4 * i + 4] = 1.0
    net = Network([src, dst], [Projection("src", "dst", weights)])
    dst_cores = [c for c in map_network(net, hw).cores if c.population == "dst"]
    assert [c.neurons for c in dst_cores] == [2] * 5
    assert all(c.input_axons == 8 for c in dst_cores)


def test_shared_inputs_count_once_per_core():
    hw = with_resources("loihi1", input_axons_per_core=10, max_fan_in=None)
    src = Population("src", 10, threshold=1.0, spike="binary")
    dst = Population("dst", 50, threshold=1.0, spike="binary")
    net = Network([src, dst], [Projection("src", "dst", np.ones((50, 10)))])
    dst_cores = [c for c in map_network(net, hw).cores if c.population == "dst"]
    assert len(dst_cores) == 1 and dst_cores[0].input_axons == 10


def test_output_axon_limit_recuts_the_source():
    # 4 neurons per core: dst (16) takes 4 cores and every src neuron targets all
    # of them, so a full src core needs 4·4 = 16 output axons > 10 → cut to 2 per core
    hw = with_resources("loihi1", output_axons_per_core=10, neurons_per_core=4)
    src = Population("src", 12, threshold=1.0, spike="binary")
    dst = Population("dst", 16, threshold=1.0, spike="binary")
    net = Network([src, dst], [Projection("src", "dst", np.ones((16, 12)))])
    src_cores = [c for c in map_network(net, hw).cores if c.population == "src"]
    assert [c.neurons for c in src_cores] == [2] * 6
    assert all(c.output_axons == 8 for c in src_cores)


def test_one_neuron_over_the_output_axon_limit_is_refused():
    hw = with_resources("loihi1", output_axons_per_core=2, neurons_per_core=1)
    net = Network([Population("src", 1, threshold=1.0, spike="binary"),
                   Population("dst", 3, threshold=1.0, spike="binary")],
                  [Projection("src", "dst", np.ones((3, 1)))])
    with pytest.raises(ResourceError) as err:
        map_network(net, hw)
    assert "3 output axons" in str(err.value) and "1 over" in str(err.value)


def test_float_hardware_is_unlimited():
    report = map_network(lonely(10 ** 6), "float")
    assert report.cores_used == 1 and report.chips_used == 1
    assert report.time_s is None and report.energy_j is None


# ---------------------------------------------------------------- activity, time, energy
def test_time_and_energy_by_hand():
    # a: 10 neurons, activity 0.2, updates every other step; b: 5 neurons with no
    # threshold (emits at every update), every other step.
    #   spikes/step  = 10·0.2·½ + 5·1·½            = 3.5
    #   synops/step  = 10·0.1·5 (a→b) + 5·0.5·10 (b→a) = 30
    #   updates/step = 10·½ + 5·½                  = 7.5
    # loihi1: 1e-5 s/step, 23.6 pJ/synop, 81 pJ/update, no static power.
    report = map_network(two_populations(), "loihi1", steps=1000, activity=0.2)
    assert report.spikes_per_step == pytest.approx(3.5)
    assert report.synops_per_step == pytest.approx(30.0)
    assert report.neuron_updates_per_step == pytest.approx(7.5)
    assert report.time_s == pytest.approx(1000 * 1.0e-5)
    assert report.energy_per_step_j == pytest.approx(30 * 23.6e-12 + 7.5 * 81e-12)
    assert report.energy_j == pytest.approx(1000 * (30 * 23.6e-12 + 7.5 * 81e-12))
    assert "static" not in report.energy_breakdown_j


def test_static_power_is_added_where_known():
    # spinnaker1: 1 ms/step, 13.3 nJ/synop, 26 nJ/update, 0.35 W/chip + 0.034 W/core; 2 cores, 1 chip
    report = map_network(two_populations(), "spinnaker1", steps=100,
                         activity={"a": 0.2, "b": 1.0})
    assert report.cores_used == 2 and report.chips_used == 1
    dynamic = 100 * (30 * 13.3e-9 + 7.5 * 26e-9)
    static = 100 * 1e-3 * (0.35 + 2 * 0.034)
    assert report.energy_breakdown_j["static"] == pytest.approx(static)
    assert report.energy_j == pytest.approx(dynamic + static)


def test_upper_bound_without_activity():
    report = map_network(two_populations(), "loihi2")
    assert report.spikes_per_step == pytest.approx(7.5)          # every neuron, every update
    assert report.synops_per_step == pytest.approx(10 * 0.5 * 5 + 5 * 0.5 * 10)
    assert "upper bound" in report.activity_source
    assert report.steps is None and report.time_s is None
    assert report.time_per_step_s == pytest.approx(8.14e-6)


def test_activity_from_a_trace():
    # over 100 steps a's neurons fired 0..9 times in total (45 spikes); b updated 50 times
    trace = SimpleNamespace(steps=100, spike_counts={"a": np.arange(10), "b": np.zeros(5)},
                            updates={"a": 50, "b": 50})
    report = map_network(two_populations(), "loihi1", trace=trace)
    # a: 45/100 spikes/step, each with 5 synapses; b: emits at each of its 50 updates
    assert report.spikes_per_step == pytest.approx(0.45 + 5 * 0.5)
    assert report.synops_per_step == pytest.approx(0.45 * 5 + 2.5 * 10)
    assert "measured" in report.activity_source


def test_bad_activity_and_max_chips_are_input_errors():
    with pytest.raises(InputError):
        map_network(two_populations(), "loihi1", activity=1.5)
    with pytest.raises(InputError):
        map_network(two_populations(), "loihi1", activity={"nope": 0.1})
    with pytest.raises(InputError):
        map_network(two_populations(), "loihi1", max_chips=0)


# ---------------------------------------------------------------- purity, report, features
def test_mapping_does_not_modify_the_network():
    net = two_populations()
    before = copy.deepcopy(net)
    map_network(net, "loihi1", steps=10)
    for p, q in zip(net.projections, before.projections):
        assert np.array_equal(p.weights, q.weights) and p.delay == q.delay
    for p, q in zip(net.populations, before.populations):
        assert p.size == q.size and np.array_equal(p.threshold, q.threshold)
    assert net.schedule == before.schedule


def test_report_to_dict_and_format():
    report = map_network(two_populations(), "loihi1", steps=1000, activity=0.2)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["cores_used"] == 2 and data["populations"]["a"]["neurons"] == 10
    assert data["max_chips"] == 1
    text = report.format()
    assert "loihi1" in text and "2 cores" in text and "per solve of 1000 steps" in text
    assert "unsupported: population 'b' emits graded spikes" in text


def test_unsupported_features_are_listed():
    a = Population("a", 3, threshold=1.0, spike="binary", reset="subtract", reset_value=1.0,
                   v_min=0.0, max_spikes_per_step=1)
    b = Population("b", 2, spike="graded")
    net = Network([a, b], [Projection("a", "b", np.ones((2, 3)), delay=0),
                           Projection("b", "a", np.ones((3, 2)), delay=100)])
    issues = "\n".join(unsupported_features(net, load_hardware("loihi1")))
    for phrase in ("graded spikes", "subtractive reset", "clamps", "spikes per step",
                   "delay 0", "delay 100"):
        assert phrase in issues
    assert unsupported_features(net, load_hardware("float")) == []
