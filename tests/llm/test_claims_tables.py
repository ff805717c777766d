"""The committed claim tables: each is what its committed per-seed series give when re-judged, no row
says "fails" unless an interval of its own excludes the claimed effect, and README's tables are generated
from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entrolab.common.verdict import FAILS, MIN_SEEDS
from llm import verify as V

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "guide.md"
TABLES = {
    "tiny": ROOT / "docs" / "claims" / "llm_verify_tiny.json",
    "smollm2": ROOT / "docs" / "claims" / "llm_verify_smollm2.json",
}
SERIES = {"tiny": ROOT / "docs" / "claims" / "llm_series_tiny.json.gz"}
COMPARED = ("id", "claim", "verdict", "measured", "n", "tests", "paper", "details")


def _table(tier: str) -> dict:
    return json.loads(TABLES[tier].read_text())


@pytest.mark.parametrize("tier", sorted(SERIES))
def test_the_committed_table_is_its_committed_series_rejudged(tier, tmp_path):
    out = tmp_path / "t.json"
    assert V.main(["--rejudge", str(SERIES[tier]), "--json", str(out)]) == 0
    again, committed = json.loads(out.read_text()), _table(tier)
    assert [r["id"] for r in again["rows"]] == [r["id"] for r in committed["rows"]]
    for a, c in zip(again["rows"], committed["rows"], strict=True):
        for k in COMPARED:
            assert a[k] == c[k], (a["id"], k)
    assert committed["code"] == again["code"] and committed["budget"] == "full"
    assert {"git_sha", "git_dirty", "versions", "model"} <= set(committed)


def test_a_table_without_series_is_rejudged_by_the_minimum_seed_rule_only():
    committed = _table("smollm2")
    assert committed["rows"] == V.rejudge_table(committed)["rows"]  # idempotent: already re-judged
    assert all(r["verdict"] == "inconclusive" for r in committed["rows"] if r["n"] < MIN_SEEDS)


@pytest.mark.parametrize("tier", sorted(TABLES))
def test_no_row_fails_unless_its_interval_excludes_the_claimed_effect(tier):
    for r in _table(tier)["rows"]:
        if r["verdict"] != FAILS:
            continue
        failing = [t for t in r.get("tests", []) if not t.get("stress") and t["verdict"] == FAILS]
        assert failing, r["id"]
        for t in failing:
            assert t["n"] >= MIN_SEEDS, r["id"]
            if t["kind"] == "greater":
                assert t["hi"] < t["bar"], r["id"]
            elif t["kind"] == "less":
                assert t["lo"] > t["bar"], r["id"]
            else:
                assert t["lo"] > t["null"] + t["margin"] or t["hi"] < t["null"] - t["margin"], r["id"]


def test_the_guides_tables_are_generated_from_the_committed_data():
    from entrolab import readme

    text = GUIDE.read_text()
    for name in ("sim-verify", "claims-matrix", *(f"llm-claims:{t}" for t in readme.TABLES)):
        assert f"<!-- {name} -->" in text and f"<!-- /{name} -->" in text, name
    assert readme.render(text) == text, (
        "README's tables differ from their data: run python -m entrolab.readme"
    )
    assert readme.main(["--check"]) == 0


def test_inconclusive_rows_say_how_many_seeds_would_decide():
    for r in _table("tiny")["rows"]:
        for t in r.get("tests", []):
            if t["verdict"] == "inconclusive" and t["n"] >= 2 and t["estimate"] is not None:
                assert "seeds" in t["reason"], (r["id"], t["what"])
