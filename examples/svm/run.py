"""SVM dual on the spiking network, against scikit-learn's SVC.

1. A picture: versicolor vs virginica on two iris features (50 flowers), RBF
   kernel; the network's decision boundary drawn over scikit-learn's.
2. A benchmark: breast cancer (30 features), linear and RBF kernels, trained
   on a split and scored on held-out data.

    python examples/svm/run.py [--out out/svm] [--fast] [--write-problem PATH]
"""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_iris  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

import snn_compile as sc  # noqa: E402
from snn_compile.apps import example_command_line, svm_dual  # noqa: E402
from snn_compile.diagnostics import plot_convergence  # noqa: E402
from snn_compile.passes.precondition import Scaling  # noqa: E402

C, GAMMA = 1.0, 0.5


def iris_2d():
    """Versicolor (−1) vs virginica (+1) on standardised petal length and width, every other flower."""
    X, y = load_iris(return_X_y=True)
    keep = (y > 0) & (np.arange(y.size) % 2 == 0)
    return StandardScaler().fit_transform(X[keep][:, 2:4]), np.where(y[keep] == 2, 1, -1)


def representative():
    X, y = iris_2d()
    return svm_dual(X, y, C=C, kernel="rbf", gamma=GAMMA)


def plot_dynamics(compiled, path: Path):
    """The α neurons (clamped to [0, C]) and the bias neuron over the run, in the user's units."""
    scaling = Scaling.from_dict(compiled.net.provenance["scaling"])
    steps, x_states = compiled.last_trace.samples["x"]
    _, v_states = compiled.last_trace.samples["v"]
    alpha = x_states * scaling.d
    bias = v_states[:, 0] * scaling.e_eq[0] / scaling.cost
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    top.plot(steps, alpha, lw=0.8)
    top.set_ylabel("αᵢ (clamped to [0, C])")
    bottom.plot(steps, bias, color="k")
    bottom.set_ylabel("bias neuron = b")
    bottom.set_xlabel("network step")
    top.set_title("SVM dual: the network's state (restarts show as jumps)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def picture(out: Path, tol: float) -> dict:
    X, y = iris_2d()
    qp, decode = representative()
    compiled = sc.compile(qp)
    solution = compiled.solve(5_000, tol=tol, record_every=2)   # sample the state for the plot
    clf = decode(solution)
    ref = SVC(C=C, kernel="rbf", gamma=GAMMA).fit(X, y)
    xx, yy = np.meshgrid(np.linspace(X[:, 0].min() - 0.5, X[:, 0].max() + 0.5, 200),
                         np.linspace(X[:, 1].min() - 0.5, X[:, 1].max() + 0.5, 200))
    grid = np.c_[xx.ravel(), yy.ravel()]
    fig, ax = plt.subplots(figsize=(6.5, 5))
    ax.contourf(xx, yy, clf.decision_function(grid).reshape(xx.shape), levels=20, cmap="RdBu", alpha=0.35)
    ax.contour(xx, yy, clf.decision_function(grid).reshape(xx.shape), levels=[-1, 0, 1],
               colors="k", linestyles=["--", "-", "--"], linewidths=1.2)
    ax.contour(xx, yy, ref.decision_function(grid).reshape(xx.shape), levels=[0], colors="orange",
               linestyles=":", linewidths=2.5)
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap="RdBu", edgecolors="k", s=30)
    ax.scatter(*X[clf.support].T, s=120, facecolors="none", edgecolors="green", linewidths=1.2,
               label=f"support vectors ({clf.support.size})")
    ax.plot([], [], "k-", label="network boundary (margins dashed)")
    ax.plot([], [], ":", color="orange", lw=2.5, label="scikit-learn SVC boundary")
    ax.set_xlabel("petal length (standardised)")
    ax.set_ylabel("petal width (standardised)")
    ax.set_title(f"iris versicolor vs virginica, RBF SVM ({solution.steps} network steps)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "decision_boundary.png", dpi=110)
    plt.close(fig)
    plot_convergence(compiled.last_history.rows, out / "convergence.png", tol=tol,
                     title="SVM dual: residuals of the network iterate")
    plot_dynamics(compiled, out / "dynamics.png")
    return {"steps": solution.steps, "status": solution.status.value, "intercept": clf.intercept,
            "sklearn_intercept": float(ref.intercept_[0]),
            "max_decision_difference": float(np.abs(clf.decision_function(X) - ref.decision_function(X)).max())}


def benchmark(out: Path, tol: float, fast: bool) -> dict:
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    if fast:
        X_train, y_train = X_train[:150], y_train[:150]
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    rows = {}
    for kernel in ("linear", "rbf"):
        qp, decode = svm_dual(X_train, y_train, C=C, kernel=kernel)
        solution = sc.solve(qp, tol=tol)
        clf = decode(solution)
        ref = SVC(C=C, kernel=kernel).fit(X_train, y_train)
        rows[kernel] = {"steps": solution.steps, "status": solution.status.value,
                        "network_test_accuracy": clf.score(X_test, y_test),
                        "sklearn_test_accuracy": float(ref.score(X_test, y_test)),
                        "disagreements_on_test": int(np.sum(clf.predict(X_test) != ref.predict(X_test))),
                        "support_vectors": [int(clf.support.size), int(ref.support_.size)]}
    fig, ax = plt.subplots(figsize=(6, 3.5))
    kernels = list(rows)
    pos = np.arange(len(kernels))
    ax.bar(pos - 0.2, [rows[k]["network_test_accuracy"] for k in kernels], 0.4, label="network")
    ax.bar(pos + 0.2, [rows[k]["sklearn_test_accuracy"] for k in kernels], 0.4, label="scikit-learn SVC")
    ax.set_xticks(pos, kernels)
    ax.set_ylim(0.8, 1.0)
    ax.set_ylabel("held-out accuracy")
    ax.set_title(f"breast cancer, {len(y_train)} training samples")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "breast_cancer_accuracy.png", dpi=110)
    plt.close(fig)
    return rows


def main():
    setup = example_command_line(__doc__, "svm", "smaller problems (CI)", representative,
                                 header="SVM dual, RBF kernel (γ = 0.5, C = 1): iris versicolor (−1) vs virginica (+1)\n"
                                        "on standardised petal length/width, every other flower (50 points).\n"
                                        "Written by examples/svm/run.py --write-problem.")
    if setup is None:
        return
    args, out = setup
    tol = 1e-4
    results = {"iris_2d": picture(out, tol), "breast_cancer": benchmark(out, tol, args.fast)}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
