"""What the three dashboards share: the data source, how a state becomes a number and a
colour, and the builders for a Prometheus query and a variable.

States are one-hot series (`unhindered_check_state`, `unhindered_mission_access_state`,
docs/states.md); panels need one number per series to colour a map marker, a table cell
or a state timeline, so `severity()` folds the one-hot into 0 up, 1 degraded, 2 unknown,
3 down: higher is worse, and sorting by it puts the worst first.
"""

from __future__ import annotations

import json

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

# Every panel reads the Prometheus chosen in the `datasource` variable, so the same JSON
# works whatever the data source is called in a given Grafana.
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")

SEVERITY = {"up": 0, "degraded": 1, "unknown": 2, "down": 3}
STATE_COLOURS = {"up": "green", "degraded": "orange", "unknown": "text", "down": "red"}

# The SNMP router series (exported by the collector's SNMP poller when a mission has a
# router to poll). Panels reading only these may show no data: see docs/dashboards.md.
SNMP_METRIC_PREFIX = "unhindered_router_"

UID_OVERVIEW = "unhindered-overview"
UID_MISSION = "unhindered-mission"
UID_UPTIME = "unhindered-uptime"
TAGS = ["unhindered"]


def severity(metric: str, selector: str, by: str) -> str:
    """The current state of each `by` group of a one-hot state metric as 0..3."""
    terms = [f'{metric}{{{selector}{"," if selector else ""}state="{state}"}} * {weight}'
             for state, weight in sorted(SEVERITY.items(), key=lambda kv: -kv[1])]
    return f"max by ({by}) (\n    " + "\n  or ".join(terms) + "\n)"


def state_mappings() -> list[model.ValueMapping]:
    """0..3 shown as the state's name in its colour."""
    return [model.ValueMap(options={
        str(weight): model.ValueMappingResult(text=state, color=STATE_COLOURS[state],
                                              index=weight)
        for state, weight in SEVERITY.items()})]


def state_thresholds() -> dash.ThresholdsConfig:
    """The same colours as thresholds, for panels that colour by value (map markers)."""
    steps = [model.Threshold(value=None if weight == 0 else weight,
                             color=STATE_COLOURS[state])
             for state, weight in SEVERITY.items()]
    return dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(steps)


def query(expr: str, ref: str = "A", *, legend: str | None = None, instant: bool = False,
          table: bool = False, interval: str | None = None) -> prom.Dataquery:
    """A Prometheus target: a range query drawn over time, or an instant query (tables,
    stats, the map) evaluated at the end of the dashboard's range."""
    q = prom.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    q = q.instant() if instant else q.range()
    if table:
        q = q.format(PromQueryFormat.TABLE)
    if legend is not None:
        q = q.legend_format(legend)
    if interval is not None:
        q = q.interval(interval)
    return q


def joined_table(title: str, description: str, exprs: list[str], columns: dict[str, str],
                 sort_by: str, descending: bool) -> table.Panel:
    """Instant queries A, B, C... joined into one row per label set (Grafana's merge),
    `columns` ({label or "Value #<ref>": heading}) shown in that order, sorted by one."""
    panel = table.Panel().title(title).description(description).filterable(True)
    for i, expr in enumerate(exprs):
        panel = panel.with_target(query(expr, chr(ord("A") + i), instant=True, table=True))
    return (panel
            .with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
            .with_transformation(model.DataTransformerConfig(id_val="organize", options={
                "excludeByName": {"Time": True},
                "indexByName": {name: i for i, name in enumerate(columns)},
                "renameByName": columns}))
            .with_transformation(model.DataTransformerConfig(id_val="sortBy", options={
                "fields": {}, "sort": [{"field": sort_by, "desc": descending}]})))


def datasource_variable() -> dash.DatasourceVariable:
    return dash.DatasourceVariable("datasource").label("Prometheus").type("prometheus")


def query_variable(name: str, label: str, label_values: str, *, multi: bool = False,
                   all_value: str | None = None) -> dash.QueryVariable:
    """A variable listing the values of a label, like Grafana's `label_values(...)`."""
    v = (dash.QueryVariable(name).label(label).datasource(DATASOURCE)
         .query({"query": label_values, "refId": "PrometheusVariableQueryEditor-VariableQuery",
                 "qryType": 1})
         .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
         .sort(model.VariableSort.ALPHABETICAL_ASC))
    if multi:
        v = v.multi(True).include_all(True)
    if all_value is not None:
        v = v.all_value(all_value)
    return v


def new_dashboard(uid: str, title: str, description: str, time_from: str) -> dash.Dashboard:
    return (dash.Dashboard(title).uid(uid).description(description).tags(TAGS)
            .time(time_from, "now").refresh("1m").timezone("browser").readonly()
            .tooltip(model.DashboardCursorSync.CROSSHAIR)
            .with_variable(datasource_variable()))


class PromAnnotation(model.AnnotationQuery):
    """A Prometheus annotation query. The SDK's AnnotationQuery lacks the Prometheus
    data source's own fields (step, title, tags), which Grafana reads from the same
    object (its prepareAnnotation moves `expr` and `step` into a query target)."""

    def __init__(self, name: str, expr: str, title: str, tag_keys: str, colour: str,
                 step: str = "15s") -> None:
        super().__init__(name=name, datasource=DATASOURCE, enable=True, icon_color=colour,
                         expr=expr)
        self.step, self.title, self.tag_keys = step, title, tag_keys

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "step": self.step, "titleFormat": self.title,
                "tagKeys": self.tag_keys, "textFormat": "", "useValueForTime": False}


class Built(dash.AnnotationQuery):
    """Hands an already built annotation to the dashboard builder."""

    def __init__(self, annotation: model.AnnotationQuery) -> None:
        self._annotation = annotation

    def build(self) -> model.AnnotationQuery:
        return self._annotation


def to_dict(builder: dash.Dashboard) -> dict:
    """The dashboard as the JSON object Grafana stores."""
    return json.loads(json.dumps(builder.build(), cls=JSONEncoder))
