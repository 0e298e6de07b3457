"""Uptime / SLO: each mission's uptime over 30, 90 and 365 days and the error budget left
against the objective chosen in the `objective` variable.

Uptime is computed as docs/states.md defines it: time up / (time observed - time unknown -
maintenance), from the counter `unhindered_mission_access_seconds_total{mission,state}`
(seconds of measurement time spent in each overall access state). Counters survive missed
scrapes and collector restarts, so a 365-day `increase()` is exact where an average of a
0/1 gauge would not be.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, table, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as model

from dashboards.common import (
    UID_MISSION,
    UID_UPTIME,
    joined_table,
    new_dashboard,
    query,
    query_variable,
)

SECONDS = "unhindered_mission_access_seconds_total"
M = 'mission=~"$mission"'
WINDOWS = ("30d", "90d", "365d")
OBJECTIVES = ("0.99", "0.995", "0.999")
DEFAULT_OBJECTIVE = "0.995"


def uptime(window: str) -> str:
    """Share of the observed time (neither unknown nor in maintenance) the mission was up."""
    return (f'sum by (mission) (increase({SECONDS}{{{M},state="up"}}[{window}]))\n'
            f'/ sum by (mission) (increase({SECONDS}{{{M},state!~"unknown|maintenance"}}'
            f"[{window}]))")


def coverage(window: str) -> str:
    """Share of the time with a measurement (not unknown), maintenance included."""
    return (f'1 - sum by (mission) (increase({SECONDS}{{{M},state="unknown"}}[{window}]))\n'
            f"/ sum by (mission) (increase({SECONDS}{{{M}}}[{window}]))")


def budget_left(window: str) -> str:
    """Share of the error budget (1 - objective) not yet spent over the window."""
    return f"1 - (1 - ({uptime(window)})) / (1 - $objective)"


def _percent(*names: str) -> list:
    return [(n, [model.DynamicConfigValue(id_val="unit", value="percentunit"),
                 model.DynamicConfigValue(id_val="decimals", value=3)]) for n in names]


def uptime_table() -> table.Panel:
    columns = {f"Value #{chr(ord('A') + i)}": f"Uptime {w}" for i, w in enumerate(WINDOWS)}
    columns |= {"Value #D": "Budget left 30d", "Value #E": "Coverage 30d",
                "Value #F": "Uptime (time range)"}
    panel = (joined_table(
                 "Uptime per mission, worst first",
                 "Time up / time observed (unknown and maintenance excluded). Budget left: "
                 "the share of the 30-day error budget (1 - objective) not yet spent; below 0 "
                 "the objective is missed. Coverage: the share of the 30 days with "
                 "measurements.",
                 [uptime("30d"), uptime("90d"), uptime("365d"), budget_left("30d"),
                  coverage("30d"), uptime("$__range")],
                 {"mission": "Mission", **columns}, "Uptime 30d", descending=False)
             .override_by_name("Mission", [model.DynamicConfigValue(id_val="links", value=[
                 dash.DashboardLink("Mission dashboard")
                 .url(f"/d/{UID_MISSION}/mission?var-mission=${{__data.fields.Mission}}")
                 .build()])])
             .height(12).span(24))
    for name, props in _percent(*columns.values()):
        panel = panel.override_by_name(name, props)
    return panel.override_by_name("Budget left 30d", [
        model.DynamicConfigValue(id_val="custom.cellOptions",
                                 value={"type": "color-background"}),
        model.DynamicConfigValue(id_val="thresholds", value={"mode": "absolute", "steps": [
            {"value": None, "color": "red"}, {"value": 0, "color": "orange"},
            {"value": 0.25, "color": "green"}]})])


def budget_gauges() -> bargauge.Panel:
    return (bargauge.Panel().title("Error budget left, 30 days")
            .description("Per mission, against the objective $objective.")
            .with_target(query(budget_left("30d"), instant=True, legend="{{mission}}"))
            .unit("percentunit").min(0).max(1)
            .thresholds(dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps([
                model.Threshold(value=None, color="red"),
                model.Threshold(value=0.25, color="orange"),
                model.Threshold(value=0.5, color="green")]))
            .orientation(cm.VizOrientation.HORIZONTAL)
            .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
            .height(10).span(12))


def daily_uptime() -> timeseries.Panel:
    return (timeseries.Panel().title("Uptime over the previous day")
            .description("Rolling one-day uptime per mission.")
            .with_target(query(uptime("1d"), legend="{{mission}}"))
            .unit("percentunit").max(1).height(10).span(12))


def check_success() -> table.Panel:
    return (table.Panel().title("Rounds that succeeded per check, 30 days")
            .description("From the per-check rounds counters: the raw success rate before "
                         "hysteresis, to tell a flaky target from a mission outage.")
            .with_target(query(
                f"1 - sum by (mission, check) (increase(unhindered_check_rounds_failed_total"
                f"{{{M}}}[30d]))\n/ sum by (mission, check) (increase("
                f"unhindered_check_rounds_total{{{M}}}[30d]))", instant=True, table=True))
            .with_transformation(model.DataTransformerConfig(id_val="organize", options={
                "excludeByName": {"Time": True},
                "renameByName": {"mission": "Mission", "check": "Check",
                                 "Value": "Rounds succeeded"}}))
            .override_by_name("Rounds succeeded", _percent("Rounds succeeded")[0][1])
            .height(10).span(24))


def build() -> dash.Dashboard:
    objective = (dash.CustomVariable("objective").label("Objective")
                 .values(",".join(OBJECTIVES))
                 .current(model.VariableOption(selected=True, text=DEFAULT_OBJECTIVE,
                                               value=DEFAULT_OBJECTIVE)))
    return (new_dashboard(UID_UPTIME, "Unhindered — Uptime and SLO",
                          "Uptime per mission over 30, 90 and 365 days, and the error budget "
                          "left.", "now-30d")
            .with_variable(query_variable("mission", "Mission",
                                          f"label_values({SECONDS}, mission)", multi=True,
                                          all_value=".+"))
            .with_variable(objective)
            .with_panel(uptime_table())
            .with_panel(budget_gauges()).with_panel(daily_uptime())
            .with_panel(check_success()))
