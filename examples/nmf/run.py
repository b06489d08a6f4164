"""Non-negative matrix factorisation and collaborative filtering on the spiking network.

1. NMF of handwritten digits (scikit-learn's 8×8 digits, 200 images; 100 in
   --fast), rank 8, by alternating non-negative least squares: every half-step
   one QP on the network. Compared with the same ANLS using the classical
   solver and with scikit-learn's NMF.
2. Collaborative filtering: a seeded low-rank "ratings" matrix with half of
   the entries observed; the masked ANLS fills in the rest.

    python examples/nmf/run.py [--out out/nmf] [--fast] [--write-problem PATH]
"""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.decomposition import NMF  # noqa: E402

import snn_compile as sc  # noqa: E402
from snn_compile.apps import example_command_line, anls, low_rank_ratings, nndsvd_init, nnls_qp  # noqa: E402
from snn_compile.classical import reference_solution  # noqa: E402

TOL = 1e-6
RANK = 8


def digits(n):
    return load_digits().data[:n] / 16.0


def representative():
    X = digits(20)
    W, _ = nndsvd_init(X, 4)
    return nnls_qp(W, X)


def network(qp):
    return sc.solve(qp, tol=TOL)


def main():
    setup = example_command_line(__doc__, "nmf", "fewer images and iterations (CI)", representative,
                                 header="One ANLS half-step of NMF: min_{H≥0} ½‖X − WH‖² for the first 20 digits\n"
                                        "(8×8, scaled to [0, 1]) with W the rank-4 NNDSVD start; H's columns stacked,\n"
                                        "so P is block diagonal. Written by examples/nmf/run.py --write-problem.")
    if setup is None:
        return
    args, out = setup
    n_images, iterations = (100, 8) if args.fast else (200, 25)
    X = digits(n_images)
    net = anls(X, RANK, network, iterations=iterations)
    classical = anls(X, RANK, reference_solution, iterations=iterations)
    sk = NMF(RANK, init="nndsvd", solver="cd", tol=1e-10, max_iter=5000)
    W_sk = sk.fit_transform(X)
    sk_error = float(np.linalg.norm(X - W_sk @ sk.components_) / np.linalg.norm(X))

    fig, axes = plt.subplots(2, RANK, figsize=(1.3 * RANK, 3))
    for k in range(RANK):
        axes[0, k].imshow(net.H[k].reshape(8, 8), cmap="gray_r")
        axes[1, k].imshow(sk.components_[k].reshape(8, 8), cmap="gray_r")
        axes[0, k].axis("off")
        axes[1, k].axis("off")
    axes[0, 0].set_title("network ANLS parts", fontsize=8, loc="left")
    axes[1, 0].set_title("scikit-learn NMF parts", fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(out / "digit_parts.png", dpi=110)
    plt.close(fig)

    ratings, observed = low_rank_ratings(seed=0)
    cf = anls(ratings, 3, network, mask=observed, iterations=10 if args.fast else 30, ridge=1e-3)
    cf_classical = anls(ratings, 3, reference_solution, mask=observed, iterations=10 if args.fast else 30,
                        ridge=1e-3)
    held_out = ~observed
    rmse = float(np.sqrt(np.mean((cf.reconstruct() - ratings)[held_out] ** 2)))
    baseline = float(np.sqrt(np.mean((ratings[observed].mean() - ratings)[held_out] ** 2)))

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(np.arange(1, iterations + 1), net.errors, "bo-", ms=3, label="network ANLS")
    left.plot(np.arange(1, iterations + 1), classical.errors, "--", color="orange", lw=2, label="Clarabel ANLS")
    left.axhline(sk_error, color="grey", ls=":", label="scikit-learn NMF (converged)")
    left.set_xlabel("ANLS iteration")
    left.set_ylabel("‖X − WH‖ / ‖X‖")
    left.set_title(f"digits, {n_images} images, rank {RANK}", fontsize=9)
    left.legend(fontsize=7)
    right.plot(ratings[held_out], cf.reconstruct()[held_out], ".", ms=3)
    lim = [0, ratings.max() * 1.05]
    right.plot(lim, lim, "k:", lw=0.8)
    right.set_xlabel("true rating (held out)")
    right.set_ylabel("predicted")
    right.set_title(f"collaborative filtering: held-out RMSE {rmse:.3f} (mean baseline {baseline:.2f})",
                    fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "errors.png", dpi=110)
    plt.close(fig)
    results = {
        "digits": {"images": n_images, "rank": RANK, "iterations": iterations,
                   "network_relative_error": net.errors[-1], "classical_anls_relative_error": classical.errors[-1],
                   "sklearn_relative_error": sk_error,
                   "max_reconstruction_difference_network_vs_classical_anls": float(
                       np.abs(net.reconstruct() - classical.reconstruct()).max()),
                   "network_steps_per_iteration": net.network_steps},
        "collaborative_filtering": {"held_out_rmse": rmse, "mean_baseline_rmse": baseline,
                                    "max_difference_vs_classical_anls": float(
                                        np.abs(cf.reconstruct() - cf_classical.reconstruct()).max())}}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
