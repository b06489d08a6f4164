"""Kernel ridge regression on the spiking network, against scikit-learn's KernelRidge.

1. A noisy sine (generated, 40 points), RBF kernel: the fitted curves.
2. The diabetes data (standardised, 300 patients in --fast: 150), RBF kernel:
   dual coefficients and predictions compared.

    python examples/kernel_ridge/run.py [--out out/kernel_ridge] [--fast] [--write-problem PATH]
"""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_diabetes  # noqa: E402
from sklearn.kernel_ridge import KernelRidge  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import snn_compile as sc  # noqa: E402
from snn_compile.apps import example_command_line, kernel_ridge  # noqa: E402

TOL = 1e-7
ALPHA, GAMMA = 0.1, 2.0


def noisy_sine(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-3, 3, n))
    return x[:, None], np.sin(x) + 0.2 * rng.standard_normal(n)


def representative():
    X, y = noisy_sine()
    return kernel_ridge(X, y, alpha=ALPHA, kernel="rbf", gamma=GAMMA)


def main():
    setup = example_command_line(__doc__, "kernel_ridge", "smaller diabetes subset (CI)", representative,
                                 header="Kernel ridge regression, RBF kernel (γ = 2, α = 0.1), on a noisy sine\n"
                                        "(40 seeded points): min ½aᵀ(K + αI)a − yᵀa. Written by examples/kernel_ridge/run.py.")
    if setup is None:
        return
    args, out = setup
    X, y = noisy_sine()
    qp, decode = representative()
    solution = sc.solve(qp, tol=TOL)
    model = decode(solution)
    ref = KernelRidge(alpha=ALPHA, kernel="rbf", gamma=GAMMA).fit(X, y)
    grid = np.linspace(-3.2, 3.2, 400)[:, None]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(X[:, 0], y, "k.", label="data")
    ax.plot(grid[:, 0], ref.predict(grid), color="orange", lw=4, alpha=0.6, label="scikit-learn KernelRidge")
    ax.plot(grid[:, 0], model.predict(grid), "b-", lw=1.2, label=f"network ({solution.steps} steps)")
    ax.set_title("kernel ridge on a noisy sine")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "sine_fit.png", dpi=110)
    plt.close(fig)
    results = {"sine": {"steps": solution.steps, "max_relative_prediction_difference": float(
        np.abs(model.predict(grid) - ref.predict(grid)).max() / np.abs(ref.predict(grid)).max())}}

    Xd, yd = load_diabetes(return_X_y=True)
    n = 150 if args.fast else 300
    Xd, yd = StandardScaler().fit_transform(Xd)[:n], (yd[:n] - yd.mean()) / yd.std()
    qp, decode = kernel_ridge(Xd, yd, alpha=1.0, kernel="rbf", gamma=0.1)
    solution = sc.solve(qp, tol=TOL)
    model = decode(solution)
    ref = KernelRidge(alpha=1.0, kernel="rbf", gamma=0.1).fit(Xd, yd)
    rel = np.abs(model.dual_coef - ref.dual_coef_).max() / np.abs(ref.dual_coef_).max()
    results["diabetes"] = {"samples": n, "steps": solution.steps, "max_relative_dual_coef_difference": float(rel)}
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(ref.dual_coef_, model.dual_coef, ".", ms=4)
    lim = np.abs(ref.dual_coef_).max() * 1.1
    ax.plot([-lim, lim], [-lim, lim], "k:", lw=0.8)
    ax.set_xlabel("scikit-learn dual coefficient")
    ax.set_ylabel("network dual coefficient")
    ax.set_title(f"diabetes, {n} samples (max rel. diff {rel:.1e})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "diabetes_dual_coef.png", dpi=110)
    plt.close(fig)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
