"""Markowitz portfolios on the spiking network, against the classical solver.

1. The 8-asset problem in this folder (problem.yaml, risk matrix in risk.mtx):
   budget, a growth-sector cap, long-only and a 25 % cap per asset.
2. A seeded 30-asset factor-model market (20 in --fast): the efficient
   frontier, one network solve per risk aversion, against Clarabel.

    python examples/portfolio/run.py [--out out/portfolio] [--fast]
"""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import snn_compile as sc  # noqa: E402
from snn_compile.apps import example_command_line, efficient_frontier, synthetic_market  # noqa: E402
from snn_compile.classical import reference_solution  # noqa: E402

TOL = 1e-6
HERE = Path(__file__).resolve().parent


def main():
    args, out = example_command_line(__doc__, "portfolio", "smaller market, fewer frontier points (CI)")

    qp = sc.read_problem(HERE / "problem.yaml")
    solution, reference = sc.solve(qp, tol=TOL), reference_solution(qp)
    names = list(qp.var_names)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    pos = np.arange(qp.n)
    ax.bar(pos - 0.2, solution.x, 0.4, label=f"network ({solution.steps} steps)")
    ax.bar(pos + 0.2, reference.x, 0.4, label="Clarabel")
    ax.axhline(0.25, color="grey", ls=":", lw=0.8)
    ax.set_xticks(pos, names, rotation=30, fontsize=8)
    ax.set_ylabel("weight")
    ax.set_title("8-asset portfolio (problem.yaml)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "weights.png", dpi=110)
    plt.close(fig)
    results = {"problem_yaml": {"steps": solution.steps, "status": solution.status.value,
                                "max_weight_difference": float(np.abs(solution.x - reference.x).max()),
                                "objective": solution.obj, "classical_objective": reference.obj}}

    n_assets = 20 if args.fast else 30
    _, mu, sigma = synthetic_market(n_assets, 500, seed=1)
    mu, sigma = 252 * mu, 252 * sigma          # daily to yearly
    gammas = np.logspace(-1, 3.5, 5 if args.fast else 14)
    options = dict(cap=0.2, groups={"first_third": (range(n_assets // 3), 0.3)})
    steps = []

    def network(qp):
        solution = sc.solve(qp, tol=TOL)
        steps.append(solution.steps)
        return solution

    frontier = efficient_frontier(mu, sigma, gammas, network, **options)
    classical = efficient_frontier(mu, sigma, gammas, reference_solution, **options)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot([p.volatility for p in classical], [p.expected_return for p in classical], "-", color="orange",
            lw=4, alpha=0.6, label="Clarabel")
    ax.plot([p.volatility for p in frontier], [p.expected_return for p in frontier], "bo-", ms=4, lw=1,
            label="network")
    ax.plot(np.sqrt(np.diag(sigma)), mu, "k.", ms=4, label="single assets")
    ax.set_xlabel("volatility (yearly)")
    ax.set_ylabel("expected return (yearly)")
    ax.set_title(f"efficient frontier, {n_assets} assets, cap 20 %, sector cap 30 %", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "frontier.png", dpi=110)
    plt.close(fig)
    results["frontier"] = {
        "assets": n_assets, "risk_aversions": gammas.tolist(), "network_steps": steps,
        "max_weight_difference": float(max(np.abs(a.weights - b.weights).max()
                                           for a, b in zip(frontier, classical)))}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
