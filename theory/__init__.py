"""theory: the entropy-change results of softmax policy gradient as closed forms (numpy + scipy only).

Arrays put the actions on the last axis; leading axes are batch axes. Entropy is in nats.
``python -m theory verify`` checks every claim numerically and prints a verdict table.
"""

from theory.control import (
    pi_is_stable,
    pi_loop_matrix,
    pi_spectral_radius,
    pi_steady_state_error,
    simulate_pi_loop,
)
from theory.dynamics import (
    entropy_grad,
    entropy_hessian,
    exact_dH,
    first_order_dH,
    npg_dz,
    npg_first_order_dH,
    one_arm_bump_dH,
    pg_dz,
    pg_first_order_dH,
    second_order_dH,
    softmax_jacobian,
)
from theory.kernel import kernel_dH_split, kernel_dz, kernel_first_order_dH, kernel_gain
from theory.law import (
    entropy_law_predict,
    entropy_law_prediction,
    exact_bandit_trajectory,
    fit_entropy_law,
)
from theory.passk import pass_at_k
from theory.policy import c_pi, cov_pi, entropy, g_values, log_softmax, softmax
from theory.qae import (
    linear_quantile_baseline,
    prob_sum_g_nonneg,
    qae_binary_baseline,
    qae_identity_gap,
    qae_surrogate_dH,
    qae_true_dH,
    quantile_baseline,
    sampled_first_order_dH,
    sum_g_distribution,
)
from theory.token_stats import batch_cov_mean, token_cov, token_cov_expectation

__all__ = [
    "batch_cov_mean",
    "c_pi",
    "cov_pi",
    "entropy",
    "entropy_grad",
    "entropy_hessian",
    "entropy_law_predict",
    "entropy_law_prediction",
    "exact_bandit_trajectory",
    "exact_dH",
    "first_order_dH",
    "fit_entropy_law",
    "g_values",
    "kernel_dH_split",
    "kernel_dz",
    "kernel_first_order_dH",
    "kernel_gain",
    "linear_quantile_baseline",
    "log_softmax",
    "npg_dz",
    "npg_first_order_dH",
    "one_arm_bump_dH",
    "pass_at_k",
    "pg_dz",
    "pg_first_order_dH",
    "pi_is_stable",
    "pi_loop_matrix",
    "pi_spectral_radius",
    "pi_steady_state_error",
    "prob_sum_g_nonneg",
    "qae_binary_baseline",
    "qae_identity_gap",
    "qae_surrogate_dH",
    "qae_true_dH",
    "quantile_baseline",
    "sampled_first_order_dH",
    "second_order_dH",
    "simulate_pi_loop",
    "softmax",
    "softmax_jacobian",
    "sum_g_distribution",
    "token_cov",
    "token_cov_expectation",
]
