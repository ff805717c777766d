"""The benchmark's reference implementation is right (timings themselves are never asserted)."""

from bench import sim as bench_sim
from bench.__main__ import main


def test_numpy_reference_agrees_with_the_simulator():
    assert bench_sim.agreement(R=3, P=4, n=8, steps=5) < 1e-12


def test_bench_bad_input_is_one_line(capsys):
    assert main(["nosuch"]) == 2
    err = capsys.readouterr().err
    assert "name: got 'nosuch'; allowed: sim, all" in err and len(err.strip().splitlines()) == 1
