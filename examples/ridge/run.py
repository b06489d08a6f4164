"""Ridge regression on the spiking network, against scikit-learn's Ridge.

The diabetes data (442 patients, 10 features); the regularisation path over α,
each point one network solve, with scikit-learn's coefficients on top.

    python examples/ridge/run.py [--out out/ridge] [--fast] [--write-problem PATH]
"""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_diabetes  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402

import snn_compile as sc  # noqa: E402
from snn_compile.apps import example_command_line, ridge  # noqa: E402

TOL = 1e-7


def representative():
    X, y = load_diabetes(return_X_y=True)
    return ridge(X, y, alpha=1.0)


def main():
    setup = example_command_line(__doc__, "ridge", "fewer α values (CI)", representative,
                                 header="Ridge regression (α = 1) on scikit-learn's diabetes data, centred:\n"
                                        "min ½wᵀ(XᵀX + αI)w − (Xᵀy)ᵀw + ½‖y‖². Written by examples/ridge/run.py.")
    if setup is None:
        return
    args, out = setup
    X, y = load_diabetes(return_X_y=True)
    alphas = np.logspace(-3, 1, 5 if args.fast else 13)
    network, library, steps = [], [], []
    for alpha in alphas:
        qp, decode = ridge(X, y, alpha=alpha)
        solution = sc.solve(qp, tol=TOL)
        network.append(decode(solution).coef)
        library.append(Ridge(alpha=alpha).fit(X, y).coef_)
        steps.append(solution.steps)
    network, library = np.array(network), np.array(library)
    rel = np.abs(network - library).max(axis=1) / np.abs(library).max(axis=1)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for j in range(X.shape[1]):
        line, = ax.semilogx(alphas, library[:, j], lw=1)
        ax.semilogx(alphas, network[:, j], "o", ms=4, color=line.get_color())
    ax.plot([], [], "k-", label="scikit-learn Ridge")
    ax.plot([], [], "ko", ms=4, label="network")
    ax.set_xlabel("α")
    ax.set_ylabel("coefficient")
    ax.set_title(f"diabetes ridge path (largest relative difference {rel.max():.1e})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "ridge_path.png", dpi=110)
    plt.close(fig)
    results = {"alphas": alphas.tolist(), "network_steps": steps,
               "max_relative_coefficient_difference": float(rel.max())}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
