"""The kernel form of Lemma 1 (shared parameters): identities, metamorphic relations, the tabular limit,
and the first-order agreement with an exact parameter step."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theory


def _case(seed, S=3, n=4, P=5):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (S, n))
    J = rng.normal(0, 1, (S * n, P))
    g = rng.normal(0, 1, (S, n))
    return rng, z, J, g


@given(seed=st.integers(0, 10_000), lr=st.floats(0.01, 2.0))
def test_tabular_jacobian_is_the_logit_step_with_no_cross_terms(seed, lr):
    rng = np.random.default_rng(seed)
    z, r = rng.normal(0, 1, (3, 5)), rng.random((3, 5))
    g = theory.softmax(z) * (r - (theory.softmax(z) * r).sum(-1, keepdims=True))  # exact PG ascent
    eye = np.eye(z.size)
    np.testing.assert_allclose(theory.kernel_dz(z, eye, g, lr), lr * g, atol=1e-15)
    np.testing.assert_allclose(
        theory.kernel_first_order_dH(z, eye, g, lr), theory.pg_first_order_dH(z, r, lr), atol=1e-13
    )
    _, cross = theory.kernel_dH_split(z, eye, g, lr)
    np.testing.assert_allclose(cross, 0.0, atol=1e-15)


@given(seed=st.integers(0, 10_000), lr=st.floats(0.01, 2.0))
def test_split_adds_up_and_is_linear_in_lr(seed, lr):
    _, z, J, g = _case(seed)
    own, cross = theory.kernel_dH_split(z, J, g, lr)
    total = theory.kernel_first_order_dH(z, J, g, lr)
    np.testing.assert_allclose(own + cross, total, atol=1e-12)
    np.testing.assert_allclose(
        theory.kernel_first_order_dH(z, J, g, 2 * lr), 2 * total, rtol=1e-10, atol=1e-12
    )


@given(seed=st.integers(0, 10_000))
def test_reparametrisation_by_an_orthogonal_map_changes_nothing(seed):
    rng, z, J, g = _case(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(J.shape[1], J.shape[1])))
    np.testing.assert_allclose(theory.kernel_dz(z, J @ Q, g, 0.7), theory.kernel_dz(z, J, g, 0.7), atol=1e-12)


@given(seed=st.integers(0, 10_000))
def test_parameters_not_shared_between_states_give_no_cross_terms(seed):
    rng, z, _, g = _case(seed)
    S, n = z.shape
    blocks = [rng.normal(size=(n, 2)) for _ in range(S)]
    J = np.zeros((S * n, 2 * S))
    for s, b in enumerate(blocks):
        J[s * n : (s + 1) * n, 2 * s : 2 * s + 2] = b
    _, cross = theory.kernel_dH_split(z, J, g, 0.5)
    np.testing.assert_allclose(cross, 0.0, atol=1e-14)


@settings(max_examples=30)
@given(seed=st.integers(0, 10_000))
def test_prediction_matches_an_exact_step_of_a_loglinear_policy_to_first_order(seed):
    """z(θ) = z0 + Φθ: the exact step θ += η·Φᵀg changes entropy by the kernel prediction + O(η²)."""
    _, z0, Phi, g = _case(seed)
    gaps = []
    for lr in (1e-2, 1e-3):
        dz = (Phi @ (lr * Phi.T @ g.ravel())).reshape(z0.shape)  # exact for a linear map
        real = theory.entropy(z0 + dz) - theory.entropy(z0)
        pred = theory.kernel_first_order_dH(z0, Phi, g, lr)
        gaps.append(np.abs(real - pred).max())
        assert np.abs(real - pred).max() <= 50 * lr**2 * (1 + np.abs(g).max() * np.abs(Phi).max() ** 2) ** 2
    assert gaps[1] < gaps[0] / 20 or gaps[0] < 1e-12


def test_bad_shapes_name_the_argument():
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"^jacobian: shape \(5, 4\); allowed: \(S·n, P\) = \(6, P\)"):
        theory.kernel_dz(z, np.zeros((5, 4)), z, 0.1)
    with pytest.raises(ValueError, match=r"^grad_z: shape \(3, 2\); allowed: the logits' shape \(2, 3\)"):
        theory.kernel_dz(z, np.zeros((6, 4)), np.zeros((3, 2)), 0.1)
    with pytest.raises(ValueError, match=r"^lr: got -1\.0; allowed: \[0\.0, inf\]"):
        theory.kernel_dz(z, np.zeros((6, 4)), z, -1.0)


@given(seed=st.integers(0, 10_000), c=st.floats(0.1, 10.0))
def test_kernel_gain_is_one_for_orthonormal_maps_and_quadratic_in_scale(seed, c):
    rng, _, J, g = _case(seed, P=12)
    Q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    assert theory.kernel_gain(np.eye(12), g) == pytest.approx(1.0, rel=1e-12)
    assert theory.kernel_gain(Q, g) == pytest.approx(1.0, rel=1e-10)
    assert theory.kernel_gain(c * J, g) == pytest.approx(c**2 * theory.kernel_gain(J, g), rel=1e-10)
    # ρ is a Rayleigh quotient of K = J Jᵀ: between its smallest and largest eigenvalue
    eig = np.linalg.eigvalsh(J @ J.T)
    assert eig[0] - 1e-9 <= theory.kernel_gain(J, g) <= eig[-1] * (1 + 1e-9)


@settings(max_examples=30)
@given(seed=st.integers(0, 10_000))
def test_kernel_gain_is_the_first_order_objective_gain_over_a_tabular_step(seed):
    """A log-linear bandit z = z0 + Φθ, J(z) = Σ_s Σ_a π_s(a)·r_s(a): (J after θ += η·Φᵀg − J) /
    (J after z += η·g − J) → ρ as η → 0, with g = ∂J/∂z = π·(r − E_π r)."""
    rng, z0, Phi, _ = _case(seed)
    r = rng.uniform(0, 1, z0.shape)

    def objective(z):
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        return float((p * r).sum())

    p = np.exp(z0 - z0.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    g = p * (r - (p * r).sum(-1, keepdims=True))
    rho = theory.kernel_gain(Phi, g)
    errs = []
    for lr in (1e-3, 1e-4):
        shared = objective(z0 + (Phi @ (lr * Phi.T @ g.ravel())).reshape(z0.shape)) - objective(z0)
        tab = objective(z0 + lr * g) - objective(z0)
        errs.append(abs(shared / tab - rho))
    assert errs[1] <= max(errs[0] / 5, 1e-7 * (1 + rho))


def test_kernel_gain_bad_input_names_the_argument():
    with pytest.raises(
        ValueError, match=r"^jacobian: shape \(5, 4\); allowed: \(N, P\) with N = grad_z.size = 6"
    ):
        theory.kernel_gain(np.zeros((5, 4)), np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"^grad_z: all zero"):
        theory.kernel_gain(np.ones((6, 4)), np.zeros((2, 3)))
