"""The quantization pass (snn_compile.passes.quantize): formats against hand-worked
numbers, saturation, stochastic rounding, refusals, the float identity, the IR
round trip and the float-vs-fixed comparison."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from snn_compile.backends.reference_fixed import run_fixed
from snn_compile.errors import CapabilityError, InputError
from snn_compile.hardware import load_hardware, parse_hardware
from snn_compile.ir import Gain, Network, Population, Projection, load_network, save_network
from snn_compile.lower import lower
from snn_compile.passes.quantize import (Calibration, block_quantize, compare_float_fixed, format_comparison,
                                         quantize)
from snn_compile.qp import QP


def small_qp() -> QP:
    """min ½(x1² + x2²) − x1 − x2  s.t.  x1 + x2 ≤ 1, 0 ≤ x ≤ 1:  x* = (½, ½)."""
    return QP(P=np.eye(2), q=[-1.0, -1.0], G=[[1.0, 1.0]], h=[1.0], lb=[0.0, 0.0], ub=[1.0, 1.0])


def two_population_net(weights, *, gain: str | None = "g", v_max=np.inf) -> Network:
    """src (graded, emits its state every step) → dst; both expected within ±1."""
    src = Population("src", np.shape(weights)[1], v_init=0.5)
    dst = Population("dst", np.shape(weights)[0], v_max=v_max)
    gains = [Gain("g", 0.5)] if gain else []
    return Network([src, dst], [Projection("src", "dst", np.asarray(weights, dtype=float), delay=1, gain=gain,
                                           name="w")], gains=gains)


UNIT_RANGE = Calibration({"src": 1.0, "dst": 1.0})


def hw_variant(name: str = "loihi2", **changes) -> object:
    """A shipped config with some fields changed ("weights.per_row_exponent": True)."""
    doc = load_hardware(name).to_dict()
    for key, value in changes.items():
        section, field = key.split(".")
        doc[section][field] = value
    return parse_hardware(yaml.safe_dump(doc, allow_unicode=True), source=f"{name} variant")


# ---------------------------------------------------------------- block exponents by hand
def test_block_exponent_by_hand():
    # max 0.75: ⌈log₂ 0.75⌉ = 0, e = 0 − 8 + 1 = −7; 0.75·128 = 96, −0.3·128 = −38.4 → −38, 0.1·128 = 12.8 → 13
    mant, exp, clipped = block_quantize([[0.75, -0.3], [0.1, 0.0]], 8)
    assert mant.tolist() == [[96, -38], [13, 0]] and exp == -7 and clipped == 0


def test_exact_power_of_two_raises_the_exponent_instead_of_clipping():
    # 1.0·2^7 = 128 does not fit ±127: e = −6, so the identity stays exact (64·2^−6)
    mant, exp, clipped = block_quantize([[1.0, 0.5]], 8)
    assert mant.tolist() == [[64, 32]] and exp == -6 and clipped == 0


def test_values_beyond_range_saturate_never_wrap():
    # exponent capped at 1: 1000/2 = 500 → +127 (not 500 − 256 = −12), −1000 → −127; −3/2 = −1.5 → −2
    mant, exp, clipped = block_quantize([[1000.0, -3.0, -1000.0]], 8, exponent_range=(-1, 1))
    assert mant.tolist() == [[127, -2, -127]] and exp == 1 and clipped == 2


def test_projection_mantissas_in_the_pass():
    """Both populations have peak 1: f = 20 (1·2^(20+2) ≤ 2^23 − 1); src emits 24-bit
    payloads of its whole state (shift 0), so W is already in target LSBs per payload
    unit and the block is the hand-worked one above."""
    net = two_population_net([[0.75, -0.3], [0.1, 0.0]])
    qnet, report = quantize(net, "loihi2", calibration=UNIT_RANGE, weight_slices=1, overflow_check_steps=0)
    spec = qnet.fixed_point
    assert [p.scale_exponent for p in spec.populations] == [20, 20]
    (sl,) = spec.projections[0].slices
    assert sl.mantissa.tolist() == [[96, -38], [13, 0]] and sl.exponent.tolist() == [-7, -7]
    # the float weights are exactly mantissa·2^(E − f_dst + φ_src)
    np.testing.assert_array_equal(qnet.projections[0].weights, np.array([[96, -38], [13, 0]]) / 128)
    row = next(t for t in report.tensors if t.tensor == "projection 'w' weights")
    assert row.max_error == pytest.approx(0.4 / 128) and row.clipped == 0 and row.exponent_min == -7
    assert net.projections[0].weights[0, 1] == -0.3        # the input network is untouched


def test_weight_slices_carry_the_rounding_residual():
    """−0.3 = −38/128 − 0.00312…: the second slice (e = ⌈log₂ 0.4/128⌉ − 7 = −15) takes
    round(−0.4·2^8 / 128 · 128)… = −102 in units of 2^−15."""
    net = two_population_net([[0.75, -0.3], [0.1, 0.0]])
    qnet, report = quantize(net, "loihi2", calibration=UNIT_RANGE, weight_slices=2, overflow_check_steps=0)
    first, second = qnet.fixed_point.projections[0].slices
    assert first.mantissa.tolist() == [[96, -38], [13, 0]]
    # residuals: 0, −0.4/128 = −0.003125, −0.2/128 = −0.0015625 → e = −8 − 7 = −15 (max 0.003125 ≤ 2^−8)
    assert second.exponent.tolist() == [-15, -15]
    assert second.mantissa.tolist() == [[0, -102], [-51, 0]]       # −0.003125·2^15 = −102.4, −51.2
    assert qnet.fixed_point.synapse_count == 3 + 2


def test_per_row_and_per_sign_exponents():
    W = [[0.75, -0.3], [0.01, -0.02]]
    per_row = hw_variant(**{"weights.per_row_exponent": True})
    qnet, _ = quantize(two_population_net(W), per_row, calibration=UNIT_RANGE, weight_slices=1,
                       overflow_check_steps=0)
    (sl,) = qnet.fixed_point.projections[0].slices
    # row 1: max 0.02, ⌈log₂ 0.02⌉ = −5, e = −12: 0.01·4096 = 40.96 → 41, −0.02·4096 = −81.92 → −82
    assert sl.exponent.tolist() == [-7, -12] and sl.mantissa.tolist() == [[96, -38], [41, -82]]
    per_sign = hw_variant(**{"weights.shift_per_synapse_type": True})
    qnet, _ = quantize(two_population_net(W), per_sign, calibration=UNIT_RANGE, weight_slices=1,
                       overflow_check_steps=0)
    positive, negative = qnet.fixed_point.projections[0].slices
    assert np.all(positive.mantissa >= 0) and np.all(negative.mantissa <= 0)
    assert positive.exponent[0] == -7 and negative.exponent[0] == -8      # max 0.3: ⌈log₂⌉ = −1


def test_state_scale_lowered_to_fit_a_gainless_weight():
    """A binary spike adding 1.0 to a population expected within ±1e−3: f would be 30
    (1e−3·2^32 ≤ 2^23 − 1), putting the weight 1.0 at 2^30 LSBs = 64·2^24, beyond
    Loihi 1's exponent ≤ 13. The pass lowers f to 19 (64·2^13 = 2^19) instead of
    clipping the mantissa; the power-of-two bump (128 → 64·2) is accounted for."""
    src = Population("src", 1, spike="binary", threshold=0.5, v_init=1.0)
    dst = Population("dst", 1)
    net = Network([src, dst], [Projection("src", "dst", [[1.0]], delay=1, name="w")])
    qnet, report = quantize(net, "loihi1", calibration=Calibration({"src": 1.0, "dst": 1e-3}),
                            overflow_check_steps=0)
    (sl,) = qnet.fixed_point.projections[0].slices
    assert qnet.fixed_point.populations[1].scale_exponent == 19
    assert sl.mantissa.tolist() == [[64]] and sl.exponent.tolist() == [13]
    assert "lowered" in report.scales[1].note
    assert next(t for t in report.tensors if t.tensor == "projection 'w' weights").clipped == 0


def test_clamp_bound_beyond_state_range_saturates():
    net = two_population_net([[1.0, 1.0]], v_max=1e12)
    qnet, report = quantize(net, "loihi2", calibration=UNIT_RANGE, overflow_check_steps=0)
    assert qnet.fixed_point.populations[1].v_max.tolist() == [2 ** 23 - 1]
    row = next(t for t in report.tensors if t.tensor == "population 'dst' v_max")
    assert row.clipped == 1


def test_loihi_decay_code_and_resting_level():
    """δ = 0.999 → d = round(0.001·4096) = round(4.096) = 4, δ_q = 1 − 4/4096; the bias
    b = 0.001 is rescaled to (1 − δ_q)·1 = 4/4096 so the resting level b/(1 − δ) stays 1."""
    pop = Population("p", 1, decay=0.999, bias=0.001, v_init=1.0)
    qnet, report = quantize(Network([pop]), "loihi1", calibration=Calibration({"p": 1.0}),
                            overflow_check_steps=0)
    fixed = qnet.fixed_point.populations[0]
    assert fixed.decay.tolist() == [4]
    assert qnet.populations[0].decay[0] == 1 - 4 / 4096
    assert qnet.populations[0].bias[0] == pytest.approx(4 / 4096, rel=2 ** -11)
    assert any("resting level" in n for n in report.notes)


# ---------------------------------------------------------------- stochastic rounding
def test_stochastic_rounding_reproducible_and_unbiased():
    values = np.r_[np.full(20000, 10.3), 127.0]            # 127 pins the exponent at 0
    a, e, _ = block_quantize(values, 8, rounding="stochastic", seed=7)
    b, _, _ = block_quantize(values, 8, rounding="stochastic", seed=7)
    c, _, _ = block_quantize(values, 8, rounding="stochastic", seed=8)
    assert e == 0 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert set(np.unique(a[:-1])) == {10, 11}
    assert abs(a[:-1].mean() - 10.3) < 0.01                  # σ of the mean ≈ 0.0032
    assert block_quantize(values, 8)[0][:-1].mean() == 10   # nearest is biased here


def test_stochastic_pass_is_reproducible():
    net = two_population_net(np.random.default_rng(0).uniform(-1, 1, (4, 4)))
    q1, _ = quantize(net, "loihi2", rounding="stochastic", seed=3, calibration=UNIT_RANGE, overflow_check_steps=0)
    q2, _ = quantize(net, "loihi2", rounding="stochastic", seed=3, calibration=UNIT_RANGE, overflow_check_steps=0)
    np.testing.assert_array_equal(q1.projections[0].weights, q2.projections[0].weights)
    with pytest.raises(InputError, match="rounding"):
        quantize(net, "loihi2", rounding="up", calibration=UNIT_RANGE)


# ---------------------------------------------------------------- refusals and the float chip
@pytest.mark.parametrize("chip", ["loihi1", "spinnaker1"])
def test_graded_family_refused_on_binary_chips(chip):
    net = lower(small_qp(), "primal-dual")
    with pytest.raises(CapabilityError, match="'lif'") as err:
        quantize(net, chip, overflow_check_steps=0, calibration=Calibration({}))
    assert "graded spikes" in str(err.value) and chip in str(err.value)
    with pytest.raises(CapabilityError, match="'lif'"):
        compare_float_fixed(small_qp(), chip, "primal-dual", steps=10)


def test_lif_family_runs_on_binary_chips():
    for chip in ("loihi1", "spinnaker1"):
        result = compare_float_fixed(small_qp(), chip, "lif", steps=3000)
        assert result["fixed"]["primal_residual"] < 1e-2
        assert abs(result["fixed"]["objective"] - result["float"]["objective"]) < 0.01


def test_float_chip_is_the_identity():
    net = lower(small_qp(), "primal-dual")
    same, report = quantize(net, "float")
    assert same is net and report.identity and same.fixed_point is None
    assert "nothing to quantize" in report.format()


def test_already_quantized_is_refused():
    qnet, _ = quantize(two_population_net([[1.0]]), "loihi2", calibration=UNIT_RANGE, overflow_check_steps=0)
    with pytest.raises(InputError, match="already quantized"):
        quantize(qnet, "loihi2")


# ---------------------------------------------------------------- whole networks
def test_quantized_ir_round_trip(tmp_path):
    qnet, _ = quantize(lower(small_qp(), "primal-dual"), "loihi2", overflow_check_steps=0, calibration_steps=200)
    loaded = load_network(save_network(qnet, tmp_path / "ir"))
    for a, b in zip(qnet.fixed_point.projections, loaded.fixed_point.projections):
        for sa, sb in zip(a.slices, b.slices):
            np.testing.assert_array_equal(sa.mantissa.toarray(), sb.mantissa.toarray())
            np.testing.assert_array_equal(sa.exponent, sb.exponent)
    for a, b in zip(qnet.projections, loaded.projections):
        np.testing.assert_array_equal(a.weights.toarray(), b.weights.toarray())
    assert loaded.controls[0].update_primal_weight is False
    ta, tb = run_fixed(qnet, 300, record_every=0), run_fixed(loaded, 300, record_every=0)
    for name in ta.final_state:
        np.testing.assert_array_equal(ta.final_state[name], tb.final_state[name])


def test_report_and_overflow_check():
    qnet, report = quantize(lower(small_qp(), "primal-dual"), "loihi2", overflow_check_steps=500,
                            calibration_steps=500)
    assert report.overflow_steps == 500 and not report.saturated
    assert set(report.overflow) == {"x", "v", "x_ag", "v_ag"}
    for stats in report.overflow.values():
        assert stats["max_abs_state"] <= stats["state_limit"]
    text = report.format()
    assert "overflow check over 500 steps: no saturation" in text and "projection" in text
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["hardware"] == "loihi2" and doc["scales"][0]["population"] == "x"
    assert any("frozen" in n for n in report.notes)


def test_compare_float_fixed_small_qp():
    result = compare_float_fixed(small_qp(), "loihi2", "primal-dual", steps=2000)
    json.dumps({k: v for k, v in result.items()})
    assert result["float"]["primal_residual"] < 1e-9
    assert result["fixed"]["primal_residual"] < 1e-4 and result["fixed"]["dual_residual"] < 1e-3
    assert "float64 vs loihi2" in format_comparison(result)


def test_anymal_loihi2_constraint_residual(shared_data):
    """The done-when target: ‖Ax − k‖∞ < 0.1 in the original variables on Loihi 2
    (lava-optimization's own Loihi 2 run ends at 48.0 on preconditioned constraints)."""
    data = np.load(shared_data / "lava_anymal" / "ex_qp_small.npz")
    qp = QP(P=data["A"], q=data["C"].ravel(), A=data["B"], b=data["D"].ravel(), name="anymal")
    result = compare_float_fixed(qp, "loihi2", "primal-dual", steps=4000)
    assert result["fixed"]["equality_residual"] < 0.1
    assert not result["quantization"]["overflow"]["saturated"]
