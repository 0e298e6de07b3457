"""/metrics keeps each check's lines between renders: what it serves must always equal a
render from scratch, whatever changed in between (a round, a state, a check's target)."""

from types import SimpleNamespace

from collector.metrics.exposition import CheckLines, fleet_chunks
from collector.state.fleet import FleetState
from tests.unit.test_measurement import icmp, measurement


def fleet_with(*results):
    state = FleetState()
    for r in results:
        state.apply(measurement.validate_python(r))
    return state


class FakeTimelines:
    """What fleet_chunks reads of Timelines: the check machines and mission access."""

    def __init__(self, state_of: dict) -> None:
        self.machines = {key: SimpleNamespace(state=s, since=since)
                         for key, (s, since) in state_of.items()}
        self.access: dict = {}


def timelines(state_of: dict) -> FakeTimelines:
    return FakeTimelines(state_of)


def assert_same_as_fresh(state, view, cached: CheckLines) -> str:
    served = render_fleet(state, view, cached)
    assert served == render_fleet(state, view, CheckLines())
    return served


def test_cached_lines_follow_every_change():
    state = fleet_with(icmp(seq=1), icmp(seq=2, check_id="other"))
    states = {("FRA", "internet-icmp"): ("up", 1.0), ("FRA", "other"): ("up", 1.0)}
    cached = CheckLines()
    first = assert_same_as_fresh(state, timelines(states), cached)
    assert 'unhindered_check_rounds_total{check="other",mission="FRA"} 1.0' in first

    # A new, failed round of one check: its lines change, the other's stay.
    state.apply(measurement.validate_python(icmp(
        seq=3, ok=False, reason="timeout", started_at="2026-01-15T10:01:00Z",
        figures={"sent": 3, "received": 0, "loss_ratio": 1.0})))
    text = assert_same_as_fresh(state, timelines(states), cached)
    assert 'unhindered_check_failure_reason{check="internet-icmp",mission="FRA",' \
           'reason="timeout"} 1.0' in text
    assert 'unhindered_check_rtt_median_seconds{check="internet-icmp"' not in text
    assert 'unhindered_check_rtt_median_seconds{check="other",mission="FRA"} 0.021' in text

    # A state change with no new round (silence turned the check unknown).
    states[("FRA", "other")] = ("unknown", 99.0)
    text = assert_same_as_fresh(state, timelines(states), cached)
    assert 'unhindered_check_state{check="other",mission="FRA",state="unknown"} 1.0' in text
    assert 'unhindered_check_state_since_timestamp_seconds{check="other",mission="FRA"} 99.0' \
        in text

    # The operator pointed the check at another target.
    state.apply(measurement.validate_python(icmp(
        seq=4, check_id="other", target="198.19.0.9", started_at="2026-01-15T10:02:00Z")))
    text = assert_same_as_fresh(state, timelines(states), cached)
    assert 'target="198.19.0.9"' in text and 'target="198.19.0.1"' in text


def test_every_family_keeps_its_samples_together():
    state = fleet_with(*(icmp(seq=i, check_id=f"c{i}") for i in range(1, 4)))
    text = render_fleet(state, timelines({}), CheckLines())
    seen, previous = [], None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{")[0].split(" ")[0]
        if name != previous:
            assert name not in seen, f"{name} appears in two places"
            seen.append(name)
            previous = name
    assert "unhindered_check_info" in seen


def render_fleet(state, view, check_lines: CheckLines) -> str:
    return "".join(fleet_chunks(state, view, check_lines))
