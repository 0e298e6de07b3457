"""A retired check in the state machine (issue 12, case 7): never silent, and revived by
its next round as after no data. Its history with the store: tests/integration/
test_check_lifecycle.py."""

from collector.state.hysteresis import Machine, Policy
from tests.unit.test_hysteresis import bad, feed, ok


def test_a_retired_check_is_never_silent():
    m = Machine(Policy())
    feed(m, [ok(0), ok(10)])
    [retired] = m.retire(15, "probe fra-1 no longer runs this check")
    assert (retired.state, retired.time) == ("retired", 15)
    assert m.silence_deadline() is None
    assert m.silence(10_000) is None
    assert m.retire(20, "again") == []  # already retired: nothing changes


def test_silence_before_the_retirement_stays_unknown_up_to_it():
    m = Machine(Policy(silent_intervals=3))
    feed(m, [ok(0), ok(10)])
    unknown, retired = m.retire(100, "removed")
    assert [(t.state, t.time) for t in (unknown, retired)] == [("unknown", 40),
                                                               ("retired", 100)]


def test_a_round_after_the_retirement_revives_the_check_directly():
    m = Machine(Policy())
    feed(m, [bad(0), bad(10), bad(20)])
    assert m.state == "down"
    m.retire(25, "removed")
    [revived] = m.feed(ok(500))
    assert (revived.state, revived.time) == ("up", 500)
    assert revived.cause.startswith("first result after the check was retired")
    # The failures before the retirement are forgotten: one more failure is not down.
    assert m.feed(bad(510)) == []
