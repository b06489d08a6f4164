"""Target discovery through the ``snn_compile.backends`` entry-point group.

A third-party package adds a target with one line in its own pyproject.toml:

    [project.entry-points."snn_compile.backends"]
    mychip = "mychip_snn.backend:MyChipBackend"

Built-in targets are also listed in ``BUILTIN``, so they work even when the
installed package metadata is stale (e.g. an editable install made before a
target was added).
"""
from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points

from snn_compile.errors import BackendUnavailable, InputError

from .base import Backend

GROUP = "snn_compile.backends"

#: name -> "module:Class" of the targets that ship with snn-compile.
BUILTIN = {
    "reference": "snn_compile.backends.reference:ReferenceBackend",
    "nir": "snn_compile.backends.nir_export:NIRBackend",
    "loihi": "snn_compile.backends.loihi:LoihiBackend",
    "lava": "snn_compile.backends.loihi:LavaBackend",
    "brian2": "snn_compile.backends.brian:Brian2Backend",
    "spinnaker": "snn_compile.backends.spinnaker:SpiNNakerBackend",
    "nengo": "snn_compile.backends.nengo_sim:NengoBackend",
    "nengo-loihi": "snn_compile.backends.nengo_sim:NengoLoihiBackend",
}


def _targets() -> dict[str, str]:
    """name -> "module:Class"; installed entry points win over the built-in table."""
    found = dict(BUILTIN)
    found.update({ep.name: ep.value for ep in entry_points(group=GROUP)})
    return found


def _load_class(spec: str) -> type[Backend]:
    module_name, _, attr = spec.partition(":")
    cls = getattr(import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"{spec} is not a Backend subclass")
    return cls


def target_names() -> list[str]:
    return sorted(_targets())


def available_targets() -> dict[str, tuple[bool, str]]:
    """Every registered target -> (usable?, reason when not). Never raises."""
    status = {}
    for name, spec in sorted(_targets().items()):
        try:
            status[name] = _load_class(spec).available()
        except Exception as exc:  # a broken plug-in must not break listing the others
            status[name] = (False, f"cannot load {spec}: {type(exc).__name__}: {exc}")
    return status


def get_backend(name: str) -> Backend:
    """An instance of the named target.

    Raises ``InputError`` for an unknown name (listing the registered ones) and
    ``BackendUnavailable`` when the target's packages are missing.
    """
    targets = _targets()
    if name not in targets:
        raise InputError(f"unknown target {name!r}; registered targets: {', '.join(sorted(targets))}",
                         field="target")
    try:
        cls = _load_class(targets[name])
    except Exception as exc:
        raise BackendUnavailable(f"target '{name}' cannot be loaded ({targets[name]}): "
                                 f"{type(exc).__name__}: {exc}") from exc
    ok, reason = cls.available()
    if not ok:
        raise BackendUnavailable(f"target '{name}' is not available: {reason}")
    return cls()
