"""Output folders that appear whole or not at all."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_folder(target):
    """Yields an empty sibling folder of ``target`` to write into. On normal exit it
    takes ``target``'s place by renames (an existing ``target`` is moved aside first and
    deleted after); on an exception it is deleted and ``target`` stays as it was, so a
    failed run never leaves a half-written or missing folder behind."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        if target.exists():
            backup = target.with_name(f".{target.name}.previous")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(target, backup)
            try:
                os.replace(staging, target)
            except BaseException:
                os.replace(backup, target)
                raise
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
