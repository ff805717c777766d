"""theory.verify and the ``python -m theory verify`` command."""

import json
import subprocess
import sys

import numpy as np
import pytest

from theory import dynamics, qae, verify


@pytest.fixture(scope="module")
def rows():
    return verify.run_all(seed=0)


def test_every_must_hold_row_holds(rows):
    bad = [(r.id, r.measured) for r in rows if not r.ok]
    assert not bad


def test_rows_cover_the_issue(rows):
    ids = {r.id for r in rows}
    assert {
        "L1",
        "L2",
        "P1",
        "T1",
        "T2",
        "S4",
        "U5",
        "C6",
        "N7",
        "E8a",
        "E8b",
        "E8c",
        "K9",
        "Q11",
        "Q12",
        "Q13a",
        "Q13b",
        "Q14",
        "PI1",
        "PI2",
    } <= ids


def test_prop42_verdict_is_surrogate_only(rows):
    row = next(r for r in rows if r.id == "Q13b")
    assert row.verdict == verify.SURROGATE


def test_lemma1_check_can_fail(monkeypatch):
    # A first-order formula that is wrong (missing the centring of log π) must be caught.
    def wrong(logits, dz):
        z = np.asarray(logits, float)
        p = np.exp(z - np.logaddexp.reduce(z))
        return -(p * np.log(p) * dz).sum()

    monkeypatch.setattr(dynamics, "first_order_dH", wrong)
    (row,) = verify.run_all(seed=0, only=["L1"])
    assert row.verdict == verify.FAILS and not row.ok


def test_qae_identity_check_can_fail(monkeypatch):
    monkeypatch.setattr(qae, "qae_identity_gap", lambda z, r, b, lr: 0.0 * b)
    (row,) = verify.run_all(seed=0, only=["Q13a"])
    assert row.verdict == verify.FAILS


def test_unknown_id():
    with pytest.raises(ValueError, match="only: unknown row ids \\['XX'\\]"):
        verify.run_all(only=["XX"])


def test_cli_writes_json(tmp_path):
    out = tmp_path / "v.json"
    proc = subprocess.run(
        [sys.executable, "-m", "theory", "verify", "--quiet", "--only", "Q11", "PI1", "--json", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Q11" in proc.stdout and "holds" in proc.stdout
    data = json.loads(out.read_text())
    assert [r["id"] for r in data["rows"]] == ["Q11", "PI1"]


def test_cli_bad_only():
    proc = subprocess.run(
        [sys.executable, "-m", "theory", "verify", "--only", "NOPE"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "--only: unknown row ids ['NOPE']" in proc.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["verify", "--seed", "-1"], "error: --seed: got -1; allowed: an integer >= 0"),
        (["verify", "--json", "/proc/x.json"], "error: --json: cannot write in /proc ("),
    ],
)  # fmt: skip
def test_cli_bad_input_is_one_line_before_work(argv, message, capsys):
    from theory.__main__ import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "checking" not in err
