"""The leading principal component by a sequence of QPs on the spiking network.

Shifted inverse iteration: each QP is min ½vᵀ(σI − C)v subject to v_kᵀv = 1
(σ: Gershgorin's bound on λ_max), its solution normalised is v_{k+1}. On the
wine data (13 standardised features) and on breast cancer (30), compared with
numpy's eigendecomposition. See snn_compile/apps/pca.py for the limits.

    python examples/pca/run.py [--out out/pca] [--fast] [--write-problem PATH]
"""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_wine  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import snn_compile as sc  # noqa: E402
from snn_compile.apps import example_command_line, gershgorin_shift, inverse_iteration_qp, leading_component  # noqa: E402

TOL = 1e-8


def covariance(loader):
    return np.cov(StandardScaler().fit_transform(loader().data), rowvar=False)


def representative():
    C = covariance(load_wine)
    start = np.ones(C.shape[0]) / np.sqrt(C.shape[0])
    return inverse_iteration_qp(C, start, gershgorin_shift(C))


def main():
    setup = example_command_line(__doc__, "pca", "wine only (CI)", representative,
                                 header="First QP of shifted inverse iteration for the leading principal component of\n"
                                        "the wine data (13 standardised features): min ½vᵀ(σI − C)v s.t. v₀ᵀv = 1,\n"
                                        "v₀ = 1/√13, σ = Gershgorin bound. Written by examples/pca/run.py.")
    if setup is None:
        return
    args, out = setup
    datasets = [("wine", load_wine)] + ([] if args.fast else [("breast_cancer", load_breast_cancer)])
    results = {}
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, loader in datasets:
        C = covariance(loader)
        eigenvalues, eigenvectors = np.linalg.eigh(C)
        top = eigenvectors[:, -1]
        component = leading_component(C, lambda qp: sc.solve(qp, tol=TOL), covariance=True, iterations=60)
        qps = np.arange(1, len(component.iterates) + 1)
        line, = left.semilogy(qps, [max(1.0 - abs(v @ top), 1e-17) for v in component.iterates], "o-", ms=3,
                              label=f"{name}: 1 − |cos∠(v, numpy's v₁)|")
        left.semilogy(qps, np.maximum(eigenvalues[-1] - np.array(component.history), 1e-17), "--",
                      color=line.get_color(), label=f"{name}: λ₁ − Rayleigh quotient")
        sign = np.sign(component.vector @ top)
        right.plot(top, "o", ms=6, mfc="none", label=f"{name}: numpy eigh")
        right.plot(sign * component.vector, "x", ms=5, label=f"{name}: network")
        results[name] = {"features": C.shape[0], "sigma": component.sigma,
                         "top_eigenvalues": eigenvalues[::-1][:3].tolist(),
                         "qps": len(component.network_steps), "network_steps": component.network_steps,
                         "one_minus_abs_cos": float(1.0 - abs(component.vector @ top)),
                         "eigenvalue_error": float(abs(component.eigenvalue - eigenvalues[-1]))}
    left.set_xlabel("QP (outer iteration)")
    left.set_title("convergence", fontsize=9)
    left.legend(fontsize=7)
    right.set_xlabel("feature")
    right.set_ylabel("loading")
    right.set_title("leading component", fontsize=9)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "leading_component.png", dpi=110)
    plt.close(fig)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
