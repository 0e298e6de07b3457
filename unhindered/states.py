"""The four states of a check and of a mission's access, named once. A StrEnum, so a state
is its own name wherever it is stored, exported or compared. Beyond them, `RETIRED`: the
end of a check's life, not a measured state (docs/states.md)."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    UP = "up"
    DEGRADED = "degraded"  # answers, but loss or latency over the mission's thresholds
    DOWN = "down"
    UNKNOWN = "unknown"  # no data: reported apart, never counted as up or as down


STATES: tuple[State, ...] = tuple(State)
# How a mission's access combines its checks' states: the first one any check is in.
WORST_FIRST: tuple[State, ...] = (State.DOWN, State.UNKNOWN, State.DEGRADED, State.UP)

# A check its probe no longer runs (removed from its config or from the central check
# list): from the time the probe's check list changed, it is kept in the history but
# counts for nothing (no access, alert, silence or uptime) until a round of it comes again.
# A group of checks, or a mission, whose every check is retired is retired too. Not a
# State: it is never measured, and the series and figures that enumerate the states leave
# it out.
RETIRED = "retired"
CHECK_STATES: tuple[str, ...] = (*STATES, RETIRED)
