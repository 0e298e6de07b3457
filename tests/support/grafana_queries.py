"""What Grafana would ask Prometheus for, read from the generated dashboard JSON.

Walks every panel (rows included), every target and every annotation, resolves the
dashboard's variables the way Grafana does (`label_values(...)` through Prometheus's
series API, custom variables from their current value, "All" as the variable's allValue,
repeated panels once per value) and substitutes the built-in ones ($__interval,
$__rate_interval, $__range...). Used by the tests that run every query against a real
Prometheus.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
SNMP_METRIC_PREFIX = "unhindered_router_"
_METRIC = re.compile(r"\b(unhindered_[a-z0-9_]+)\b")
_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<expr>.*),\s*)?(?P<label>\w+)\)$", re.S)


def load() -> dict[str, dict]:
    """Every committed dashboard, by file stem."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict) -> Iterator[dict]:
    def walk(items: list[dict]) -> Iterator[dict]:
        for p in items:
            yield p
            yield from walk(p.get("panels") or [])
    yield from walk(dashboard.get("panels") or [])


@dataclass(frozen=True)
class Query:
    dashboard: str
    where: str  # panel title and refId, or "annotation <name>"
    expr: str
    instant: bool
    repeat: str | None = None  # the variable a repeated panel iterates over
    annotation: bool = False

    def metrics(self) -> set[str]:
        return set(_METRIC.findall(self.expr))

    def snmp_only(self) -> bool:
        """Reads only the SNMP router series, which may legitimately be absent."""
        names = self.metrics()
        return bool(names) and all(n.startswith(SNMP_METRIC_PREFIX) for n in names)


def queries(name: str, dashboard: dict) -> list[Query]:
    found = []
    for p in panels(dashboard):
        for t in p.get("targets") or []:
            found.append(Query(name, f"{p['title']!r} {t['refId']}", t["expr"],
                               bool(t.get("instant")) and not t.get("range"), p.get("repeat")))
    for a in (dashboard.get("annotations") or {}).get("list", []):
        if a.get("expr"):
            found.append(Query(name, f"annotation {a['name']!r}", a["expr"], False,
                               annotation=True))
    return found


@dataclass
class Window:
    """The dashboard time range a test pretends the user picked, and the intervals Grafana
    derives from it (its $__interval is range / max data points, at least the scrape
    interval; $__rate_interval is max($__interval + scrape, 4 * scrape))."""

    start: float
    end: float
    scrape_s: float = 1.0
    max_points: int = 1000
    interval_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.interval_s = max(self.scrape_s, math.ceil((self.end - self.start) / self.max_points))

    def builtins(self) -> dict[str, str]:
        range_s = max(1, round(self.end - self.start))
        rate = max(self.interval_s + self.scrape_s, 4 * self.scrape_s)
        return {"__rate_interval": f"{rate:g}s", "__interval_ms": f"{self.interval_s * 1000:g}",
                "__interval": f"{self.interval_s:g}s", "__range_ms": str(range_s * 1000),
                "__range_s": str(range_s), "__range": f"{range_s}s"}


def substitute(expr: str, values: dict[str, str]) -> str:
    """$name, ${name} and [[name]] replaced; longest names first ($__range_s before
    $__range)."""
    for name in sorted(values, key=len, reverse=True):
        for form in (f"${{{name}}}", f"[[{name}]]", f"${name}"):
            expr = expr.replace(form, values[name])
    return expr


@dataclass(frozen=True)
class Choice:
    """One setting of a dashboard's variables; `all` names those set to "All"."""

    values: dict[str, str]
    all: frozenset[str] = frozenset()

    def expr(self, query: Query) -> str | None:
        """The query as Grafana sends it under this choice, or None when Grafana would
        not send it so: a panel repeated over a variable set to "All" becomes one panel
        per value, which other choices cover."""
        if query.repeat is not None and query.repeat in self.all:
            return None
        return substitute(query.expr, self.values)


def variable_choices(dashboard: dict, series: Callable[[str], list[dict]],
                     builtins: dict[str, str]) -> list[Choice]:
    """Every combination of values the dashboard's variables can take, in order (a later
    variable's query may use an earlier one). `series(match)` answers Prometheus's
    /api/v1/series for one selector. Variables that allow "All" get it as one more value."""
    choices = [Choice(dict(builtins))]
    for var in dashboard.get("templating", {}).get("list", []):
        if var["type"] == "datasource":
            continue
        choices = [Choice({**c.values, var["name"]: value},
                          c.all | ({var["name"]} if is_all else set()))
                   for c in choices for value, is_all in _values(var, c.values, series)]
    return choices


def _values(var: dict, values: dict[str, str], series) -> list[tuple[str, bool]]:
    if var["type"] == "custom":
        return [(var["current"]["value"], False)]
    if var["type"] != "query":
        raise ValueError(f"variable type {var['type']} is not handled here")
    text = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
    match = _LABEL_VALUES.match(substitute(text, values))
    if match is None:
        raise ValueError(f"variable {var['name']}: only label_values(...) is handled: {text}")
    label = match["label"]
    selector = match["expr"] or f'{{{label}!=""}}'
    found = sorted({s[label] for s in series(selector) if label in s})
    choices = [(v, False) for v in found]
    if var.get("includeAll"):
        # "All": Grafana sends allValue when set, else every value as a regex alternation.
        choices.append((var.get("allValue") or "(" + "|".join(map(re.escape, found)) + ")",
                        True))
    return choices
