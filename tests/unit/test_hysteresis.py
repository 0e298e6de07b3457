"""The per-check state machine: rounds in, transitions out."""

import random

import pytest

from collector.state.hysteresis import Machine, Policy, Round


def feed(machine, rounds):
    return [t for r in rounds for t in machine.feed(r)]


def ok(t, loss=0.0, rtt=0.02, interval=10):
    return Round(time=t, ok=True, loss_ratio=loss, rtt_s=rtt, interval_s=interval)


def bad(t, reason="timeout", local_ok=None, interval=10):
    return Round(time=t, ok=False, reason=reason, local_ok=local_ok, loss_ratio=1.0,
                 interval_s=interval)


def test_first_round_sets_the_state_then_k_of_n_takes_it_down():
    m = Machine(Policy())
    [first] = m.feed(ok(0))
    assert (first.state, first.time) == ("up", 0)
    assert feed(m, [bad(10), bad(20)]) == []  # two of five: not yet
    [down] = m.feed(bad(30))
    assert (down.state, down.time) == ("down", 30)
    assert "3 of the last 4 rounds failed (timeout)" in down.cause


def test_recovery_needs_m_good_rounds_in_a_row():
    m = Machine(Policy())
    feed(m, [ok(0), bad(10), bad(20), bad(30)])
    assert feed(m, [ok(40), bad(50), ok(60)]) == []
    [up] = m.feed(ok(70))
    assert (up.state, up.time) == ("up", 70)


def test_ten_percent_packet_loss_over_600_rounds_never_goes_down():
    rng = random.Random(7)
    m = Machine(Policy(loss_pct=50))
    states = set()
    for i in range(600):
        received = sum(rng.random() >= 0.10 for _ in range(5))
        r = Round(time=i * 10.0, ok=received > 0, reason=None if received else "timeout",
                  loss_ratio=1 - received / 5, interval_s=10)
        states |= {t.state for t in m.feed(r)}
    assert states == {"up"}


def test_loss_over_the_threshold_is_degraded_not_down():
    m = Machine(Policy(loss_pct=5))
    transitions = feed(m, [ok(0), ok(10, loss=0.2), ok(20, loss=0.2), ok(30, loss=0.4)])
    assert [(t.state, t.time) for t in transitions] == [("up", 0), ("degraded", 30)]
    assert "over thresholds" in transitions[-1].cause
    assert [t.state for t in feed(m, [ok(40), ok(50)])] == ["up"]


def test_rtt_over_the_threshold_is_degraded():
    m = Machine(Policy(rtt_ms=100))
    transitions = feed(m, [ok(0, rtt=0.2), ok(10, rtt=0.2), ok(20, rtt=0.3)])
    assert [t.state for t in transitions] == ["degraded"]


def test_confirmation_rounds_bring_down_within_seconds():
    m = Machine(Policy())
    feed(m, [ok(0, interval=30), ok(30, interval=30)])
    # A failed round at 60, confirmed 2 s and 4 s later by the probe.
    transitions = feed(m, [bad(60, interval=30), bad(62, interval=30), bad(64, interval=30)])
    assert [(t.state, t.time) for t in transitions] == [("down", 64)]


def test_silence_becomes_unknown_after_the_allowance():
    m = Machine(Policy(silent_intervals=3))
    m.feed(ok(0))
    m.feed(ok(10))
    assert m.silence(now=39) is None
    unknown = m.silence(now=45)
    assert (unknown.state, unknown.time) == ("unknown", 40)
    assert m.silence(now=100) is None  # already unknown
    [back] = m.feed(bad(100))
    assert (back.state, back.time) == ("down", 100)  # the first round after no data


def test_a_gap_in_the_rounds_is_unknown_on_replay():
    m = Machine(Policy())
    transitions = feed(m, [ok(0), ok(10), ok(100)])
    assert [(t.state, t.time) for t in transitions] == [("up", 0), ("unknown", 40), ("up", 100)]


def test_local_faults_are_named_in_the_cause():
    m = Machine(Policy(fail_k=1, window_n=1, recover_m=1))
    m.feed(ok(0))
    [down] = m.feed(bad(10, local_ok=False))
    assert "fault inside the mission" in down.cause


def test_policy_must_be_consistent():
    with pytest.raises(ValueError):
        Policy(fail_k=6, window_n=5)


def test_a_changed_interval_is_not_silence():
    m = Machine(Policy())
    m.feed(Round(time=0, ok=True, interval_s=60))
    # The operator shortens the interval to 10 s: the next round comes 60 s later.
    assert m.feed(Round(time=60, ok=True, interval_s=10)) == []
    # Lengthened back to 60 s: the round 60 s after is not a gap either.
    assert m.feed(Round(time=120, ok=True, interval_s=60)) == []


def test_silence_counts_from_when_the_collector_began_to_listen():
    """Issue 12, case 10: the collector's own downtime is not the mission's silence. A
    collector that has listened only since 100 waits the allowance (30 s) from then; if
    still nothing came, the unknown period begins where the rounds stopped (10 + 30)."""
    m = Machine(Policy(silent_intervals=3))
    m.feed(ok(0))
    m.feed(ok(10))
    assert m.silence(now=104, heard_since=100) is None
    assert m.silence(now=130, heard_since=100) is None
    unknown = m.silence(now=131, heard_since=100)
    assert (unknown.state, unknown.time) == ("unknown", 40)
    assert "the collector itself was not listening until" in unknown.cause
    # Rounds after the start count as usual: silence from the newer of the two.
    m = Machine(Policy(silent_intervals=3))
    m.feed(ok(120))
    assert m.silence(now=149, heard_since=100) is None
    assert m.silence(now=151, heard_since=100).time == 150
