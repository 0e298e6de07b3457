"""The confirmed-state holder the SNMP agent and notifier share, and which changes notify."""

from datetime import UTC, datetime, timedelta

from probes.checkstate import CheckStates, State
from probes.snmp.notify import notification_of
from unhindered.checks.tcp import TcpCheck
from unhindered.measurement import FailureReason, IcmpFigures, IcmpMeasurement, TcpFigures
from unhindered.measurement import TcpMeasurement as Tcp

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def tcp(check_id: str, ok: bool, at: datetime, group: str = "internet") -> Tcp:
    return Tcp(probe_id="p", mission="FRA", check_id=check_id, group=group,
               target="192.0.2.1", started_at=at, duration_s=0.01, ok=ok,
               reason=None if ok else FailureReason.TIMEOUT,
               figures=TcpFigures(connect_s=0.01 if ok else None))


def icmp(loss_ratio: float, at: datetime) -> IcmpMeasurement:
    received = round(4 * (1 - loss_ratio))
    samples = [0.01] * received
    stats = dict(rtt_min_s=0.01, rtt_median_s=0.01, rtt_mean_s=0.01, rtt_max_s=0.01) \
        if received else {}
    return IcmpMeasurement(
        probe_id="p", mission="FRA", check_id="ping", target="192.0.2.1", started_at=at,
        duration_s=0.1, ok=received > 0, reason=None if received else FailureReason.TIMEOUT,
        figures=IcmpFigures(sent=4, received=received, loss_ratio=loss_ratio,
                            samples_s=samples, **stats))


def test_states_change_only_when_confirmed_and_remember_when_it_began():
    states, changes = CheckStates(), []
    states.listeners.append(changes.append)
    check = TcpCheck(id="web", kind="tcp", target="192.0.2.1", port=443)
    states.configure([check])
    (row,) = states.rows()
    assert (row.state, row.newest, states.access) == (State.UNKNOWN, None, State.UNKNOWN)

    states.measured(tcp("web", True, T0), seq=1)
    states.confirmed(tcp("web", True, T0), T0)
    assert (row.state, row.since, row.newest_seq) == (State.UP, T0, 1)
    failed_at = T0 + timedelta(seconds=30)
    states.measured(tcp("web", False, failed_at), seq=2)  # not yet confirmed
    assert row.state == State.UP and row.newest.ok is False
    states.confirmed(tcp("web", False, failed_at + timedelta(seconds=2)), failed_at)
    assert (row.state, row.since) == (State.DOWN, failed_at)
    assert [(c.check and c.check.check_id, c.old, c.new) for c in changes] == [
        ("web", State.UNKNOWN, State.UP), (None, State.UNKNOWN, State.UP),
        ("web", State.UP, State.DOWN), (None, State.UP, State.DOWN)]


def test_loss_makes_a_success_degraded():
    states = CheckStates()
    states.confirmed(icmp(0.25, T0), T0)
    assert states.checks["ping"].state == State.DEGRADED
    states.confirmed(icmp(0.0, T0), T0)
    assert states.checks["ping"].state == State.UP


def test_access_is_the_worst_check_leaving_out_the_local_side():
    states = CheckStates()
    states.confirmed(tcp("a", True, T0), T0)
    states.confirmed(tcp("local-gateway", False, T0, group="local"), T0)
    assert states.access == State.UP
    states.confirmed(icmp(0.5, T0), T0)
    assert states.access == State.DEGRADED
    states.confirmed(tcp("b", False, T0 + timedelta(seconds=1)), T0 + timedelta(seconds=1))
    assert (states.access, states.access_since) == (State.DOWN, T0 + timedelta(seconds=1))


def test_a_reload_keeps_unchanged_rows_and_renumbers_changed_ones():
    states = CheckStates()
    web = TcpCheck(id="web", kind="tcp", target="192.0.2.1", port=443)
    other = TcpCheck(id="other", kind="tcp", target="192.0.2.2", port=443)
    states.configure([web, other])
    states.confirmed(tcp("web", True, T0), T0)
    index = states.checks["web"].index
    states.configure([web, TcpCheck(id="new", kind="tcp", target="192.0.2.3", port=80)])
    assert states.checks["web"].index == index and states.checks["web"].state == State.UP
    assert set(states.checks) == {"web", "new"}
    moved = TcpCheck(id="web", kind="tcp", target="192.0.2.9", port=443)
    states.configure([moved])
    assert states.checks["web"].index != index and states.checks["web"].state == State.UNKNOWN


def test_a_failing_listener_does_not_stop_the_others():
    states, seen = CheckStates(), []

    def broken(_change):
        raise RuntimeError("boom")

    states.listeners += [broken, seen.append]
    states.confirmed(tcp("web", False, T0), T0)
    assert [c.new for c in seen] == [State.DOWN, State.DOWN]


def test_which_changes_notify():
    states, changes = CheckStates(), []
    states.listeners.append(changes.append)
    for loss in (0.0, 0.5, 1.0, 0.0, 1.0):  # up, degraded, down, up, down
        states.confirmed(icmp(loss, T0), T0)
    names = [notification_of(c) for c in changes if c.check is not None]
    # unknown->up, up->degraded (nothing), degraded->down, down->up, up->down
    assert names == ["checkUp", None, "checkDown", "checkUp", "checkDown"]
    access = [notification_of(c) for c in changes if c.check is None]
    assert access == ["accessRestored", None, "accessLost", "accessRestored", "accessLost"]
