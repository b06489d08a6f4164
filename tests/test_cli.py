"""The snn-compile command: main form, inspect, exit codes, one-line errors, atomic output."""
import json
import subprocess
import sys

import pytest

from snn_compile.cli import main


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "snn_compile", *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_main_form_writes_the_output_folder(repo_root, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(repo_root / "examples/hand2/problem.yaml", "--target", "reference",
                                   "-o", out)
    assert code == 0, stderr
    assert {p.name for p in out.iterdir()} == {"ir", "solution.json", "raster.png", "convergence.png"}
    data = json.loads((out / "solution.json").read_text())
    assert data["status"] == "optimal"
    assert data["x"] == pytest.approx([0.5, 0.5], abs=1e-3)
    for key in ("y", "z", "z_box", "obj", "steps", "spikes", "primal_residual", "dual_residual",
                "duality_gap"):
        assert key in data
    assert (out / "ir" / "manifest.json").is_file()
    assert "status optimal" in stdout


def test_bad_input_is_one_line_exit_2_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: snn-compile/qp\nversion: 1\nP: [[1, 2], [0, 1]]\nq: [0, 0]\n")
    code, stdout, stderr = run_cli(bad)
    assert code == 2
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.yaml" in lines[0] and "'P'" in lines[0] and "symmetric" in lines[0]


@pytest.mark.parametrize("content, words", [
    ("format: snn-compile/qp\nversion: 1\nq: [0, 0\n", ["line"]),                        # malformed YAML
    ("format: snn-compile/qp\nversion: 1\nP: [[1, 0], [0, 1]]\nq: [.nan, 0]\n", ["'q'"]),
    ("format: snn-compile/qp\nversion: 1\nP: [[1, 0], [0, -1]]\nq: [0, 0]\n", ["'P'", "semidefinite"]),
    ("format: snn-compile/qp\nversion: 1\nP: [[1, 0], [0, 1]]\nq: [0, 0]\nlb: [1, 1]\nub: [0, 0]\n", ["lb"]),
    ("format: snn-compile/qp\nversion: 1\nP: {file: missing.npz, key: P}\nq: [0, 0]\n", ["missing.npz"]),
])
def test_bad_inputs_exit_2(tmp_path, capsys, content, words):
    path = tmp_path / "p.yaml"
    path.write_text(content)
    assert main([str(path), "--no-plots"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "p.yaml" in err
    for word in words:
        assert word in err


def test_failed_run_leaves_existing_output_untouched(repo_root, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier result")
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: snn-compile/qp\nversion: 1\nq: [0, 0\n")
    assert main([str(bad), "-o", str(out)]) == 2
    assert (out / "keep.txt").read_text() == "earlier result"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_unknown_target_and_family_exit_2(repo_root, capsys):
    problem = str(repo_root / "examples/hand2/problem.yaml")
    assert main([problem, "--target", "nope"]) == 2
    assert "registered targets" in capsys.readouterr().err
    assert main([problem, "--family", "nope"]) == 2


def test_inspect_reports_the_classical_optimum(maros_meszaros, capsys):
    assert main(["inspect", str(maros_meszaros / "mat" / "HS21.mat"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["variables"] == 2 and report["PSD"].startswith("yes")
    assert report["optimal objective"] == pytest.approx(-99.96, rel=1e-6)


def test_help_lists_targets(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Installed targets:" in out and "reference" in out
    assert main(["targets"]) == 0
    assert "reference" in capsys.readouterr().out
