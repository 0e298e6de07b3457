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
    # Decided by the third failure, placed between the last success and the first one.
    assert (down.state, down.decided, down.after, down.before) == ("down", 30, 0, 10)
    assert down.time == 5
    assert "3 of the last 4 rounds failed (timeout)" in down.cause


def test_recovery_needs_m_good_rounds_in_a_row():
    m = Machine(Policy())
    feed(m, [ok(0), bad(10), bad(20), bad(30)])
    assert feed(m, [ok(40), bad(50), ok(60)]) == []
    [up] = m.feed(ok(70))
    # Between the last failure (50) and the first of the good rounds that decided it.
    assert (up.state, up.time, up.decided, up.after, up.before) == ("up", 55, 70, 50, 60)


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
    # Degraded from between the last good round and the first of the poor run.
    assert [(t.state, t.time) for t in transitions] == [("up", 0), ("degraded", 5)]
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
    assert [(t.state, t.decided, t.time) for t in transitions] == [("down", 64, 45)]


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


def icmp(t, sent=5, received=5, duration=2.0, rtt=0.01, interval=10):
    """An ICMP round: `sent` requests 0.5 s apart, the answered ones first (or last, as
    the machine reads a partly answered round while the path fails)."""
    ok_ = received > 0
    return Round(time=t, ok=ok_, reason=None if ok_ else "timeout",
                 loss_ratio=1 - received / sent, rtt_s=rtt if ok_ else None,
                 interval_s=interval, duration_s=duration, sent=sent, received=received)


def test_an_outage_is_placed_from_the_rounds_evidence_not_the_decision():
    """Issue 14, part 6: a cut at 35 s; rounds every 10 s, each sending 5 requests over
    2 s; confirmations 6 s apart. The clean round at 30 worked until 32 (its last request
    answered), the round at 40 failed from its start: the outage began in (32, 40)."""
    m = Machine(Policy())
    feed(m, [icmp(0), icmp(10), icmp(20), icmp(30)])
    transitions = feed(m, [icmp(40, received=0, duration=4), icmp(46, received=0, duration=4),
                           icmp(52, received=0, duration=4)])
    [down] = transitions
    assert (down.after, down.before, down.decided) == (pytest.approx(31.99), 40, 52)
    assert down.time == pytest.approx(35.995)
    # Restored at 71.2, during the round at 70: its first three requests were lost, the
    # last two answered. Its requests were as far apart as the clean rounds' (2 s less
    # the RTT over 4 gaps: 0.4975 s): lost until 70.995, answered from 71.4925.
    [up] = feed(m, [icmp(58, received=0, duration=4), icmp(64, received=0, duration=4),
                    icmp(70, received=2, duration=4), icmp(76)])
    assert (up.state, up.decided) == ("up", 76)
    assert (up.after, up.before) == (pytest.approx(70.995), pytest.approx(71.4925))


def test_a_cut_inside_a_round_is_placed_inside_it():
    """The round at 30 had its first two requests answered, the rest lost (4 s: three
    lost requests then its 2 s timeout): the cut came within it, not after it."""
    m = Machine(Policy())
    feed(m, [icmp(0), icmp(10), icmp(20), icmp(30, received=2, duration=4)])
    [down] = feed(m, [icmp(40, received=0, duration=4), icmp(46, received=0, duration=4),
                      icmp(52, received=0, duration=4)])
    # Requests 0.4975 s apart (the clean rounds'): answered until the second, lost from
    # the third.
    assert (down.after, down.before) == (pytest.approx(30.4975), pytest.approx(30.995))
    # Without a clean round to tell the spacing, the round's 4 s are shared by its 5
    # requests (an upper bound): answered up to 30 + 0.8, lost from 30 + 1.6.
    m = Machine(Policy())
    feed(m, [ok(20), icmp(30, received=2, duration=4)])
    [down] = feed(m, [icmp(40, received=0, duration=4), icmp(46, received=0, duration=4),
                      icmp(52, received=0, duration=4)])
    assert (down.after, down.before) == (pytest.approx(30.8), pytest.approx(31.6))


def test_a_change_is_never_placed_before_the_previous_one():
    m = Machine(Policy())
    feed(m, [ok(0), bad(10), bad(20), bad(30)])  # down, placed at 5
    [up] = feed(m, [ok(31), ok(32)])
    assert up.time >= 5 and up.after == 30 and up.before == 31
    # After unknown, the first round sets the state where it is: nothing came before it.
    m = Machine(Policy())
    [first] = m.feed(bad(0))
    assert (first.time, first.after, first.before) == (0, None, None)


def test_a_replay_from_any_round_places_as_the_live_machine_did():
    """A replay restarts from the state decided before a round and the window_n + 1 rounds
    before it (Timelines._machine_before); it must place every change as live."""
    rng = random.Random(3)
    rounds, t = [], 0.0
    for _ in range(300):
        received = rng.choice([5, 5, 5, 5, 0, 0, 0, 2, 3])
        rounds.append(icmp(t, received=received, duration=2.0 if received == 5 else 4.0))
        t += rng.choice([2.0, 6.0, 10.0])
    policy = Policy()
    live = Machine(policy)
    transitions, full = [], []
    for r in rounds:
        # A recovery keeps only recover_m rounds, which a replay's window does not know:
        # replays from where the live window was full.
        full.append(len(live.window) == policy.window_n)
        transitions += live.feed(r)
    assert len(transitions) > 10
    starts = [i for i in range(20, 300) if full[i]][::9]
    assert len(starts) > 10
    for start in starts:
        since = rounds[start].time
        kept = [tr for tr in transitions if tr.decided_at < since]
        m = Machine(policy)
        if kept:
            m.state, m.since = kept[-1].state, kept[-1].time
        clean = [r for r in rounds[:start] if r.received == r.sent]
        if clean:  # Store.clean_round_before
            m.learn(clean[-1])
        before = rounds[max(0, start - policy.window_n - 1):start]
        for i, r in enumerate(before):
            cls = m.classify(r)
            m.note(r, cls)
            if i >= len(before) - policy.window_n:
                m.window.append(cls)
            m.last_time, m.interval_s = r.time, r.interval_s
        replayed = [tr for r in rounds[start:] for tr in m.feed(r)]
        assert replayed == [tr for tr in transitions if tr.decided_at >= since], start


def test_placement_off_keeps_a_change_at_the_round_that_decided_it():
    m = Machine(Policy(placed=False))
    [down] = feed(m, [ok(0), bad(10), bad(20), bad(30)])[1:]
    assert (down.time, down.after, down.before) == (30, None, None)
