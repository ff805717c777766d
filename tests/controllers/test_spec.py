"""controllers.spec: one way to write a pipeline, read the same by every host."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import controllers as C
from controllers import spec

NAMES = [n for n in C.names() if n != "pi_control"]
values = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(-1e6, 1e6, allow_nan=False).filter(lambda x: x != 0 or str(x) == "0.0"),
    st.booleans(),
    st.none(),
    st.sampled_from(["k3", "token-mean", "group", "a_b"]),
    st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
entries = st.lists(
    st.tuples(
        st.sampled_from(NAMES),
        st.dictionaries(st.from_regex(r"[a-z][a-z_0-9]{0,8}", fullmatch=True), values, max_size=3),
    ),
    max_size=5,
)


@given(entries)
def test_text_and_parse_are_inverse(es):
    """parse(text(e)) == e for every spec a list of entries can hold (values: numbers, bools, None, words,
    tuples); the words split the same whether given as one string or as separate arguments."""
    t = spec.text(es)
    assert spec.parse(t) == es
    assert spec.parse(t.split()) == es


def test_inline_hyperparameters_and_hp_entries():
    es = spec.parse("grpo scale=none ppo_clip eps_hi=0.28 eps_lo=0.2 clip_cov frac=2e-4")
    assert es == [("grpo", {"scale": "none"}), ("ppo_clip", {"eps_hi": 0.28, "eps_lo": 0.2}),
                  ("clip_cov", {"frac": 2e-4})]  # fmt: skip
    hp = spec.hp_items(["ppo_clip.eps_hi=0.3", "clip_cov.lb=1"], [n for n, _ in es])
    pipe = spec.build(es, hp)
    assert pipe.controllers[1].eps_hi == 0.3 and pipe.controllers[1].eps_lo == 0.2  # --hp wins over inline
    assert pipe.controllers[2].frac == 2e-4 and pipe.controllers[2].lb == 1
    assert spec.build("grpo ppo_clip eps_hi=0.3").controllers[1] == pipe.controllers[1]
    nested = spec.parse(["pi_control inner=entropy_bonus inner_hp={'coef':0.01} target=0.4"])
    assert nested == [("pi_control", {"inner": "entropy_bonus", "inner_hp": {"coef": 0.01}, "target": 0.4})]
    assert spec.build(nested).controllers[0].inner_hp == {"coef": 0.01}
    assert len(spec.build("").controllers) == 0


@pytest.mark.parametrize(
    "words, message",
    [
        ("eps=1 grpo", "controllers: got 'eps=1' before any controller name; allowed: NAME [KEY=VALUE ...]"),
        ("grpo nosuch", "controllers: unknown controller 'nosuch'; allowed: acc_filter, "),
        ("grpo =3", "controllers: got '=3'; allowed: KEY=VALUE after a controller name"),
    ],
)
def test_bad_specs_are_one_line(words, message):
    with pytest.raises(ValueError) as e:
        spec.parse(words)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "items, message",
    [
        (["ppo_clip.eps_hi"], "hp: got 'ppo_clip.eps_hi'; allowed: NAME.KEY=VALUE"),
        (["eps_hi=1"], "hp: got 'eps_hi=1'; allowed: NAME.KEY=VALUE"),
        (
            ["clip_cov.frac=1"],
            "hp: got 'clip_cov.frac=1'; allowed: hyperparameters of the chosen controllers (grpo)",
        ),
    ],
)
def test_bad_hp_entries_are_one_line(items, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        spec.hp_items(items, ["grpo"])


def test_a_value_a_spec_cannot_write_is_refused():
    with pytest.raises(ValueError, match=r"ppo_clip.note: got 'a b'; allowed: a value a spec can write"):
        spec.text([("ppo_clip", {"note": "a b"})])
