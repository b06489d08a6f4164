"""Reference mathematics of the primal–dual (family B) network: restarted accelerated PDHG.

Pure numpy / scipy.sparse, no network objects: this is the specification the
primal–dual lowering and every backend must reproduce step for step. It solves

    minimise ½xᵀPx + qᵀx   s.t.  Gx ≤ h,  Ax = b,  lb ≤ x ≤ ub

Stages
------
1. Host preconditioning (``precondition``): drop G rows with h ≥ 1e19 (their dual
   is 0), K = [G; A], c = [h; b]; 10 Ruiz passes (∞-norms) on the KKT matrix
   [P Kᵀ; K 0], then one Pock–Chambolle pass (α = 1, 1-norms), then a cost scale
   c_s = 1/max(mean_j ‖P̂_:j‖∞, ‖Dq‖∞) clipped to [1e-6, 1e6]. Scaled problem:
   P̃ = c_s DPD, q̃ = c_s Dq, K̃ = EKD, c̃ = Ec, box [lb/D, ub/D].
   Unscaling: x = Dx̃, (z; y) = E ṽ / c_s, z_box = z̃_box / (c_s D).
2. Norms by power iteration: L = ‖P̃‖₂, k = ‖K̃‖₂.
3. Network iteration (t = 1, 2, … counted from the last restart; s = 0.95):
       b_t   = 2/(t+1)
       τ_t   = 1 / (b_t L/s + ω k/√s),    σ = √s ω / k
       x_md  = (1−b_t) x_ag + b_t x
       x⁺    = Π_[l,u](x − τ_t (P̃ x_md + q̃ + K̃ᵀ v))
       v⁺    = v + σ (K̃ (2x⁺ − x) − c̃);   v⁺_G ← max(v⁺_G, 0)
       x_ag  ← (1−b_t) x_ag + b_t x⁺,     v_ag ← (1−b_t) v_ag + b_t v⁺
4. Control rule, every ``check`` (64) iterations:
   KKT(x, v) = √(‖r_p‖² + ‖r_d‖² + gap²) on the scaled problem (r_d with the
   reduced-cost box multiplier, see ``_kkt``). Candidate = the one of (x, v),
   (x_ag, v_ag) with the smaller KKT. Restart when KKT_c ≤ 0.2·KKT_r, or
   (KKT_c ≤ 0.8·KKT_r and KKT_c > KKT at the previous check), or t ≥ 0.36·(total
   iterations). A restart sets x, x_ag ← x_c; v, v_ag ← v_c; t ← 1, and updates
   the primal weight: Δx = ‖x_c − x_r‖, Δv = ‖v_c − v_r‖ (r = last restart
   point); if Δx > 1e-10: ρ = Δv/Δx if Δv > 1e-10 else ω/10;
   ω ← exp(½ log ρ + ½ log ω).  ω₀ = ‖q̃‖/‖c̃‖ (1 if either is ~0).
5. Readout: z̃_box = (u − Π_[l,u](u))/τ with u = x − τ(P̃x + q̃ + K̃ᵀv), τ = τ_t
   (the clamp excess of one plain x-step from the read state); then unscale.
   Termination is tested on the ORIGINAL problem's qpbenchmark residuals of the
   current and of the averaged iterate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

S_STEP = 0.95
BETA_SUFFICIENT, BETA_NECESSARY, BETA_ARTIFICIAL = 0.2, 0.8, 0.36
PW_SMOOTHING = 0.5
INF_ROW = 1e19


@dataclass
class Scaled:
    P: sp.csr_matrix
    q: np.ndarray
    K: sp.csr_matrix
    KT: sp.csr_matrix
    c: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    mG: int
    D: np.ndarray
    E: np.ndarray
    cost: float
    keepG: np.ndarray


def _colmax(M, n):
    return np.asarray(abs(M).max(axis=0).todense()).ravel() if M.nnz else np.zeros(n)


def precondition(P, q, G, h, A, b, lb, ub, ruiz_iters=10, pock_chambolle=True) -> Scaled:
    P, G, A = (sp.csr_matrix(M, dtype=float) for M in (P, G, A))
    q, h, b = (np.asarray(v, float).ravel() for v in (q, h, b))
    n = P.shape[0]
    keepG = h < INF_ROW
    G, h = G[keepG], h[keepG]
    K = sp.vstack([G, A]).tocsr()
    c = np.concatenate([h, b])
    m = K.shape[0]
    D, E = np.ones(n), np.ones(m)
    Ps, Ks = P.tocsc(), K.tocsc()
    for _ in range(ruiz_iters):
        cn = np.maximum(_colmax(Ps, n), _colmax(Ks, n)); cn[cn < 1e-8] = 1.0
        rn = np.asarray(abs(Ks).max(axis=1).todense()).ravel() if Ks.nnz else np.zeros(m)
        rn[rn < 1e-8] = 1.0
        d, e = 1 / np.sqrt(cn), 1 / np.sqrt(rn)
        D *= d; E *= e
        Ps = sp.diags(d) @ Ps @ sp.diags(d)
        Ks = sp.diags(e) @ Ks @ sp.diags(d)
    if pock_chambolle:
        cn = np.asarray(abs(Ps).sum(axis=0)).ravel() + np.asarray(abs(Ks).sum(axis=0)).ravel()
        rn = np.asarray(abs(Ks).sum(axis=1)).ravel()
        cn[cn < 1e-8] = 1.0; rn[rn < 1e-8] = 1.0
        D, E = D / np.sqrt(cn), E / np.sqrt(rn)
    Ps = (sp.diags(D) @ P @ sp.diags(D)).tocsr()
    qs = D * q
    cP = _colmax(Ps, n).mean() if Ps.nnz else 0.0
    scale = max(cP, np.abs(qs).max() if n else 0.0)
    cost = min(max(1.0 / scale, 1e-6), 1e6) if scale > 1e-12 else 1.0
    Ks = (sp.diags(E) @ K @ sp.diags(D)).tocsr()
    return Scaled(P=(Ps * cost).tocsr(), q=qs * cost, K=Ks, KT=Ks.T.tocsr(), c=E * c,
                  lb=np.asarray(lb, float) / D, ub=np.asarray(ub, float) / D, mG=G.shape[0],
                  D=D, E=E, cost=cost, keepG=keepG)


def power_norm(matvec, n, iters=200, seed=0) -> float:
    """Largest eigenvalue of a PSD operator (power iteration, relative tol 1e-6)."""
    if n == 0:
        return 0.0
    u = np.random.default_rng(seed).standard_normal(n)
    u /= np.linalg.norm(u)
    lam = 0.0
    for _ in range(iters):
        w = matvec(u)
        new = float(np.linalg.norm(w))
        if new == 0.0:
            return 0.0
        u = w / new
        if abs(new - lam) < 1e-6 * new:
            return new
        lam = new
    return lam


def _kkt(S: Scaled, x, v):
    g = S.P @ x + S.q + S.KT @ v
    z = -g                                  # reduced-cost box multiplier
    z[~np.isfinite(S.lb)] = np.maximum(z[~np.isfinite(S.lb)], 0.0)
    z[~np.isfinite(S.ub)] = np.minimum(z[~np.isfinite(S.ub)], 0.0)
    rd = g + z
    rp = S.K @ x - S.c
    rp[:S.mG] = np.maximum(rp[:S.mG], 0.0)
    fl, fu = np.isfinite(S.lb), np.isfinite(S.ub)
    gap = (x @ (S.P @ x) + S.q @ x + S.c @ v
           + S.lb[fl] @ np.minimum(z, 0)[fl] + S.ub[fu] @ np.maximum(z, 0)[fu])
    return math.sqrt(rp @ rp + rd @ rd + gap * gap)


def readout(S: Scaled, x, v, tau):
    """Unscaled (x, y, z, z_box) from the network state."""
    u = x - tau * (S.P @ x + S.q + S.KT @ v)
    zb = (u - np.clip(u, S.lb, S.ub)) / tau
    vo = S.E * v / S.cost
    z = np.zeros(S.keepG.size); z[S.keepG] = vo[:S.mG]
    return S.D * x, vo[S.mG:], z, zb / (S.D * S.cost)


def qpbench_residuals(P, q, G, h, A, b, lb, ub, x, y, z, zb):
    rp = max(0.0, np.max(np.abs(A @ x - b), initial=0.0), np.max(G @ x - h, initial=0.0),
             np.max(np.where(np.isfinite(lb), lb - x, -np.inf), initial=0.0),
             np.max(np.where(np.isfinite(ub), x - ub, -np.inf), initial=0.0))
    rd = float(np.max(np.abs(P @ x + q + A.T @ y + G.T @ z + zb), initial=0.0))
    fl, fu = np.isfinite(lb), np.isfinite(ub)
    gap = abs(x @ (P @ x) + q @ x + b @ y + h @ z + lb[fl] @ np.minimum(zb, 0)[fl]
              + ub[fu] @ np.maximum(zb, 0)[fu])
    return float(rp), rd, float(gap)


def solve(P, q, G, h, A, b, lb, ub, *, max_iter=200_000, tol=5e-4, check=64, s=S_STEP):
    """Run the spec. Returns dict(x, y, z, z_box, iters, residuals, restarts, converged)."""
    P, G, A = (sp.csr_matrix(M, dtype=float) for M in (P, G, A))
    q, h, b, lb, ub = (np.asarray(v, float).ravel() for v in (q, h, b, lb, ub))
    S = precondition(P, q, G, h, A, b, lb, ub)
    n, m = S.P.shape[0], S.K.shape[0]
    L = power_norm(lambda u: S.P @ u, n)
    k = math.sqrt(power_norm(lambda u: S.KT @ (S.K @ u), n)) if S.K.nnz else 0.0
    k = max(k, 1e-12)
    nq, nc = np.linalg.norm(S.q), np.linalg.norm(S.c)
    omega = nq / nc if (nq > 1e-10 and nc > 1e-10) else 1.0
    x = np.clip(np.zeros(n), S.lb, S.ub); v = np.zeros(m)
    x_ag, v_ag = x.copy(), v.copy()
    x_r, v_r = x.copy(), v.copy()
    kkt_r, kkt_prev = _kkt(S, x, v), np.inf
    t, it, restarts = 1, 0, 0
    best = None
    G_rows = slice(0, S.mG)
    while it < max_iter:
        sigma = math.sqrt(s) * omega / k
        wK = omega * k / math.sqrt(s)
        for _ in range(check):
            bt = 2.0 / (t + 1)
            tau = 1.0 / (bt * L / s + wK)
            x_md = (1 - bt) * x_ag + bt * x
            x_new = np.clip(x - tau * (S.P @ x_md + S.q + S.KT @ v), S.lb, S.ub)
            v = v + sigma * (S.K @ (2 * x_new - x) - S.c)
            v[G_rows] = np.maximum(v[G_rows], 0.0)
            x = x_new
            x_ag = (1 - bt) * x_ag + bt * x
            v_ag = (1 - bt) * v_ag + bt * v
            t += 1; it += 1
        tau = 1.0 / (2.0 / (t + 1) * L / s + wK)
        for xx, vv in ((x, v), (x_ag, v_ag)):
            sol = readout(S, xx, vv, tau)
            res = qpbench_residuals(P, q, G, h, A, b, lb, ub, *sol)
            if max(res) < tol:
                return dict(x=sol[0], y=sol[1], z=sol[2], z_box=sol[3], iters=it, residuals=res,
                            restarts=restarts, converged=True)
            if best is None or max(res) < max(best[1]):
                best = (sol, res)
        kc, ka = _kkt(S, x, v), _kkt(S, x_ag, v_ag)
        (xc, vc, kcand) = (x_ag, v_ag, ka) if ka < kc else (x, v, kc)
        fire = (kcand <= BETA_SUFFICIENT * kkt_r
                or (kcand <= BETA_NECESSARY * kkt_r and kcand > kkt_prev)
                or t >= BETA_ARTIFICIAL * it)
        kkt_prev = kcand
        if fire:
            xc, vc = xc.copy(), vc.copy()
            dx, dv = np.linalg.norm(xc - x_r), np.linalg.norm(vc - v_r)
            if dx > 1e-10:
                ratio = dv / dx if dv > 1e-10 else omega / 10.0
                omega = math.exp(PW_SMOOTHING * math.log(ratio) + (1 - PW_SMOOTHING) * math.log(omega))
            x, x_ag, x_r = xc, xc.copy(), xc.copy()
            v, v_ag, v_r = vc, vc.copy(), vc.copy()
            kkt_r, kkt_prev = _kkt(S, x, v), np.inf
            t = 1; restarts += 1
    sol, res = best
    return dict(x=sol[0], y=sol[1], z=sol[2], z_box=sol[3], iters=it, residuals=res,
                restarts=restarts, converged=False)
