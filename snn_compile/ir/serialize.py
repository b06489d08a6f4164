"""Save/load a Network as a directory: ``manifest.json`` + ``arrays.npz``.

The manifest is human-readable JSON; every array (per-neuron parameters,
weights, provenance vectors) goes to the npz by key, so the round trip is exact
(bit-identical float64). Writing is atomic: a temporary directory is renamed
into place, so a crash never leaves a half-written IR.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..staging import staged_folder
from . import controls, fixed_point, nodes
from .network import IR_VERSION, Network

FORMAT = "snn-compile/ir"
_NODE_TYPES = {cls.__name__: cls for cls in (
    nodes.Population, nodes.Projection, nodes.Gain, nodes.ReadoutTerm, nodes.Readout,
    controls.RunningAverage, controls.AdaptiveRestart, controls.ScaledProblem,
    *fixed_point.FIXED_POINT_TYPES)}


class _Encoder:
    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def _key(self, hint: str) -> str:
        return f"{len(self.arrays):04d}_{hint}"

    def encode(self, value, hint: str = "v"):
        if dataclasses.is_dataclass(value):
            return {"$node": type(value).__name__,
                    **{f.name: self.encode(getattr(value, f.name), f.name)
                       for f in dataclasses.fields(value)}}
        if sp.issparse(value):
            csr = sp.csr_matrix(value)
            key = self._key(hint)
            for part in ("data", "indices", "indptr"):
                self.arrays[f"{key}.{part}"] = getattr(csr, part)
            return {"$sparse": key, "shape": list(csr.shape)}
        if isinstance(value, np.ndarray):
            key = self._key(hint)
            self.arrays[key] = value
            return {"$array": key}
        if isinstance(value, dict):
            return {"$dict": {str(k): self.encode(v, str(k)) for k, v in value.items()}}
        if isinstance(value, (list, tuple)):
            return [self.encode(v, hint) for v in value]
        if isinstance(value, (np.floating, np.integer, np.bool_)):
            return value.item()
        if isinstance(value, float) and not np.isfinite(value):
            return {"$float": repr(value)}
        return value


def _decode(value, arrays):
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if "$array" in value:
        return arrays[value["$array"]]
    if "$sparse" in value:
        key = value["$sparse"]
        return sp.csr_matrix((arrays[f"{key}.data"], arrays[f"{key}.indices"], arrays[f"{key}.indptr"]),
                             shape=tuple(value["shape"]))
    if "$float" in value:
        return float(value["$float"])
    if "$dict" in value:
        return {k: _decode(v, arrays) for k, v in value["$dict"].items()}
    if "$node" in value:
        cls = _NODE_TYPES.get(value["$node"])
        if cls is None:
            raise InputError(f"unknown node type {value['$node']!r}", field="manifest")
        fields = {k: _decode(v, arrays) for k, v in value.items() if k != "$node"}
        return cls(**fields)
    return {k: _decode(v, arrays) for k, v in value.items()}


def save_network(net: Network, directory) -> Path:
    """Write ``net`` to ``directory`` (created or replaced atomically)."""
    directory = Path(directory)
    enc = _Encoder()
    body = {f.name: enc.encode(getattr(net, f.name), f.name) for f in dataclasses.fields(net)}
    manifest = {"format": FORMAT, "version": IR_VERSION, "summary": net.summary(), "network": body}
    with staged_folder(directory) as staging:
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, allow_nan=False))
        np.savez(staging / "arrays.npz", **enc.arrays)
    return directory


def load_network(directory) -> Network:
    directory = Path(directory)
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        raise InputError("not an IR directory (no manifest.json)", source=str(directory))
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON ({exc.msg})", source=str(manifest_path), line=exc.lineno) from None
    if manifest.get("format") != FORMAT:
        raise InputError(f"not an snn-compile IR (format {manifest.get('format')!r})",
                         source=str(manifest_path), field="format")
    if manifest.get("version") != IR_VERSION:
        raise InputError(f"IR version {manifest.get('version')} is not supported (this is {IR_VERSION})",
                         source=str(manifest_path), field="version")
    with np.load(directory / "arrays.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    try:
        body = {k: _decode(v, arrays) for k, v in manifest["network"].items()}
        return Network(**body)
    except InputError as err:
        raise err.located(source=str(manifest_path)) from None
    except (KeyError, TypeError) as exc:
        raise InputError(f"malformed manifest ({exc})", source=str(manifest_path)) from None
