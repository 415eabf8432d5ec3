"""Fit one law to one set of points and describe the outcome as a JSON-ready entry: design checks →
multi-start fit with acceptance checks → identifiability and flags → bootstrap CIs (also for derived
quantities) → in-sample and held-out error. A refusal stops it; a refused entry never carries estimates.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, NamedTuple

import numpy as np

from ltm.scaling.checks import Design, check_design, check_optimum, errors
from ltm.scaling.config import Settings
from ltm.scaling.fit import TOLERANCES, FitError, FitResult, fit_law
from ltm.scaling.laws import Law
from ltm.scaling.records import Points
from ltm.scaling.uncertainty import BootResult, bootstrap, summarize

Derived = Callable[[np.ndarray], dict[str, np.ndarray]]  # θ rows (M, P) → name → (M,) values


class Split(NamedTuple):
    """A held-out check: fit `train` under `design` (with every check), score `test`."""

    train: Points
    test: Points
    how: str
    design: Design


@dataclass
class Outcome:
    entry: dict[str, Any]
    fit: FitResult | None = None
    boot: BootResult | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.entry["status"] == "accepted"


def fit_checked(law: Law, p: Points, st: Settings, design: Design,
                extra_starts: Iterable[np.ndarray] = ()) -> tuple[FitResult, float, list[str]]:
    """Design checks, identifiability, accepted fit. Returns (fit, rho_id, flags); raises FitError."""
    flags = check_design(law, p.lnL, design, st.min_points_per_param)
    fit = fit_law(law, p.cols(), p.lnL, st.fit, extra_starts=list(extra_starts))
    rho, more = check_optimum(law, fit.theta, p.cols(), float(np.min(p.loss)))
    return fit, rho, flags + more


def try_fit(law: Law, p: Points, st: Settings, design: Design,
            extra_starts: Iterable[np.ndarray] = ()) -> tuple[FitResult | None, str | None]:
    """A fit with every check (for a split or a refit): (fit, None), or (None, why it was refused)."""
    try:
        return fit_checked(law, p, st, design, extra_starts)[0], None
    except FitError as err:
        return None, str(err)


def rows_for(law: Law, theta: np.ndarray, p: Points, role: str, split: str,
             tags: dict[str, Any]) -> list[dict[str, Any]]:
    """Residual-CSV rows: one per point, log residual = predicted − observed in ln L."""
    pred = np.exp(law.predict(theta, p.cols()))
    nan = lambda v: None if not np.isfinite(v) else float(v)  # noqa: E731
    return [
        {**tags, "law": law.name, "law_id": law.id, "run": str(p.run[i]), "N": float(p.N[i]), "D": float(p.D[i]),
         "C": float(p.C_fit[i]), "T": float(p.T[i]), "n_latents": nan(p.Nz[i]), "T_eval": nan(p.Teval[i]),
         "observed": float(p.loss[i]), "predicted": float(pred[i]),
         "residual": float(np.log(pred[i]) - np.log(p.loss[i])), "role": role, "split": split}
        for i in range(len(p))
    ]


def run_law(law: Law, p: Points, st: Settings, subset: dict[str, Any], design: Design, tags: dict[str, Any],
            extra_starts: Iterable[np.ndarray] = (), derived: Derived | None = None, heldout: Split | None = None,
            residual_bootstrap: bool = False, n_bootstrap: int | None = None) -> Outcome:
    """Fit `law` to `p` with every check; bootstrap; held-out error. Refusals become entries."""
    extra = [np.asarray(x, float) for x in extra_starts]
    fs = st.fit
    entry: dict[str, Any] = {  # the reporting-checklist fields every entry carries, accepted or not
        "law": law.name, "law_id": law.id, "form": law.form, "parametrisation": law.parametrisation,
        "subset": subset, "n_points": len(p),
        "objective": {"type": "huber_log", "delta": fs.delta, "reduction": "sum", "scale": "1/delta^2"},
        "optimizer": {"method": "L-BFGS-B", "jac": "analytic", "tolerances": TOLERANCES,
                      "starts": {"grid_points": len(law.grid_points()), "best_k": fs.n_starts, "extra": len(extra)}},
        "bounds": {name: list(b) for name, b in zip(law.params, law.bounds)},
    }
    try:
        fit, rho, flags = fit_checked(law, p, st, design, extra)
    except FitError as err:
        entry.update(status="refused", reason=str(err), diagnostics=dict(err.diagnostics))
        return Outcome(entry)
    entry.update(
        status="accepted", reason=None, theta=dict(zip(law.params, map(float, fit.theta))),
        params={k: {"estimate": v} for k, v in fit.natural().items()},
        derived={k: {"estimate": float(v[0])} for k, v in derived(fit.theta[None, :]).items()} if derived else {},
        bootstrap=None, diagnostics={**fit.diagnostics, "rho_id": rho}, warnings=flags,
    )
    out = Outcome(entry, fit)
    B = st.n_bootstrap if n_bootstrap is None else n_bootstrap
    if B > 0:
        attach_bootstrap(out, p, st, B, derived, residual_bootstrap)
    quality: dict[str, Any] = {"in_sample": errors(law.predict(fit.theta, p.cols()), p.lnL)}
    out.rows = rows_for(law, fit.theta, p, "in_fit", "full", tags)
    if heldout is not None:
        # the training split starts from the grid (and published optima) only: no peeking at the full fit
        quality["heldout"], hrows = heldout_error(law, heldout, st, extra, tags)
        out.rows += hrows
    entry["fit_quality"] = quality
    return out


def attach_bootstrap(out: Outcome, p: Points, st: Settings, B: int, derived: Derived | None = None,
                     residual: bool = False) -> None:
    """Bootstrap an accepted fit and put percentile CIs on its parameters and derived quantities."""
    e, fit, law = out.entry, out.fit, out.fit.law
    boot = bootstrap(law, p.cols(), p.lnL, fit.theta, st.fit, replace(st.boot, n=B), p.clusters(), residual)
    ok = boot.samples[boot.ok()]
    nat = [law.natural(t) for t in ok]
    e["params"] = {k: summarize(v, [d[k] for d in nat]) for k, v in fit.natural().items()}
    if derived is not None and len(ok):
        dv = derived(ok)
        e["derived"] = {k: summarize(e["derived"][k]["estimate"], dv[k]) for k in dv}
    e["bootstrap"] = {"B": B, "n_failed": boot.n_failed, "method": boot.method,
                      "n_checked_multistart": boot.n_checked, "n_multistart_better": boot.n_disagree,
                      # the replicates' fitted parameters (internal, as `theta`), for prediction bands
                      "theta_samples": ok.tolist()}
    if boot.n_disagree:
        e["warnings"].append(f"{law.name}: {boot.n_disagree} of {boot.n_checked} checked bootstrap replicates "
                             "found a better optimum than the warm start")
    if boot.n_failed:
        e["warnings"].append(f"{law.name}: {boot.n_failed} of {B} bootstrap replicates failed")
    out.boot = boot


def heldout_error(law: Law, split: Split, st: Settings, extra: list[np.ndarray],
                  tags: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fit on the training part of a split (with every check) and score the held-out part."""
    train, test = split.train, split.test
    out: dict[str, Any] = {"split": split.how, "n_train": len(train), "n_test": len(test), "available": False}
    if not len(train) or not len(test):
        return {**out, "reason": "the split leaves no training or no test points"}, []
    fit, refused = try_fit(law, train, st, split.design, extra)
    if fit is None:
        return {**out, "reason": f"training-split fit refused: {refused}"}, []
    out.update(available=True, **errors(law.predict(fit.theta, test.cols()), test.lnL), train_params=fit.natural())
    return out, rows_for(law, fit.theta, test, "held_out", "heldout", tags)
