"""The controller contract (controllers.contract), over the whole registry: what every controller declares
is what it reads, its stage is honest, a split pipeline computes the whole one's loss, and a host that
cannot feed a controller says so in one line."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import controllers as C
from controllers.base import KINDS, STAGES
from controllers.contract import ALWAYS, FIELDS, Host, check
from tests.controllers.helpers import batches

OPTIONAL = list(FIELDS)  # every optional TokenBatch field a host may fill


def _strip(batch: C.TokenBatch, keep) -> C.TokenBatch:
    return batch.replace(**{f: None for f in OPTIONAL if f not in keep})


def _adv(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return batch.replace(adv=torch.randn(batch.logp.shape, generator=g, dtype=batch.logp.dtype) * batch.mask)


@pytest.mark.parametrize("name", C.names())
def test_declarations_are_well_formed(name):
    c = C.get(name)
    assert c.stage() in STAGES
    assert c.kind in KINDS
    assert c.needs() <= set(FIELDS), c.needs() - set(FIELDS)
    assert isinstance(c.whole_groups(), bool) and isinstance(c.separable(), bool)
    acts = c.acts_on()
    # kind is the README's grouping; it must agree with what the controller overrides
    expected = {"reward": "rewards", "advantage": "advantages"}.get(c.kind, "terms")
    if c.kind != "wrapper":
        assert expected in acts, (c.kind, acts)
    if c.kind in ("weight", "surrogate", "penalty", "extra", "batch"):
        assert not acts & {"rewards", "advantages"}, acts


@pytest.mark.parametrize("name", C.names())
@settings(max_examples=15)
@given(batch=batches(max_b=8, max_t=5, off_policy=True, full=True))
def test_declared_needs_are_all_it_reads_and_each_is_real(name, batch):
    """With only the declared optional fields the controller runs; without any one of them it stops with
    a message naming that field (so a host that meets the contract never fails later)."""
    c = C.get(name)
    needs = c.needs()
    b = _adv(_strip(batch, needs))
    loss, metrics = C.policy_loss(b, [c], generator=torch.Generator().manual_seed(0))
    assert math.isfinite(float(loss.detach())) and all(math.isfinite(v) for v in metrics.values())
    for f in sorted(needs - set(ALWAYS)):
        with pytest.raises(ValueError, match=f"^{f}: None; allowed: "):
            C.policy_loss(b.replace(**{f: None}), [c], generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", C.names())
@settings(max_examples=10)
@given(batch=batches(max_b=8, max_t=5, off_policy=True, full=True))
def test_sampling_stage_controllers_only_shape_rewards_and_advantages(name, batch):
    c = C.get(name)
    if c.stage() != "sampling":
        return
    t = c.terms(_adv(batch), c.init(), torch.Generator().manual_seed(0))
    assert (t.surrogate, t.weight, t.penalty, t.extra, t.mask) == (None,) * 5


def _ordered_pipeline(name):
    """``name`` with grpo (and ppo_clip unless ``name`` brings a surrogate), sampling-stage ones first."""
    items = [C.get(name)]
    if name != "grpo":
        items.append(C.get("grpo"))
    if not C.get(name).supplies_surrogate():
        items.append(C.get("ppo_clip", eps_hi=0.28))
    items.sort(key=lambda c: c.stage() == "loss")  # stable: the order within a stage is kept
    return C.Pipeline(items)


@pytest.mark.parametrize("name", C.names())
@settings(max_examples=10)
@given(batch=batches(max_b=8, max_t=5, off_policy=True, full=True))
def test_a_split_pipeline_computes_the_whole_loss(name, batch):
    """sampling.advantages(batch) once, then the loss stage on a batch holding them = the whole pipeline."""
    pipe = _ordered_pipeline(name)
    sampling, loss_stage = pipe.split()
    assert [c.name for c in sampling.controllers + loss_stage.controllers] == [
        c.name for c in pipe.controllers
    ]
    b = _adv(batch)
    whole, m_whole = C.policy_loss(b, pipe, generator=torch.Generator().manual_seed(3))
    adv = sampling.advantages(b)
    part, m_part = C.policy_loss(b.replace(adv=adv), loss_stage, generator=torch.Generator().manual_seed(3))
    assert float(part.detach()) == pytest.approx(float(whole.detach()), rel=1e-12, abs=1e-12)
    (g1,) = torch.autograd.grad(whole, b.logp)
    (g2,) = torch.autograd.grad(part, b.logp)
    torch.testing.assert_close(g2, g1, rtol=1e-12, atol=1e-12)
    for k in ("policy/entropy", "policy/cov_logp_adv", "adv/mean", "loss/pg"):
        assert m_part[k] == pytest.approx(m_whole[k], rel=1e-12, abs=1e-12)


def test_split_refuses_an_order_it_would_change():
    with pytest.raises(
        ValueError, match=r"^controllers: 'grpo' \(sampling stage\) comes after 'entropy_adv'"
    ):
        C.Pipeline([C.get("entropy_adv"), C.get("grpo")]).split()
    pi = C.get("pi_control", inner="fork_bonus", knob="bonus", knob_min=0.0, knob_max=1.0)
    with pytest.raises(ValueError, match=r"^controllers: 'pi_control' shapes rewards inside the loss"):
        C.Pipeline([pi, C.get("grpo")]).split()


def test_separable_follows_the_hyperparameters():
    assert C.get("grpo").separable() and not C.get("grpo", scale="batch").separable()
    for name in ("unlikeliness", "seed_grpo"):
        assert C.get(name).separable() and not C.get(name, scale="batch").separable()
    assert C.get("diversity_reward").separable() and not C.get("diversity_reward", scope="batch").separable()
    bonus = C.get("entropy_bonus")
    assert bonus.separable(equal_lengths=True) and not bonus.separable(equal_lengths=False)
    assert C.get("entropy_bonus", agg="seq-mean-token-mean").separable(equal_lengths=False)


def test_pi_control_declares_its_inner_controllers_needs():
    pi = C.get("pi_control", inner="siren", knob="coef", knob_min=0.0, knob_max=0.1)
    assert pi.needs() == {"entropy_topp"} and pi.stage() == "loss" and not pi.separable()


# -- hosts ----------------------------------------------------------------------------------------------


HOST = Host(
    name="the test host",
    provides=frozenset({"reward", "answer"}),
    how={"step_correct": "--judge yes"},
    cannot={"value": "no critic"},
    group_size=4,
)


@pytest.mark.parametrize(
    ("names", "hp", "needle"),
    [
        (["grpo", "step_credit"], {}, r"^controllers: 'step_credit' needs step_correct \(.*\); the test host provides it with --judge yes$"),
        (["vapo"], {}, r"^controllers: 'vapo' needs value \(.*\), which the test host cannot provide \(no critic\); allowed: "),
        (["grpo", "ref_kl"], {}, r"^controllers: 'ref_kl' needs ref_logp \(.*\), which the test host cannot provide \(it has no source for it\)"),
    ],
)  # fmt: skip
def test_a_host_refuses_what_it_cannot_feed_in_one_line(names, hp, needle):
    with pytest.raises(ValueError, match=needle) as e:
        check(C.Pipeline([C.get(n) for n in names]), HOST)
    assert "\n" not in str(e.value)


def test_a_host_with_groups_of_one_refuses_group_comparisons():
    one = Host(name="h", provides=frozenset({"reward"}), group_size=1, group_option="--group-size")
    with pytest.raises(ValueError, match=r"^--group-size: got 1; allowed: an integer >= 2 \('rloo' compares"):
        check(C.Pipeline([C.get("rloo")]), one)
    check(C.Pipeline([C.get("psr")]), one)  # no group comparison: fine
    check(C.Pipeline([C.get("grpo")]), HOST)


def test_a_host_declares_only_known_fields():
    with pytest.raises(ValueError, match=r"^Host\.provides: got \['critic'\]"):
        Host(name="h", provides=frozenset({"critic"}))


@given(st.lists(st.sampled_from(C.names()), min_size=1, max_size=4, unique=True))
def test_pipeline_needs_are_the_union_of_its_controllers(names):
    if sum(C.get(n).supplies_surrogate() for n in names) > 1:
        return  # refused when built (test_two_surrogates_are_refused_when_the_pipeline_is_built)
    pipe = C.Pipeline([C.get(n) for n in names])
    assert pipe.needs() == frozenset().union(*(C.get(n).needs() for n in names))
    assert pipe.whole_groups() == any(C.get(n).whole_groups() for n in names)


@pytest.mark.parametrize("name", [n for n in C.names() if C.get(n).stage() == "sampling"])
@settings(max_examples=10)
@given(batch=batches(max_b=8, max_t=5, off_policy=True, full=True))
def test_sampling_stage_reads_only_the_token_values_it_declares(name, batch):
    """A host whose sampling stage sees rewards only (verl's advantage estimators) relies on this: the
    values of logp, old_logp and entropy that a sampling-stage controller does not declare in
    sampling_reads() do not change its rewards or advantages."""
    c = C.get(name)
    b = _adv(batch)
    pipe = C.Pipeline([c])
    base = pipe.advantages(b)
    g = torch.Generator().manual_seed(3)
    for f in ("logp", "old_logp", "entropy"):
        if f in c.sampling_reads():
            continue
        other = getattr(b, f).detach() - torch.rand(b.logp.shape, generator=g, dtype=b.logp.dtype)
        if f == "entropy":
            other = other.abs()
        changed = pipe.advantages(b.replace(**{f: other}))
        assert torch.equal(changed, base), f


@pytest.mark.parametrize("name", C.names())
def test_stateless_controllers_do_not_change_state(name):
    """stateful() is False only when step() leaves every value the loss reads alone: over a few steps
    with varying statistics, a stateless controller's terms on a fixed batch stay the same."""
    c = C.get(name)
    if c.stateful():
        return
    st = c.init()
    for h in (0.05, 3.0, 0.5):
        stats = {"policy/entropy": h, "train/progress_frac": h / 3}
        stats.update({f"ctrl/{c.name}/{k}": h for k in ("h_masked", "kl", "inert")})
        st = c.step(st, stats)
    strip = {k: v for k, v in st.items() if k not in ("inert_steps", "since_reset", "n_resets", "due")}
    init = {k: v for k, v in c.init().items() if k in strip}
    assert strip == init, (st, c.init())


@pytest.mark.parametrize("name", C.names())
@settings(max_examples=10)
@given(batch=batches(max_b=8, max_t=5, off_policy=True, full=True))
def test_supplies_surrogate_is_honest(name, batch):
    """A controller returns a PG surrogate from ``terms`` exactly when it declares it does."""
    c = C.get(name)
    t = c.terms(_adv(batch), c.init(), torch.Generator().manual_seed(0))
    assert (t.surrogate is not None) == c.supplies_surrogate(), (name, c.supplies_surrogate())


def test_two_surrogates_are_refused_when_the_pipeline_is_built():
    owners = [n for n in C.names() if C.get(n).supplies_surrogate()]
    assert {"ppo_clip", "nft", "luffy"} <= set(owners)
    with pytest.raises(
        ValueError,
        match=r"^controllers: 'ppo_clip' and 'nft' each define the PG surrogate; allowed: at most one",
    ):
        C.Pipeline([C.get("grpo"), C.get("ppo_clip"), C.get("nft")])
    with pytest.raises(ValueError, match="each define the PG surrogate"):
        C.Pipeline([C.get("pi_control", inner="ppo_clip", knob="eps_hi"), C.get("nft")])


def _signal_batch(adv: float = 0.0) -> C.TokenBatch:
    """Every optional field filled; rewards differ inside each group (so a group comparison has a signal)."""
    x = torch.linspace(-2, -0.1, 12, dtype=torch.float64).reshape(4, 3).requires_grad_()
    b = C.TokenBatch.from_sequences(
        x, torch.ones(4, 3), reward=torch.tensor([1.0, 0.0, 1.0, 0.0]), group=torch.tensor([0, 0, 1, 1])
    )
    return b.replace(
        old_logp=x.detach() - 0.05, adv=torch.full((4, 3), adv, dtype=torch.float64),
        entropy=torch.ones(4, 3, dtype=torch.float64), ref_logp=x.detach(), entropy_topp=torch.ones(4, 3, dtype=torch.float64),
        answer=torch.tensor([0, 1, 0, 0]), step_correct=torch.ones(4, 3, dtype=torch.float64),
        guide=torch.tensor([False, False, False, False]), embedding=torch.eye(4, dtype=torch.float64),
        value=torch.full((4, 3), 0.5, dtype=torch.float64), length=torch.full((4,), 3.0, dtype=torch.float64),
    )  # fmt: skip


@pytest.mark.parametrize("name", C.names())
def test_sources_signal_is_honest(name):
    """A controller that says it makes the learning signal does so from rewards on zero advantages; one that
    does not leaves zero advantages at zero (so a host starting from zeros must refuse it alone)."""
    c = C.get(name)
    b = _signal_batch()
    adv = C.Pipeline([c]).advantages(b)
    if c.sources_signal():
        if "advantages" in c.acts_on():
            assert adv.abs().max() > 0, name
        else:  # a surrogate that reads rewards: its policy-gradient term moves the policy
            loss, _ = C.policy_loss(b, [c], generator=torch.Generator().manual_seed(0))
            (g,) = torch.autograd.grad(loss, b.logp)
            assert g.abs().max() > 0, name
    else:
        assert float(adv.abs().max()) == 0.0, name


def test_a_host_starting_from_zero_advantages_refuses_a_pipeline_without_a_source():
    host = Host(name="h", provides=frozenset(FIELDS))
    for names in (["ppo_clip"], ["ppo_clip", "clip_cov", "entropy_adv"], []):
        with pytest.raises(
            ValueError, match=r"^controllers: got .*none of which makes advantages from rewards"
        ):
            check(C.Pipeline([C.get(n) for n in names]), host)
    check(C.Pipeline([C.get("grpo"), C.get("ppo_clip")]), host)
    check(C.Pipeline([C.get("nft")]), host)
    # a host with its own advantages (verl's estimator, an exact update) takes loss-only pipelines
    check(
        C.Pipeline([C.get("ppo_clip")]), Host(name="h", provides=frozenset(FIELDS), own_advantages="its own")
    )


def test_tokenbatch_fields_are_declared_once():
    """Each TokenBatch field carries its shape and (if a controller may need it) its words; the contract's
    vocabulary and the batch's validation lists are made from them, and the docstring documents each."""
    import dataclasses

    from controllers import batch as B

    fields = dataclasses.fields(C.TokenBatch)
    assert all(f.metadata["shape"] in B.SHAPES for f in fields)
    assert FIELDS == {f.name: f.metadata["need"] for f in fields if f.metadata["need"]}
    assert set(ALWAYS) | set(FIELDS) == {f.name for f in fields}  # every field is always there or needed
    assert set(B._TOKEN_FIELDS) == {f.name for f in fields if f.default is dataclasses.MISSING}
    assert all(f"{f.name}: (B" in C.TokenBatch.__doc__ for f in fields)
