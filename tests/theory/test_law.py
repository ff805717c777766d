"""theory.law: the entropy–performance law fit and exact bandit trajectories."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import theory

H_traj = hnp.arrays(np.float64, st.integers(5, 60), elements=st.floats(0.0, 3.0), unique=True)


@given(H_traj, st.floats(0.01, 2.0), st.floats(-1.0, 2.0))
def test_fit_recovers_noiseless_law(h, a, b):
    r = -a * np.exp(h) + b
    fa, fb = theory.fit_entropy_law(h, r)
    assert fa == pytest.approx(a, rel=1e-8, abs=1e-8)
    assert fb == pytest.approx(b, rel=1e-8, abs=1e-8)


@given(H_traj, st.randoms())
def test_fit_is_permutation_invariant(h, rnd):
    r = np.sin(h) + 0.3 * h
    perm = list(range(h.size))
    rnd.shuffle(perm)
    np.testing.assert_allclose(
        theory.fit_entropy_law(h[perm], r[perm]), theory.fit_entropy_law(h, r), atol=1e-9
    )


def test_prediction_on_noiseless_law_is_exact():
    h = np.linspace(2.0, 0.1, 200)
    res = theory.entropy_law_prediction(h, -0.1 * np.exp(h) + 1.05, 0.15)
    assert res.n_fit == 30
    assert res.rmse_pred < 1e-10 and res.ceiling == pytest.approx(0.95)


def test_constant_entropy_rejected():
    with pytest.raises(ValueError, match="H: 3 points"):
        theory.fit_entropy_law([1.0, 1.0, 1.0], [0.1, 0.2, 0.3])


def test_bad_fit_frac():
    with pytest.raises(ValueError, match=r"fit_frac: got 1\.5"):
        theory.entropy_law_prediction([0.0, 1.0, 2.0], [1.0, 0.5, 0.0], 1.5)


def test_reference_run_of_theory_md():
    # docs/theory.md §1.2: z = (2, 1, 0.5, −2), r = (0, 0, 0, 1), exact PG, η = 0.5.
    tr = theory.exact_bandit_trajectory([2.0, 1.0, 0.5, -2.0], [0.0, 0.0, 0.0, 1.0], 0.5, 400)
    assert tr.entropy[0] == pytest.approx(0.958, abs=5e-4)
    assert int(np.argmax(tr.entropy)) == 130
    assert tr.entropy.max() == pytest.approx(1.359, abs=5e-4)
    assert tr.entropy[-1] == pytest.approx(0.043, abs=5e-4)
    assert int(np.argmax(tr.cov_pg > 0)) == 130


def test_trajectory_matches_manual_iteration():
    z = np.array([[0.3, -1.0, 2.0], [1.0, 1.0, -1.0]])
    r = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    tr = theory.exact_bandit_trajectory(z, r, 0.7, 5, natural=True)
    zz = z.copy()
    for _ in range(5):
        zz = zz + theory.npg_dz(zz, r, 0.7)
    assert tr.entropy[-1] == pytest.approx(theory.entropy(zz).mean(), abs=1e-14)
    assert tr.success[-1] == pytest.approx((theory.softmax(zz) * r).sum(-1).mean(), abs=1e-14)
