"""Chip configs: the shipped ones load and validate; a bad field is refused with
the file, the field and its line."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from snn_compile.errors import InputError
from snn_compile.hardware import (HardwareConfig, available_hardware, load_hardware,
                                  parse_hardware)

SHIPPED = ["float", "loihi1", "loihi2", "spinnaker1", "spinnaker2"]
CONFIG_DIR = Path(__file__).resolve().parents[1] / "hardware_configs"


def _write(tmp_path, text: str, name: str = "chip.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _edited(tmp_path, base: str, old: str, new: str) -> Path:
    """A copy of a shipped config with one line changed."""
    text = (CONFIG_DIR / f"{base}.yaml").read_text(encoding="utf-8")
    assert old in text, old
    return _write(tmp_path, text.replace(old, new, 1))


def _line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip().startswith(needle):
            return number
    raise AssertionError(needle)


# ---------------------------------------------------------------- shipped configs
def test_available_hardware_lists_the_shipped_configs():
    assert set(SHIPPED) <= set(available_hardware())


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_config_loads_and_validates(name):
    hw = load_hardware(name)
    assert isinstance(hw, HardwareConfig)
    assert hw.name == name
    assert hw.source.endswith(f"{name}.yaml")
    if hw.is_fixed_point:
        assert hw.weights.mantissa_bits >= 2 and hw.state.bits >= hw.weights.mantissa_bits
    assert hw.features.graded_spikes == (hw.features.graded_spike_payload_bits != 0)


@pytest.mark.parametrize("name", SHIPPED)
def test_to_dict_round_trips(name, tmp_path):
    hw = load_hardware(name)
    again = load_hardware(_write(tmp_path, yaml.safe_dump(hw.to_dict(), allow_unicode=True)))
    assert again.to_dict() == hw.to_dict()


def test_published_figures_are_the_ones_documented():
    """Guards against an accidental edit of a sourced number."""
    l1, l2, s1 = load_hardware("loihi1"), load_hardware("loihi2"), load_hardware("spinnaker1")
    assert (l1.resources.neurons_per_core, l1.resources.cores_per_chip) == (1024, 128)
    assert l1.resources.synapse_memory_bytes_per_core == 16384 * 64 // 8
    assert (l1.threshold.mantissa_bits, l1.threshold.exponent_min) == (17, 6)
    assert (l1.bias.mantissa_bits, l1.bias.exponent_max) == (13, 7)
    assert l1.decay.bits == 12 and l1.decay.form == "complement"
    assert not l1.features.graded_spikes and not s1.features.graded_spikes
    assert l2.features.graded_spike_payload_bits == 24 and l2.state.bits == 24
    assert l2.cost.time_per_step_s == pytest.approx(8.14e-6)
    assert (s1.state.bits, s1.state.fraction_bits) == (32, 15)
    assert s1.weights.shift_per_synapse_type and s1.resources.neurons_per_core == 256
    assert s1.resources.chips_per_board == 48 and s1.resources.default_max_chips == 48
    assert load_hardware("spinnaker2").resources.cores_per_chip == 152
    assert load_hardware("float").resources.neurons_per_core is None


def test_config_is_frozen():
    hw = load_hardware("loihi2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        hw.name = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        hw.resources.cores_per_chip = 1


def test_load_by_path_and_passthrough(tmp_path):
    path = _write(tmp_path, (CONFIG_DIR / "loihi1.yaml").read_text(encoding="utf-8"), "mychip.yaml")
    hw = load_hardware(path)
    assert hw.name == "loihi1" and hw.source == str(path)
    assert load_hardware(str(path)).to_dict() == hw.to_dict()
    assert load_hardware(hw) is hw


def test_unknown_name_lists_the_shipped_ones():
    with pytest.raises(InputError) as err:
        load_hardware("loihi9")
    assert "loihi9" in str(err.value) and "loihi2" in str(err.value)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(InputError) as err:
        load_hardware(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(err.value)


# ---------------------------------------------------------------- bad fields
@pytest.mark.parametrize("old,new,field", [
    ("  mantissa_bits: 8\n", "  mantissa_bits: 0\n", "weights.mantissa_bits"),
    ("  mantissa_bits: 8\n", "  mantissa_bits: eight\n", "weights.mantissa_bits"),
    ("  exponent_min: -1\n", "  exponent_min: 20\n", "weights.exponent_min"),
    ("  per_row_exponent: false\n", "  per_row_exponent: 3\n", "weights.per_row_exponent"),
    ("  bits: 24\n", "  bits: 0\n", "state.bits"),
    ("  form: complement\n", "  form: exponential\n", "decay.form"),
    ("  neurons_per_core: 1024\n", "  neurons_per_core: -5\n", "resources.neurons_per_core"),
    ("  bytes_per_synapse: 2\n", "  bytes_per_synapse: 0\n", "resources.bytes_per_synapse"),
    ("  energy_per_synop_j: 2.36e-11\n", "  energy_per_synop_j: -1.0\n", "cost.energy_per_synop_j"),
    ("  graded_spike_payload_bits: 0\n", "  graded_spike_payload_bits: 8\n", "features.graded_spikes"),
    ("  max_delay_steps: 62\n", "  max_delay_steps: 0\n", "features.max_delay_steps"),
    ("  reset_to_value: zero\n", "  reset_to_value: sometimes\n", "features.reset_to_value"),
    ("arithmetic: fixed\n", "arithmetic: analog\n", "arithmetic"),
    ("  neurons_per_core: 1024\n", "  neurons_per_core: 1024\n  neurons_per_cores: 3\n",
     "resources.neurons_per_cores"),
])
def test_bad_field_names_file_field_and_line(tmp_path, old, new, field):
    path = _edited(tmp_path, "loihi1", old, new)
    with pytest.raises(InputError) as err:
        load_hardware(path)
    e = err.value
    assert e.field == field
    assert e.source == str(path)
    assert str(path) in str(e) and f"'{field}'" in str(e)
    assert "\n" not in str(e)
    key = field.split(".")[-1] + ":"
    if key != "graded_spikes:":      # that check is reported on the flag, found next to the bits
        assert e.line == _line_of(path, key)


def test_missing_field_is_named(tmp_path):
    path = _edited(tmp_path, "loihi1", "  cores_per_chip: 128\n", "")
    with pytest.raises(InputError) as err:
        load_hardware(path)
    assert err.value.field == "resources.cores_per_chip" and "missing" in str(err.value)
    assert err.value.line == _line_of(path, "resources:")


def test_fixed_point_chip_needs_its_formats(tmp_path):
    text = (CONFIG_DIR / "loihi1.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    data["weights"] = None
    with pytest.raises(InputError) as err:
        parse_hardware(yaml.safe_dump(data), source="x.yaml")
    assert err.value.field == "weights" and "fixed-point" in str(err.value)


def test_wrong_format_or_version(tmp_path):
    for old, new, field in (("format: snn-compile/hardware", "format: something-else", "format"),
                            ("version: 1", "version: 2", "version")):
        with pytest.raises(InputError) as err:
            load_hardware(_edited(tmp_path, "loihi2", old, new))
        assert err.value.field == field


def test_invalid_yaml_gives_line(tmp_path):
    path = _write(tmp_path, "format: snn-compile/hardware\nversion: 1\nname: [unclosed\n")
    with pytest.raises(InputError) as err:
        load_hardware(path)
    assert err.value.line is not None and str(path) in str(err.value)


def test_not_a_mapping(tmp_path):
    with pytest.raises(InputError) as err:
        load_hardware(_write(tmp_path, "- just\n- a list\n"))
    assert "mapping" in str(err.value)


def test_exponent_without_dot_is_read_as_a_number(tmp_path):
    # PyYAML reads 1e-3 as a string; a user writing it means the number.
    hw = load_hardware(_edited(tmp_path, "loihi1", "time_per_step_s: 1.0e-5", "time_per_step_s: 1e-5"))
    assert hw.cost.time_per_step_s == pytest.approx(1e-5)


def test_float_chip_with_bad_float_bits_is_refused(tmp_path):
    with pytest.raises(InputError) as err:
        load_hardware(_edited(tmp_path, "float", "float_bits: 64", "float_bits: 12"))
    assert err.value.field == "float_bits"
