"""theory.control: the PI loop on a linearised entropy plant."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import theory

gain = st.floats(0.05, 5.0)


@given(gain, st.floats(0.0, 3.0), st.floats(0.0, 1.5))
def test_jury_matches_eigenvalues(kappa, kpk, kik):
    kp, ki = kpk / kappa, kik / kappa
    rho = theory.pi_spectral_radius(kappa, kp, ki)
    if abs(rho - 1.0) > 1e-6:
        assert theory.pi_is_stable(kappa, kp, ki) == (rho < 1.0)


@given(gain, st.floats(0.1, 1.9), st.floats(-0.05, 0.05))
def test_p_control_steady_state_error(kappa, kpk, drift):
    kp = kpk / kappa
    run = theory.simulate_pi_loop(kappa, drift, kp, 0.0, 0.2, 3000, alpha_max=10.0)
    assert run.error[-1] == pytest.approx(drift / (kappa * kp), abs=1e-8)
    assert theory.pi_steady_state_error(kappa, drift, kp, 0.0, alpha_max=10.0) == pytest.approx(
        drift / (kappa * kp)
    )


@pytest.mark.parametrize("drift", [0.0, -0.02, 0.01])
def test_pi_removes_steady_state_error(drift):
    run = theory.simulate_pi_loop(0.5, drift, 1.0, 0.05, 0.3, 3000)
    assert abs(run.error[-1]) < 1e-8
    p_only = theory.simulate_pi_loop(0.5, drift, 1.0, 0.0, 0.3, 3000)
    assert p_only.error[-1] == pytest.approx(drift / 0.5, abs=1e-8)


def test_saturation_makes_target_unreachable():
    assert theory.pi_steady_state_error(0.1, -0.5, 1.0, 0.01) == -np.inf


def test_alpha_sign_follows_error_for_p_control():
    run = theory.simulate_pi_loop(0.5, 0.0, 1.0, 0.0, -0.3, 20)
    assert np.all((run.alpha > 0) == (run.error[:-1] > 0))


def test_unstable_gains_rejected_for_steady_state():
    with pytest.raises(ValueError, match="kp, ki"):
        theory.pi_steady_state_error(1.0, 0.0, 3.0, 0.0)


def test_bad_kappa():
    with pytest.raises(ValueError, match=r"kappa: got 0\.0"):
        theory.pi_is_stable(0.0, 1.0, 0.01)
