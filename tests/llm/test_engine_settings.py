"""docs/engines.md's table of settings, name by name, is what the engine adapters do: each TRL and verl
setting it lists, set to a value of its own, lands in the entrolab controller and hyperparameter the table
names (``pipeline_from_grpo_config``, ``pipeline_from_verl_config``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("omegaconf")

from llm.engines.trl_grpo import pipeline_from_grpo_config
from llm.engines.verl_plugin import pipeline_from_verl_config
from tests.llm import trl_helpers as H
from tests.llm.verl_helpers import actor_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "engines.md"

# a value of its own for each setting, and the other settings it needs to take effect
TRL = {
    "scale_rewards": ("batch", {}),
    "epsilon": (0.15, {}),
    "epsilon_high": (0.31, {}),
    "delta": (2.5, {}),
    "off_policy_mask_threshold": (0.6, {}),
    "top_entropy_quantile": (0.3, {}),
    "beta": (0.07, {}),
    "use_bias_correction_kl": (False, {"beta": 0.07}),
    "entropy_coef": (0.02, {}),
    "entropy_target": (0.4, {"use_adaptive_entropy": True}),
    "entropy_coef_delta": (0.002, {"use_adaptive_entropy": True}),
}
VERL = {
    "actor.clip_ratio_low": (0.15, {}, "vanilla"),
    "actor.clip_ratio_high": (0.31, {}, "vanilla"),
    "actor.clip_ratio_c": (2.5, {}, "vanilla"),
    "actor.kl_loss_coef": (0.07, {"use_kl_loss": True}, "vanilla"),
    "actor.kl_loss_type": ("k2", {"use_kl_loss": True}, "vanilla"),
    "actor.entropy_coeff": (0.02, {}, "vanilla"),
    "policy_loss.clip_cov_ratio": (0.0003, {}, "clip_cov"),
    "policy_loss.clip_cov_lb": (0.5, {}, "clip_cov"),
    "policy_loss.clip_cov_ub": (7.0, {}, "clip_cov"),
    "policy_loss.kl_cov_ratio": (0.0004, {}, "kl_cov"),
    "policy_loss.ppo_kl_coef": (0.6, {}, "kl_cov"),
}
NOT_A_CONTROLLER = {"loss_type", "actor.loss_agg_mode"}  # the aggregation: the table above it


def rows() -> list[tuple[str, str, str, str]]:
    """(TRL name, verl name, controller, hyperparameter) of each row of the table."""
    text = DOC.read_text().split("## Settings, name by name", 1)[1].split("\n## ", 1)[0]
    out = []
    for trl, verl, ours in re.findall(r"^\| (.+?) \| (.+?) \| (.+?) \|$", text, flags=re.M)[2:]:
        name = lambda cell: "" if cell.strip() == "—" else re.match(r"`([^`]+)`", cell.strip()).group(1)  # noqa: E731
        spec = re.match(r"`(\w+)(?: (\w+)=)?`", ours.strip())
        out.append((name(trl), name(verl), spec.group(1), spec.group(2) or ""))
    return out


def test_the_table_is_found_and_every_setting_is_tested():
    table = rows()
    assert len(table) >= 15
    trl = {t for t, _, _, _ in table if t and t not in NOT_A_CONTROLLER}
    verl = {v for _, v, _, _ in table if v and v not in NOT_A_CONTROLLER and not v.startswith("algorithm.")}
    assert trl == set(TRL) and verl == set(VERL)


def _value(pipe, controller: str, key: str):
    found = [c for c in pipe.controllers if c.name == controller]
    assert found, f"no {controller} in {[c.name for c in pipe.controllers]}"
    return getattr(found[0], key)


@pytest.mark.parametrize("trl, controller, key", [(t, c, k) for t, _, c, k in rows() if t in TRL])
def test_each_trl_setting_lands_where_the_table_says(trl, controller, key, tmp_path):
    value, extra = TRL[trl]
    pipe = pipeline_from_grpo_config(H.config(tmp_path, **{**extra, trl: value}))
    assert _value(pipe, controller, key) == value


@pytest.mark.parametrize("verl, controller, key", [(v, c, k) for _, v, c, k in rows() if v in VERL])
def test_each_verl_setting_lands_where_the_table_says(verl, controller, key):
    value, extra, mode = VERL[verl]
    section, name = verl.split(".", 1)
    cfg = actor_config(mode, **extra)
    (cfg.policy_loss if section == "policy_loss" else cfg)[name] = value
    assert _value(pipeline_from_verl_config(cfg), controller, key) == value


def test_the_guides_engine_counts_are_the_hosts():
    """docs/guide.md's counts of the controllers each engine runs are computed here from the hosts, so a new
    controller (or a changed declaration) fails until the guide says it."""
    import controllers as C
    from llm.engines.trl_grpo import trl_host
    from llm.engines.verl_plugin import verl_host

    guide = (DOC.parent / "guide.md").read_text()

    def runs(host) -> int:
        return sum(C.contract.problem(C.get(n), host) is None for n in C.names())

    trl = re.search(r"(\d+) of the (\d+) controllers run \(`ref_kl` once", guide)
    verl = re.search(r"(\d+) of the (\d+) controllers with that trainer mode, (\d+) without it", guide)
    assert trl and verl
    total = len(C.names())
    assert (int(trl[1]), int(trl[2])) == (runs(trl_host(H.config("/tmp/unused", beta=0.1))), total)
    assert (int(verl[1]), int(verl[2]), int(verl[3])) == (
        runs(verl_host(trainer=True)),
        total,
        runs(verl_host(trainer=False)),
    )
