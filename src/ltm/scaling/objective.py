"""The fitting objective: summed Huber loss on log residuals, scaled by 1/δ² (docs/scaling.md §3.3).

J(θ) = Σ_i w_i·ρ(r_i/δ), r_i = ℓ̂_i − ln L_i, ρ(u) = ½u² for |u| ≤ 1 else |u| − ½.
Summing (not averaging) and dividing by δ² keeps J of order n, so L-BFGS-B's stopping rules, which are
effectively absolute when J ≪ 1, do not stop it early: the bug behind Chinchilla's published fit.
`delta=None` gives plain least squares in log space, scaled the same way (used as a sensitivity check).
Weights are bootstrap multiplicities: resampling never copies the data.
"""
from __future__ import annotations

import numpy as np

from ltm.scaling.laws import Cols, Law

LS_SCALE = 1e-3  # δ-like unit for the least-squares objective, so J stays O(n)


class Objective:
    """J and ∇J for one law on one data set; call with θ of shape (P,)."""

    def __init__(
        self,
        law: Law,
        cols: Cols,
        lnL: np.ndarray,
        delta: float | None = 1e-3,
        weights: np.ndarray | None = None,
        scale: float = 1.0,
    ) -> None:
        self.law, self.cols, self.lnL = law, cols, np.asarray(lnL, float)
        self.delta = delta
        self.weights = None if weights is None else np.asarray(weights, float)
        self.scale = float(scale)

    def residuals(self, theta: np.ndarray) -> np.ndarray:
        return self.law.predict(theta, self.cols) - self.lnL

    def _rho_psi(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.delta is None:
            u = r / LS_SCALE
            return 0.5 * u * u, u / LS_SCALE
        u = r / self.delta
        au = np.abs(u)
        m = np.minimum(au, 1.0)
        # m·(|u| − m/2) is ½u² for |u| ≤ 1 and |u| − ½ beyond: the Huber ρ without a branch
        return m * (au - 0.5 * m), np.minimum(np.maximum(u, -1.0), 1.0) / self.delta

    def value(self, theta: np.ndarray) -> float:
        rho, _ = self._rho_psi(self.residuals(theta))
        if self.weights is not None:
            rho = rho * self.weights
        return self.scale * float(rho.sum())

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        theta = np.asarray(theta, float)
        t = self.law.terms(theta[None, :], self.cols)[:, 0]
        m = t.max(axis=0)
        ex = np.exp(t - m)
        s = ex.sum(axis=0)
        r = m + np.log(s) - self.lnL
        rho, psi = self._rho_psi(r)
        if self.weights is not None:
            rho, psi = rho * self.weights, psi * self.weights
        w = ex / s
        # ∇J = Σ_i ψ_i Σ_k w_ki ∂t_ki/∂θ
        grad = np.einsum("kn,kpn,n->p", w, self.law.jac(theta, self.cols), psi)
        return self.scale * float(rho.sum()), self.scale * grad

    def grid_values(self, thetas: np.ndarray, chunk_elems: int = 4_000_000) -> np.ndarray:
        """J at many θ at once (the start grid), vectorised in chunks to bound memory."""
        n = self.lnL.size
        step = max(1, chunk_elems // max(1, n))
        out = np.empty(len(thetas))
        for i in range(0, len(thetas), step):
            t = self.law.terms(thetas[i : i + step], self.cols)  # (K, m, n)
            m = t.max(axis=0)
            r = m + np.log(np.exp(t - m).sum(axis=0)) - self.lnL
            rho, _ = self._rho_psi(r)
            if self.weights is not None:
                rho = rho * self.weights
            out[i : i + step] = self.scale * rho.sum(axis=1)
        return out
