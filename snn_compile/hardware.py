"""Chip descriptions: every number the quantizer and the mapper need, read from YAML.

A chip is one YAML file (schema in ``docs/hardware.md``); the shipped ones live in
``hardware_configs/`` and are loaded by bare name (``load_hardware("loihi2")``), a
user's own file by path. Loading validates every field and refuses a bad one with
an ``InputError`` naming the file, the field and its line.

Fixed-point conventions used by every format below:

* ``*_bits`` count the sign bit where the quantity is signed.
* A quantity stored as mantissa m with exponent e is worth m·2**e **state LSBs**
  (the unit of the neuron state's least significant bit), so formats of different
  quantities compare directly.
* ``None`` for a limit means "no limit"; ``None`` for a cost means "not known".
"""
from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import InputError

FORMAT = "snn-compile/hardware"
FORMAT_VERSION = 1
ARITHMETICS = ("fixed", "float")
DECAY_FORMS = ("complement", "multiplier")
RESET_VALUES = ("any", "zero", "none")

#: The shipped configs sit at the repository root next to the package (the
#: package is installed editable), or inside the package when it is built as data.
_CONFIG_DIRS = (Path(__file__).resolve().parent.parent / "hardware_configs",
                Path(__file__).resolve().parent / "hardware_configs")


# ---------------------------------------------------------------- field checks
def _fail(field: str, reason: str):
    raise InputError(reason, field=field)


