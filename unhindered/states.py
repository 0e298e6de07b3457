"""The four states of a check and of a mission's access, named once. A StrEnum, so a state
is its own name wherever it is stored, exported or compared."""

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
