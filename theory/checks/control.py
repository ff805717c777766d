"""Checks PI1-PI2: feedback control of entropy (EntroPIC) on a linearised plant."""

from __future__ import annotations

import numpy as np

from entrolab.common.verdict import FAILS, HOLDS, Row
from theory import control
from theory.checks._base import check


@check("PI1")
def check_pi_region(rng) -> Row:
    mism, count = 0, 0
    for _ in range(4000):
        kappa = float(np.exp(rng.uniform(np.log(0.05), np.log(5))))
        kp = float(rng.uniform(0, 3 / kappa))
        ki = 0.0 if rng.random() < 0.2 else float(rng.uniform(0, 1.5 / kappa))
        rho = control.pi_spectral_radius(kappa, kp, ki)
        if abs(rho - 1.0) < 1e-6:
            continue  # on the boundary: the strict/weak inequality is a rounding question
        count += 1
        mism += int(control.pi_is_stable(kappa, kp, ki) != (rho < 1.0))
    kappas = np.linspace(0.01, 3.0, 3000)
    stable = np.array([control.pi_is_stable(k, 1.0, 0.01) for k in kappas])
    kmax = float(kappas[stable].max())
    ok = mism == 0
    return Row(
        id="PI1",
        claim="PI loop stable iff K_i > 0 and K_i < K_p < 2/κ + K_i/2 (P: 0 < κK_p < 2) — Jury vs eigenvalues",
        source="EntroPIC (Yang et al. 2025) control law; docs/theory.md §3 [ours]",
        setting="random plant gain κ∈[0.05,5], K_p∈[0,3/κ], K_i∈[0,1.5/κ]",
        n=count,
        measured=f"Jury/eigenvalue disagreements {mism}/{count}; EntroPIC defaults (K_p=1, K_i=0.01) stable for κ ≤ {kmax:.3f}",
        worst=float(mism),
        tolerance=0.0,
        verdict=HOLDS if ok else FAILS,
    )


@check("PI2")
def check_pi_steady_state(rng) -> Row:
    kappa, kp, ki = 0.5, 1.0, 0.01
    rows = {}
    for label, drift in (("on-policy", 0.0), ("off-policy", -0.02)):
        p_run = control.simulate_pi_loop(kappa, drift, kp, 0.0, 0.3, 4000)
        pi_run = control.simulate_pi_loop(kappa, drift, kp, ki, 0.3, 4000)
        rows[label] = {
            "P": float(p_run.error[-1]),
            "PI": float(pi_run.error[-1]),
            "P_theory": control.pi_steady_state_error(kappa, drift, kp, 0.0),
        }
    off = rows["off-policy"]
    run = control.simulate_pi_loop(kappa, 0.0, kp, 0.0, 0.3, 50)
    sign_ok = bool(((run.alpha > 0) == (run.error[:-1] > 0)).all())
    ok = (
        abs(off["P"] - off["P_theory"]) < 1e-9
        and abs(off["PI"]) < 1e-6
        and abs(rows["on-policy"]["P"]) < 1e-9
        and abs(rows["on-policy"]["PI"]) < 1e-6
        and sign_ok
    )
    return Row(
        id="PI2",
        claim="Under drift d (off-policy), P control leaves e* = d/(κK_p); PI removes it; α > 0 iff H > H_tar (P)",
        source="EntroPIC §3.2; docs/theory.md §3",
        setting="κ=0.5, K_p=1, K_i=0.01, α∈[−1,1], 4000 steps, e0=0.3",
        n=2,
        measured=(
            f"off-policy d=−0.02: P error {off['P']:.4f} (theory {off['P_theory']:.4f}), PI error {off['PI']:.1e}; "
            f"on-policy: P {rows['on-policy']['P']:.1e}, PI {rows['on-policy']['PI']:.1e}"
        ),
        worst=abs(off["PI"]),
        tolerance=1e-6,
        verdict=HOLDS if ok else FAILS,
        details=rows,
    )
