"""Fixed-point IR nodes and the integer executor against hand computation (docs/ir.md §5).

Expected integers are worked out by hand in the comments; nothing is recomputed
by a second implementation.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from snn_compile.backends.reference import ReferenceBackend, simulate
from snn_compile.backends.reference_fixed import run_fixed
from snn_compile.errors import InputError
from snn_compile.ir import (FixedPointSpec, Gain, Network, Population, PopulationFixed, Projection,
                            ProjectionFixed, WeightSlice, load_network, save_network)
from snn_compile.ir.fixed_point import (THRESHOLD_ALWAYS, THRESHOLD_NEVER, decay_state, quantize_gain,
                                        round_nearest, saturate, shift_round)


# ---------------------------------------------------------------- §5.1 operations
def test_saturate_is_symmetric_and_never_wraps():
    assert saturate(np.array([2 ** 23 + 5, -(2 ** 23) - 5, 7]), 24).tolist() == [2 ** 23 - 1, -(2 ** 23 - 1), 7]


def test_shift_round_is_round_half_up_by_arithmetic_shift():
    # 5/2 = 2.5 → 3, −5/2 = −2.5 → −2, 6/4 = 1.5 → 2, −7/4 = −1.75 → −2
    assert shift_round(np.array([5, -5]), 1).tolist() == [3, -2]
    assert shift_round(np.array([6, -7]), 2).tolist() == [2, -2]
    assert shift_round(np.array([3, -3]), -2).tolist() == [12, -12]
    assert shift_round(np.array([5, 5]), np.array([1, -1])).tolist() == [3, 10]
    assert shift_round(np.array([2 ** 60]), -10).tolist() == [2 ** 62]          # saturating left shift
    assert shift_round(np.array([12345, -12345]), 80).tolist() == [0, 0]


def test_round_nearest_is_half_away_from_zero():
    assert round_nearest([0.5, -0.5, 1.5, -2.5, 0.49]).tolist() == [1, -1, 2, -3, 0]


def test_gain_format():
    assert quantize_gain(1.0, 16) == (16384, -14)             # exact: 2^14·2^−14
    assert quantize_gain(-0.75, 16) == (-24576, -15)
    assert quantize_gain(0.3, 16) == (19661, -16)              # 0.6·2^15 = 19660.8 → 19661
    assert quantize_gain(0.0, 16) == (0, 0)
    # 1.9999999 rounds to 2^7 = 128, out of range: halve the mantissa, raise the exponent
    assert quantize_gain(1.9999999, 8) == (64, -5)


def test_loihi_decay_truncates_toward_zero():
    # (1000·3072) >> 12 = 750;  1001·3072 = 3075072, >> 12 = 750 (750.75), sign restored: −750
    d = np.array([1024, 1024, 0])
    assert decay_state(np.array([1000, -1001, -1001]), d, 12, "complement").tolist() == [750, -750, -1001]
    # multiplier form floors: (−1001·3·2^30) >> 32 = ⌊−750.75⌋ = −751
    assert decay_state(np.array([-1001]), np.array([3 << 30]), 32, "multiplier").tolist() == [-751]


# ---------------------------------------------------------------- one neuron step by hand
def hand_network(weight_gain: float = 0.3) -> Network:
    """src (constant 200, graded) → dst (3 neurons) with delay 0 and gain 0.3.

    dst: f = 8, 24-bit state, decay code 1024 of 2^12 (δ = 0.75), bias 3·2^2 LSBs,
    threshold 0, graded payload of 16 bits with shift 8; weights M = [5, −5, 100]ᵀ
    with exponent −3 (target LSBs per payload unit).
    """
    src = Population("src", 1, v_init=200.0)
    dst = Population("dst", 3, decay=0.75, bias=12 / 256, v_init=[1000 / 256, -1001 / 256, (2 ** 23 - 10) / 256],
                     threshold=0.0, record=True)
    proj = Projection("src", "dst", np.array([[5.0], [-5.0], [100.0]]) / 8, delay=0, gain="g", name="in")
    f_src = PopulationFixed(name="src", size=1, state_bits=24, scale_exponent=0, v_init=[200], v_min=[-(2 ** 23 - 1)],
                            v_max=[2 ** 23 - 1], bias_mantissa=[0], bias_exponent=[0], threshold=[THRESHOLD_ALWAYS],
                            reset_value=[0], decay=[0], payload_bits=24, payload_shift=0)
    f_dst = PopulationFixed(name="dst", size=3, state_bits=24, scale_exponent=8, v_init=[1000, -1001, 2 ** 23 - 10],
                            v_min=-(2 ** 23 - 1), v_max=2 ** 23 - 1, bias_mantissa=3, bias_exponent=2,
                            threshold=0, reset_value=0, decay=1024, payload_bits=16, payload_shift=8)
    weights = ProjectionFixed(name="in", mantissa_bits=8,
                              slices=[WeightSlice(mantissa=[[5], [-5], [100]], exponent=[-3, -3, -3])])
    spec = FixedPointSpec(hardware="hand", populations=[f_src, f_dst], projections=[weights])
    return Network([src, dst], [proj], gains=[Gain("g", weight_gain)], schedule=[["src", "dst"]],
                   fixed_point=spec)


def test_one_neuron_step_by_hand():
    """Step 0 of dst, neuron by neuron (docs/ir.md §5.2–5.5):

    gain 0.3 → (19661, −16); a = M·200 = [1000, −1000, 20000]; shift −(−16 − 3) = 19:
      c0 = (19661·1000 + 2^18) >> 19 = 19923144 >> 19 = 38
      c1 = (−19661000 + 2^18) >> 19 = ⌊−37.0005⌋ = −38
      c2 = (19661·20000 + 2^18) >> 19 = 393482144 >> 19 = 750
    bias rshift(3, −2) = 12
    leak: 1000 → 750, −1001 → −750, 8388598 → (8388598·3072) >> 12 = 6291448
    u = [750 + 12 + 38, −750 + 12 − 38, 6291448 + 12 + 750] = [800, −776, 6292210]
    """
    trace = run_fixed(hand_network(), 1, record_every=1)
    raw = trace.meta["fixed_point"]["integer_state"]
    assert raw["dst"].tolist() == [800, -776, 6292210]
    assert raw["src"].tolist() == [200]
    np.testing.assert_array_equal(trace.final_state["dst"], np.array([800, -776, 6292210]) / 256)
    # neurons 0 and 2 fire (v > 0); payload rshift(800, 8) = 3, rshift(6292210, 8) = 24579
    # (6292338 >> 8); a payload unit is worth 2^−(8 − 8) = 1
    steps, neurons, payloads = trace.events["dst"]
    assert neurons.tolist() == [0, 2] and payloads.tolist() == [3.0, 24579.0]
    assert trace.dtype == "int64" and trace.backend == "reference"


def test_state_saturates_instead_of_wrapping():
    """Gain 3000: neuron 2 gets 3000·20000·2^−3 = 7.5e6 LSBs on top of its leaked
    6291448: u = 13791460 > 2^23 − 1 must saturate there, not wrap to a negative
    value. (3000 = (24000, −3) exactly; neuron 1: −750 + 12 + rshift(−24·10^6, 6) = −375738.)"""
    trace = run_fixed(hand_network(weight_gain=3000.0), 2, record_every=1)
    first = trace.samples["dst"][1][0] * 256
    assert first.tolist() == [750 + 12 + 375000, -375738, 2 ** 23 - 1]
    assert trace.meta["fixed_point"]["overflow"]["dst"]["state_saturations"] >= 2
    assert trace.meta["fixed_point"]["overflow"]["dst"]["max_abs_state"] > 2 ** 23


def test_reference_backend_dispatches_quantized_networks():
    net = hand_network()
    assert ReferenceBackend().capabilities().supports("fixed_point")
    trace = simulate(net, 2, record_every=0)
    assert trace.dtype == "int64" and "fixed_point" in trace.meta
    json.dumps(trace.meta["fixed_point"]["overflow"])       # JSON-ready statistics


def test_sentinel_thresholds():
    net = hand_network()
    assert net.fixed_point.populations[0].threshold[0] == THRESHOLD_ALWAYS
    never = PopulationFixed(name="n", size=1, state_bits=8, scale_exponent=0, v_init=5, v_min=-127, v_max=127,
                            bias_mantissa=0, bias_exponent=0, threshold=THRESHOLD_NEVER, reset_value=0, decay=0)
    pop = Population("n", 1, v_init=5.0, threshold=np.inf, record=True)
    trace = run_fixed(Network([pop], fixed_point=FixedPointSpec("t", [never], [])), 3)
    assert trace.spike_counts["n"].tolist() == [0]


# ---------------------------------------------------------------- IR validation and files
def test_spec_must_match_the_network():
    net = hand_network()
    spec = net.fixed_point
    with pytest.raises(InputError, match="fixed_point.populations"):
        Network([net.populations[1], net.populations[0]], net.projections, gains=net.gains,
                schedule=[["src", "dst"]], fixed_point=spec)
    bad = ProjectionFixed(name="in", mantissa_bits=8, slices=[WeightSlice(mantissa=[[1, 2]], exponent=[0])])
    with pytest.raises(InputError, match="does not match"):
        Network(net.populations, net.projections, gains=net.gains, schedule=net.schedule,
                fixed_point=FixedPointSpec("hand", spec.populations, [bad]))


@pytest.mark.parametrize("change, field", [
    (dict(state_bits=40), "state_bits"),
    (dict(v_init=[2 ** 23, 0, 0]), "v_init"),
    (dict(decay=5000), "decay"),
    (dict(decay_form="linear"), "decay_form"),
    (dict(bias_mantissa=[0.5, 0, 0]), "bias_mantissa"),
])
def test_population_spec_validation(change, field):
    base = dict(name="p", size=3, state_bits=24, scale_exponent=8, v_init=0, v_min=-(2 ** 23 - 1),
                v_max=2 ** 23 - 1, bias_mantissa=0, bias_exponent=0, threshold=0, reset_value=0, decay=0)
    with pytest.raises(InputError, match=field):
        PopulationFixed(**{**base, **change})


def test_mantissa_range_is_validated():
    with pytest.raises(InputError, match="8-bit"):
        ProjectionFixed(name="p", mantissa_bits=8, slices=[WeightSlice(mantissa=[[128]], exponent=[0])])


def test_save_load_round_trip_is_exact(tmp_path):
    net = hand_network()
    # a sparse slice too
    spec = net.fixed_point
    spec.projections[0].slices.append(WeightSlice(mantissa=sp.csr_matrix(np.array([[1], [0], [-2]])),
                                                  exponent=[-9, -9, -9]))
    loaded = load_network(save_network(net, tmp_path / "ir"))
    a, b = net.fixed_point, loaded.fixed_point
    assert b.hardware == a.hardware and b.gain_mantissa_bits == a.gain_mantissa_bits
    for pa, pb in zip(a.populations, b.populations):
        for key in ("v_init", "v_min", "v_max", "bias_mantissa", "bias_exponent", "threshold", "reset_value",
                    "decay"):
            np.testing.assert_array_equal(getattr(pa, key), getattr(pb, key))
            assert getattr(pb, key).dtype == np.int64
        assert (pa.scale_exponent, pa.payload_bits, pa.payload_shift) == (pb.scale_exponent, pb.payload_bits,
                                                                          pb.payload_shift)
    dense_a, sparse_a = a.projections[0].slices
    dense_b, sparse_b = b.projections[0].slices
    np.testing.assert_array_equal(dense_a.mantissa, dense_b.mantissa)
    assert sp.issparse(sparse_b.mantissa) and sparse_b.mantissa.dtype == np.int64
    np.testing.assert_array_equal(sparse_a.mantissa.toarray(), sparse_b.mantissa.toarray())
    ta, tb = run_fixed(net, 4, record_every=1), run_fixed(loaded, 4, record_every=1)
    np.testing.assert_array_equal(ta.samples["dst"][1], tb.samples["dst"][1])


def test_initial_emission_in_integer_execution():
    """docs/ir.md §2/§5.5: a delay-1 reader sees what the integer v_init emits at step 0."""
    from snn_compile.backends.reference import ReferenceBackend
    from snn_compile.hardware import load_hardware
    from snn_compile.ir import Gain, Network, Population, Projection
    from snn_compile.passes.quantize import quantize

    net = Network([Population("src", 1, v_init=0.5, emit_initial_state=True), Population("dst", 1)],
                  [Projection("src", "dst", np.ones((1, 1)), delay=1, gain="g")], gains=[Gain("g", 1.0)])
    qnet, _ = quantize(net, load_hardware("loihi2"))
    trace = ReferenceBackend().run(qnet, 3, record_every=1)
    assert trace.samples["dst"][1].ravel().tolist() == [0.5, 1.0, 1.5]