def _int(field: str, value, *, minimum: Optional[int] = None, maximum: Optional[int] = None,
         nullable: bool = False) -> Optional[int]:
    if value is None:
        if nullable:
            return None
        _fail(field, "is required")
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(field, f"must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        _fail(field, f"must be ≥ {minimum}, got {value}")
    if maximum is not None and value > maximum:
        _fail(field, f"must be ≤ {maximum}, got {value}")
    return value


def _float(field: str, value, *, positive: bool = False, nullable: bool = True) -> Optional[float]:
    if value is None:
        if nullable:
            return None
        _fail(field, "is required")
    if isinstance(value, str):
        # PyYAML reads "1e-3" (no dot) as a string; accept the obvious meaning.
        try:
            value = float(value)
        except ValueError:
            _fail(field, f"must be a number, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(field, f"must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        _fail(field, f"must be a finite number {'> 0' if positive else '≥ 0'}, got {value}")
    return value


def _bool(field: str, value) -> bool:
    if not isinstance(value, bool):
        _fail(field, f"must be true or false, got {value!r}")
    return value


def _choice(field: str, value, allowed) -> str:
    if value not in allowed:
        _fail(field, f"must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return value


def _bits(field: str, value, nullable: bool = False) -> Optional[int]:
    return _int(field, value, minimum=1, maximum=64, nullable=nullable)


# ---------------------------------------------------------------- sections
@dataclass(frozen=True)
class NumberFormat:
    """A quantity stored as mantissa·2**exponent state LSBs; the exponent is
    chosen by the quantizer within [exponent_min, exponent_max]."""

    SECTION = ""
    mantissa_bits: int
    exponent_min: int
    exponent_max: int
    signed: bool = True

    def __post_init__(self):
        s = self.SECTION
        _bool(f"{s}.signed", self.signed)
        _int(f"{s}.mantissa_bits", self.mantissa_bits, minimum=1 + int(self.signed), maximum=64)
        _int(f"{s}.exponent_min", self.exponent_min, minimum=-64, maximum=64)
        _int(f"{s}.exponent_max", self.exponent_max, minimum=-64, maximum=64)
        if self.exponent_min > self.exponent_max:
            _fail(f"{s}.exponent_min", f"exponent_min {self.exponent_min} > exponent_max {self.exponent_max}")

    @property
    def max_mantissa(self) -> int:
        """Largest mantissa magnitude (symmetric range: sign-magnitude view)."""
        return 2 ** (self.mantissa_bits - int(self.signed)) - 1


@dataclass(frozen=True)
class WeightFormat(NumberFormat):
    SECTION = "weights"
    #: each target neuron (row of W) may have its own exponent; else one per projection
    per_row_exponent: bool = False
    #: SpiNNaker: the exponent is a left shift per (core, synapse type), and the sign
    #: picks the synapse type, so positive and negative weights get separate exponents
    shift_per_synapse_type: bool = False

    def __post_init__(self):
        super().__post_init__()
        _bool("weights.per_row_exponent", self.per_row_exponent)
        _bool("weights.shift_per_synapse_type", self.shift_per_synapse_type)


@dataclass(frozen=True)
class BiasFormat(NumberFormat):
    SECTION = "bias"


@dataclass(frozen=True)
class ThresholdFormat(NumberFormat):
    SECTION = "threshold"


@dataclass(frozen=True)
class StateFormat:
    """Neuron state and input accumulator, two's complement."""

    bits: int                 # incl. sign
    fraction_bits: int        # s16.15 → 15; integer state → 0
    accumulator_bits: int     # synaptic input accumulator, incl. sign

    def __post_init__(self):
        _bits("state.bits", self.bits)
        _int("state.fraction_bits", self.fraction_bits, minimum=0, maximum=self.bits - 1)
        _bits("state.accumulator_bits", self.accumulator_bits)

    @property
    def max_value_lsb(self) -> int:
        return 2 ** (self.bits - 1) - 1


@dataclass(frozen=True)
class DecayFormat:
    """How δ·v is computed. ``complement`` (Loihi): d is stored and
    decayed = sign(v)·⌊|v|·(2**bits − d)/2**bits⌋, so δ = 1 − d/2**bits.
    ``multiplier`` (SpiNNaker u0.32): decayed = ⌊v·d/2**bits⌋, δ = d/2**bits."""

    bits: int
    form: str

    def __post_init__(self):
        _bits("decay.bits", self.bits)
        _choice("decay.form", self.form, DECAY_FORMS)


@dataclass(frozen=True)
class Resources:
    """Per-core and per-chip capacity; ``None`` = unlimited."""

    neurons_per_core: Optional[int]
    synapse_memory_bytes_per_core: Optional[int]
    bytes_per_synapse: float
    cores_per_chip: Optional[int]
    chips_per_board: Optional[int]
    default_max_chips: Optional[int]
    max_fan_in: Optional[int]             # synapses into one neuron
    max_fan_out: Optional[int]            # synapses out of one neuron
    input_axons_per_core: Optional[int]   # distinct presynaptic neurons feeding one core
    output_axons_per_core: Optional[int]  # Σ over the core's neurons of distinct target cores

    def __post_init__(self):
        for name in ("neurons_per_core", "synapse_memory_bytes_per_core", "cores_per_chip",
                     "chips_per_board", "default_max_chips", "max_fan_in", "max_fan_out",
                     "input_axons_per_core", "output_axons_per_core"):
            _int(f"resources.{name}", getattr(self, name), minimum=1, nullable=True)
        object.__setattr__(self, "bytes_per_synapse",
                           _float("resources.bytes_per_synapse", self.bytes_per_synapse,
                                  positive=True, nullable=False))


@dataclass(frozen=True)
class CostModel:
    """Time and energy per step and per operation; ``None`` = not known."""

    time_per_step_s: Optional[float]
    energy_per_synop_j: Optional[float]
    energy_per_neuron_update_j: Optional[float]
    static_power_per_chip_w: Optional[float]
    static_power_per_core_w: Optional[float]

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, _float(f"cost.{f.name}", getattr(self, f.name),
                                                    positive=f.name == "time_per_step_s"))


@dataclass(frozen=True)
class Features:
    """What the chip's neurons and synapses can express (docs/ir.md terms)."""

    graded_spikes: bool
    graded_spike_payload_bits: Optional[int]   # 0: binary only; None: full float payload
    min_delay_steps: int                       # 1 where a spike is seen one step later at the earliest
    max_delay_steps: Optional[int]
    subtractive_reset: bool
    reset_to_value: str                        # any | zero | none
    state_clamp: bool                          # per-neuron v_min/v_max
    max_spikes_per_step_rule: bool             # "at most K fire per update" (one spike per step)

    def __post_init__(self):
        _bool("features.graded_spikes", self.graded_spikes)
        _int("features.graded_spike_payload_bits", self.graded_spike_payload_bits,
             minimum=0, maximum=64, nullable=True)
        if self.graded_spikes != (self.graded_spike_payload_bits != 0):
            _fail("features.graded_spikes", f"graded_spikes is {self.graded_spikes} but "
                  f"graded_spike_payload_bits is {self.graded_spike_payload_bits} (0 means binary only)")
        _int("features.min_delay_steps", self.min_delay_steps, minimum=0)
        _int("features.max_delay_steps", self.max_delay_steps, minimum=self.min_delay_steps, nullable=True)
        for name in ("subtractive_reset", "state_clamp", "max_spikes_per_step_rule"):
            _bool(f"features.{name}", getattr(self, name))
        _choice("features.reset_to_value", self.reset_to_value, RESET_VALUES)


_SECTIONS = {"weights": WeightFormat, "bias": BiasFormat, "threshold": ThresholdFormat,
             "state": StateFormat, "decay": DecayFormat, "resources": Resources,
             "cost": CostModel, "features": Features}
#: numeric formats a fixed-point chip must give; a float chip may leave them null
_FIXED_POINT_SECTIONS = ("weights", "bias", "threshold", "state", "decay")


@dataclass(frozen=True)
class HardwareConfig:
    """One chip. Build it with :func:`load_hardware`; direct construction
    validates too (sections must already be the dataclasses above)."""

    name: str
    description: str
    arithmetic: str                       # fixed | float (neuron state arithmetic)
    float_bits: Optional[int]             # 32 or 64 when arithmetic is float
    weights: Optional[WeightFormat]
    bias: Optional[BiasFormat]
    threshold: Optional[ThresholdFormat]
    state: Optional[StateFormat]
    decay: Optional[DecayFormat]
    resources: Resources
    cost: CostModel
    features: Features
    source: str = ""                      # the file it came from, for messages

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            _fail("name", "must be a non-empty string")
        if not isinstance(self.description, str):
            _fail("description", "must be a string")
        _choice("arithmetic", self.arithmetic, ARITHMETICS)
        if self.arithmetic == "float":
            _choice("float_bits", self.float_bits, (16, 32, 64))
        elif self.float_bits is not None:
            _fail("float_bits", "only a float chip has float_bits; use null")
        for key, cls in _SECTIONS.items():
            value = getattr(self, key)
            if value is None and (key not in _FIXED_POINT_SECTIONS or self.arithmetic == "fixed"):
                _fail(key, "is required" + (" for a fixed-point chip" if key in _FIXED_POINT_SECTIONS else ""))
            if value is not None and not isinstance(value, cls):
                _fail(key, f"must be a {cls.__name__}")

    @property
    def is_fixed_point(self) -> bool:
        return self.arithmetic == "fixed"

    def max_cores(self, max_chips: Optional[int]) -> Optional[int]:
        per_chip = self.resources.cores_per_chip
        return None if per_chip is None or max_chips is None else per_chip * max_chips

    def to_dict(self) -> dict:
        """The YAML schema's nested dict (without comments)."""
        out: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION}
        for f in fields(self):
            if f.name == "source":
                continue
            value = getattr(self, f.name)
            out[f.name] = ({g.name: getattr(value, g.name) for g in fields(value)}
                           if f.name in _SECTIONS and value is not None else value)
        return out


# ---------------------------------------------------------------- loading
def available_hardware() -> list[str]:
    """Names of the shipped chip configs (``hardware_configs/NAME.yaml``)."""
    names = set()
    for folder in _CONFIG_DIRS:
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.yaml"))
    return sorted(names)


def _shipped_path(name: str) -> Optional[Path]:
    for folder in _CONFIG_DIRS:
        path = folder / f"{name}.yaml"
        if path.is_file():
            return path
    return None


def load_hardware(name_or_path) -> HardwareConfig:
    """A shipped chip by bare name (``"loihi2"``) or a YAML file by path.
    A ``HardwareConfig`` is returned unchanged, so callers can accept either."""
    if isinstance(name_or_path, HardwareConfig):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    looks_like_path = path.suffix in (".yaml", ".yml") or "/" in text or "\\" in text
    if not looks_like_path:
        shipped = _shipped_path(text)
        if shipped is None:
            raise InputError(f"unknown hardware {text!r}; shipped configs: "
                             f"{', '.join(available_hardware()) or 'none found'} "
                             f"(or give a path to a YAML file)", field="hardware")
        path = shipped
    if not path.is_file():
        raise InputError("no such hardware config file", source=str(path), field="hardware")
    return parse_hardware(path.read_text(encoding="utf-8"), source=str(path))


def _key_lines(text: str) -> dict[str, int]:
    """1-based line of every key, by dotted path ("weights.mantissa_bits")."""
    lines: dict[str, int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            lines[str(key.value)] = key.start_mark.line + 1
            if isinstance(value, yaml.MappingNode):
                for sub_key, _ in value.value:
                    lines[f"{key.value}.{sub_key.value}"] = sub_key.start_mark.line + 1
    return lines


def parse_hardware(text: str, source: str = "<hardware config>") -> HardwareConfig:
    """Validate a hardware YAML document (``yaml.safe_load`` only)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(f"not valid YAML: {getattr(err, 'problem', None) or err}", source=source,
                         line=mark.line + 1 if mark else None) from None
    lines = _key_lines(text)

    def located(err: InputError) -> InputError:
        line = None
        if err.field:   # the field, else its section
            line = lines.get(err.field) or lines.get(err.field.split(".")[0])
        return err.located(source=source, line=line)

    try:
        return HardwareConfig(**_build_kwargs(data), source=source)
    except InputError as err:
        raise located(err) from None


def _build_kwargs(data) -> dict:
    if not isinstance(data, dict):
        _fail("format", "the file must be a YAML mapping")
    if data.get("format") != FORMAT:
        _fail("format", f"must be {FORMAT!r}, got {data.get('format')!r}")
    if data.get("version") != FORMAT_VERSION:
        _fail("version", f"this snn-compile reads version {FORMAT_VERSION}, got {data.get('version')!r}")
    top = {f.name for f in fields(HardwareConfig)} - {"source"}
    _check_keys("", data, top | {"format", "version"}, required=top - {"float_bits"})
    kwargs = {key: data.get(key) for key in top}
    for key, cls in _SECTIONS.items():
        section = data[key]
        if section is None:
            continue
        if not isinstance(section, dict):
            _fail(key, "must be a mapping of fields")
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING}
        _check_keys(f"{key}.", section, names, required=required)
        kwargs[key] = cls(**section)
    return kwargs


def _check_keys(prefix: str, mapping: dict, allowed: set, required: set):
    for key in mapping:
        if key not in allowed:
            _fail(f"{prefix}{key}", f"unknown field (allowed: {', '.join(sorted(allowed))})")
    for key in sorted(required):
        if key not in mapping:
            _fail(f"{prefix}{key}", "is missing")
