"""Every python and bash code block in docs/*.md runs (in order, per file, from the repo root).

Blocks in other languages (text, yaml, toml) are not programs: yaml examples
are loaded by the front-end tests, text blocks are synopses.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.M | re.S)


def code_blocks(path: Path):
    return [(lang, body) for lang, body in FENCE.findall(path.read_text()) if lang in ("python", "bash")]


DOC_FILES = sorted(p for p in DOCS.glob("*.md") if code_blocks(p))


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: p.name)
def test_code_blocks_run(doc, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    namespace = {"__name__": f"docs_{doc.stem}"}
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for index, (lang, body) in enumerate(code_blocks(doc)):
        where = f"{doc.name} block {index + 1} ({lang})"
        if lang == "python":
            exec(compile(body, where, "exec"), namespace)  # noqa: S102 - the docs are ours
        else:
            proc = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=repo_root, env=env,
                                  capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, f"{where} failed:\n{proc.stdout}\n{proc.stderr}"
