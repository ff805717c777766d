"""controllers.select_prompts: the offline band and the semantic-entropy curriculum that the simulator and
the trainer share."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import controllers as C

rates = st.lists(st.sampled_from([0.0, 0.125, 0.25, 0.5, 0.75, 1.0]), min_size=1, max_size=30)


@given(rates, st.data())
def test_band_keeps_exactly_the_prompts_inside_it_and_the_curriculum_is_a_stable_sort(rs, data):
    se = data.draw(st.lists(st.sampled_from([0.0, 0.5, 0.69, 1.1]), min_size=len(rs), max_size=len(rs)))
    lo = data.draw(st.sampled_from([0.0, 0.1, 0.25]))
    hi = data.draw(st.sampled_from([0.5, 0.75, 1.0]))
    rate, ent = torch.tensor(rs, dtype=torch.float64), torch.tensor(se, dtype=torch.float64)
    inside = [i for i, r in enumerate(rs) if lo <= r <= hi]
    if not inside:
        with pytest.raises(ValueError, match=r"^offline_band: got .*; allowed: a band that keeps a prompt"):
            C.select_prompts(rate, ent, (lo, hi))
        return
    assert C.select_prompts(rate, ent, (lo, hi)).tolist() == inside
    # differential: Python's sort is stable too
    assert C.select_prompts(rate, ent, (lo, hi), "semantic_entropy").tolist() == sorted(
        inside, key=lambda i: se[i]
    )
    assert C.select_prompts(rate, ent, (), "semantic_entropy").tolist() == sorted(
        range(len(rs)), key=lambda i: se[i]
    )
    assert C.select_prompts(rate).tolist() == list(range(len(rs)))


def test_bad_curriculum_is_named():
    with pytest.raises(ValueError, match=r"^curriculum: got 'hard'; allowed: none, semantic_entropy$"):
        C.select_prompts(torch.zeros(3), curriculum="hard")
