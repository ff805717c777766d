"""Hypothesis profiles: ``dev`` (default, random) and ``ci`` (derandomized, more examples).

Select with HYPOTHESIS_PROFILE=ci (``.ci/run`` does); CI=true selects ``ci`` too.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile(
    "ci",
    max_examples=120,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
_default = "ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))


def pytest_collection_modifyitems(config, items):
    """Skip ``gpu`` tests when no CUDA device is present (they run on a lent GPU machine)."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch is a core dependency
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps one process-wide state, and its first user fixes the mixed precision (TRL's
    GRPOConfig picks bf16 where the CPU has it); each test starts without it, as a fresh process would."""
    yield
    try:
        from accelerate.state import AcceleratorState
    except ImportError:  # pragma: no cover - accelerate comes with the llm extra
        return
    AcceleratorState._reset_state(reset_partial_state=True)
