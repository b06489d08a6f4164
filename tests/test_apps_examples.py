"""The application examples: every script runs with --fast and writes its figures, and every
problem.yaml is the QP its script builds."""
import importlib.util
import json
import subprocess
import sys

import pytest

import snn_compile as sc

pytest.importorskip("sklearn")

#: app folder -> figures its run.py must write
FIGURES = {
    "svm": ["decision_boundary.png", "convergence.png", "dynamics.png", "breast_cancer_accuracy.png"],
    "ridge": ["ridge_path.png"],
    "kernel_ridge": ["sine_fit.png", "diabetes_dual_coef.png"],
    "lasso": ["lasso_path.png"],
    "portfolio": ["weights.png", "frontier.png"],
    "mpc": ["double_integrator_closed_loop.png", "quadrotor_closed_loop.png", "warm_start_steps.png"],
    "nmf": ["digit_parts.png", "errors.png"],
    "pca": ["leading_component.png"],
}
#: apps whose problem.yaml their run.py writes (portfolio's is hand-written)
GENERATED = ["svm", "ridge", "kernel_ridge", "lasso", "mpc", "nmf", "pca"]


def load_example(repo_root, app):
    spec = importlib.util.spec_from_file_location(f"example_{app}", repo_root / "examples" / app / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("app", sorted(FIGURES))
def test_example_runs_fast_and_writes_its_figures(repo_root, tmp_path, app):
    out = tmp_path / app
    result = subprocess.run([sys.executable, str(repo_root / "examples" / app / "run.py"), "--fast",
                             "--out", str(out)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in FIGURES[app]:
        figure = out / name
        assert figure.is_file() and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    results = json.loads((out / "results.json").read_text())
    assert results and json.loads(result.stdout)


@pytest.mark.parametrize("app", GENERATED)
def test_problem_yaml_is_the_examples_representative_qp(repo_root, app):
    shipped = sc.read_problem(repo_root / "examples" / app / "problem.yaml")
    built = load_example(repo_root, app).representative().qp
    assert shipped.content_hash() == built.content_hash()
    assert shipped.var_names == built.var_names


def test_write_problem_flag_writes_a_readable_file(repo_root, tmp_path):
    target = tmp_path / "pca.yaml"
    subprocess.run([sys.executable, str(repo_root / "examples" / "pca" / "run.py"), "--write-problem",
                    str(target)], check=True, timeout=60)
    assert sc.read_problem(target).content_hash() == \
        sc.read_problem(repo_root / "examples" / "pca" / "problem.yaml").content_hash()


def test_shipped_problems_solve_on_the_network(repo_root):
    for app in GENERATED + ["portfolio"]:
        qp = sc.read_problem(repo_root / "examples" / app / "problem.yaml")
        solution = sc.solve(qp, tol=1e-4, steps=50_000)
        assert solution.status is sc.Status.OPTIMAL, app
