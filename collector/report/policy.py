"""The counting policy: what counts as up, what is left out, printed in every report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

UnknownPolicy = Literal["exclude", "down"]


@dataclass(frozen=True)
class CountingPolicy:
    # "exclude": time in unknown (no results) is left out of the denominator and reported
    # apart; "down": it counts as down time, and a silent stretch is an outage.
    unknown: UnknownPolicy = "exclude"

    def counts_as_down(self, state: str) -> bool:
        return state == "down" or (state == "unknown" and self.unknown == "down")
