"""LASSO on the spiking network, against scikit-learn's Lasso.

The diabetes data (standardised features); the LASSO path over α, each point
one network solve of the (u, v) ≥ 0 split QP, with scikit-learn's coefficients
on top. Coefficients that the ℓ₁ penalty sets to zero are held at exactly zero
by the neurons' clamp.

    python examples/lasso/run.py [--out out/lasso] [--fast] [--write-problem PATH]
"""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_diabetes  # noqa: E402
from sklearn.linear_model import Lasso  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import snn_compile as sc  # noqa: E402
from snn_compile.apps import example_command_line, lasso  # noqa: E402

TOL = 1e-7


def data():
    X, y = load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def representative():
    X, y = data()
    return lasso(X, y, alpha=1.0)


def main():
    setup = example_command_line(__doc__, "lasso", "fewer α values (CI)", representative,
                                 header="LASSO (α = 1) on scikit-learn's diabetes data, standardised and centred,\n"
                                        "as a QP in w = u − v, u, v ≥ 0 (variables u[0..9], v[0..9]).\n"
                                        "Written by examples/lasso/run.py --write-problem.")
    if setup is None:
        return
    args, out = setup
    X, y = data()
    alphas = np.logspace(-1, 1.5, 5 if args.fast else 12)
    network, library, steps = [], [], []
    for alpha in alphas:
        qp, decode = lasso(X, y, alpha=alpha)
        solution = sc.solve(qp, tol=TOL)
        network.append(decode(solution).coef)
        library.append(Lasso(alpha=alpha, tol=1e-12, max_iter=100_000).fit(X, y).coef_)
        steps.append(solution.steps)
    network, library = np.array(network), np.array(library)
    diff = np.abs(network - library).max(axis=1)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for j in range(X.shape[1]):
        line, = ax.semilogx(alphas, library[:, j], lw=1)
        ax.semilogx(alphas, network[:, j], "o", ms=4, color=line.get_color())
    ax.plot([], [], "k-", label="scikit-learn Lasso")
    ax.plot([], [], "ko", ms=4, label="network")
    ax.set_xlabel("α")
    ax.set_ylabel("coefficient")
    ax.set_title(f"diabetes LASSO path (largest coefficient difference {diff.max():.1e})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "lasso_path.png", dpi=110)
    plt.close(fig)
    results = {"alphas": alphas.tolist(), "network_steps": steps,
               "max_coefficient_difference": float(diff.max()),
               "nonzeros": [int(np.sum(np.abs(w) > 1e-6)) for w in network]}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
