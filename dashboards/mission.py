"""Mission: one mission in depth (variable `mission`) — its access now and over time, a
SmokePing-style latency graph per ICMP check, loss, each check's state timeline with
outages marked, and its router's interfaces when the collector polls one over SNMP."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, statetimeline, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as model

from dashboards.common import (
    UID_MISSION,
    UID_OVERVIEW,
    Built,
    PromAnnotation,
    new_dashboard,
    query,
    query_variable,
    severity,
    state_mappings,
    state_thresholds,
)

M = 'mission="$mission"'
CHECK = f'{M},check="$check"'


def _stat(title: str, description: str, expr: str, unit: str) -> stat.Panel:
    return (stat.Panel().title(title).description(description)
            .with_target(query(expr, instant=True))
            .graph_mode(cm.BigValueGraphMode.NONE).unit(unit)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .height(4).span(6))


def headline() -> list:
    access = (_stat("Access now", "The mission's overall access state: every group of "
                    "targets must be reachable (docs/states.md).",
                    severity("unhindered_mission_access_state", f'{M},group="*"', "mission"),
                    "none")
              .mappings(state_mappings()).thresholds(state_thresholds())
              .color_mode(cm.BigValueColorMode.BACKGROUND))
    return [
        access,
        _stat("In this state for", "Time since the current access state began, by the "
              "probe's measurement times.",
              f'time() - unhindered_mission_access_since_timestamp_seconds{{{M},group="*"}}',
              "s"),
        _stat("Last report from the probe", "Time since the collector accepted the newest "
              "batch from the mission's probe(s). Minutes here mean the probe or its link "
              "is silent, which is not the same as the Internet being down.",
              f"time() - max(unhindered_probe_last_report_timestamp_seconds{{{M}}})", "s"),
        _stat("Results waiting at the probe", "Results the probe still had queued after "
              "its newest batch: more than a few means it is catching up after a cut.",
              f"sum(unhindered_probe_backlog_results{{{M}}})", "none"),
    ]


def _states(title: str, description: str, metric: str, by: str, height: int
            ) -> statetimeline.Panel:
    return (statetimeline.Panel().title(title).description(description)
            .with_target(query(severity(metric, M, by), legend=f"{{{{{by}}}}}"))
            .mappings(state_mappings()).thresholds(state_thresholds())
            .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
            .show_value(cm.VisibilityMode.NEVER).merge_values(True)
            .height(height).span(24))


def access_by_group() -> statetimeline.Panel:
    return _states("Access by group of targets", "The mission's access per group of targets "
                   "(internet, documents, ...) and overall (*).",
                   "unhindered_mission_access_state", "group", 6)


def check_states() -> statetimeline.Panel:
    return _states("State of each check", "up, degraded, down or unknown per check, with "
                   "the hysteresis of docs/states.md. Outages are also marked on every graph.",
                   "unhindered_check_state", "check", 8)


def smokeping_rtt() -> timeseries.Panel:
    """Median RTT as a line over the grey min-max band, loss as bars on the right axis:
    SmokePing's picture, one panel per ICMP check (repeated over `check`)."""
    panel = (timeseries.Panel().title("Latency and loss — $check")
             .description("Per ICMP round: median round-trip time (line) inside the band "
                          "from the fastest to the slowest reply, and the share of echo "
                          "requests lost (bars, right axis). A round with no reply draws no "
                          "latency, never a zero.")
             .with_target(query(f"unhindered_check_rtt_median_seconds{{{CHECK}}}", "A",
                                legend="median"))
             .with_target(query(f"unhindered_check_rtt_min_seconds{{{CHECK}}}", "B",
                                legend="min"))
             .with_target(query(f"unhindered_check_rtt_max_seconds{{{CHECK}}}", "C",
                                legend="max"))
             .with_target(query(f"unhindered_check_loss_ratio{{{CHECK}}}", "D", legend="loss"))
             .unit("s").min(0).span_nulls(False).line_width(2)
             .legend(cb.VizLegendOptions().show_legend(True)
                     .display_mode(cm.LegendDisplayMode.LIST)
                     .placement(cm.LegendPlacement.BOTTOM))
             .repeat("check").repeat_direction("h").max_per_row(2)
             .height(8).span(12))
    band = {"color": {"mode": "fixed", "fixedColor": "#8f8f8f"}, "custom.lineWidth": 0}
    for name, props in [
        ("median", {"color": {"mode": "fixed", "fixedColor": "green"}}),
        ("max", {**band, "custom.fillBelowTo": "min", "custom.fillOpacity": 35}),
        ("min", {**band, "custom.hideFrom": {"legend": True, "tooltip": False,
                                             "viz": False}}),
        ("loss", {"unit": "percentunit", "min": 0, "max": 1,
                  "custom.axisPlacement": "right", "custom.drawStyle": "bars",
                  "custom.fillOpacity": 80, "custom.lineWidth": 0,
                  "color": {"mode": "fixed", "fixedColor": "red"}}),
    ]:
        panel = panel.override_by_name(name, [model.DynamicConfigValue(id_val=k, value=v)
                                              for k, v in props.items()])
    return panel


def loss() -> timeseries.Panel:
    return (timeseries.Panel().title("Packet loss per check")
            .description("Share of echo requests lost in each ICMP round.")
            .with_target(query(f"unhindered_check_loss_ratio{{{M}}}", legend="{{check}}"))
            .unit("percentunit").min(0).max(1).height(8).span(12))


def connect_time() -> timeseries.Panel:
    return (timeseries.Panel().title("TCP connect time per check")
            .description("Handshake time of each TCP or HTTP round that connected.")
            .with_target(query(f"unhindered_check_connect_seconds{{{M}}}", legend="{{check}}"))
            .unit("s").min(0).height(8).span(12))


def failed_rounds() -> timeseries.Panel:
    return (timeseries.Panel().title("Failed rounds per minute")
            .description("Rounds that failed (any reason), per check, from the rounds "
                         "counters: unlike the state, this shows single lost rounds.")
            .with_target(query(f"rate(unhindered_check_rounds_failed_total{{{M}}}"
                               "[$__rate_interval]) * 60", legend="{{check}}"))
            .min(0).draw_style(cm.GraphDrawStyle.BARS).fill_opacity(60)
            .height(8).span(12))


def snmp_row() -> dash.Row:
    """The router's interfaces, from the collector's SNMP poller. Missions without a
    polled router have none of these series: the panels then say so ("no data")."""
    def in_and_out(title: str, description: str, counter: str, factor: str, unit: str
                   ) -> timeseries.Panel:
        """Per interface, the rate of the `in` counter up and of the `out` one down."""
        panel = timeseries.Panel().title(title).description(description)
        for ref, way in (("A", "in"), ("B", "out")):
            panel = panel.with_target(query(
                f"rate(unhindered_router_if_{way}_{counter}_total{{{M}}}[$__rate_interval])"
                f"{factor}", ref, legend=f"{{{{router}}}} {{{{ifname}}}} {way}"))
        return (panel.override_by_regexp(".* out$", [model.DynamicConfigValue(
                    id_val="custom.transform", value="negative-Y")])
                .unit(unit).no_value("no router polled over SNMP").height(8).span(12))

    traffic = in_and_out("Router interface traffic (SNMP)",
                         "Bits per second in (up) and out (down) per router interface, from "
                         "the IF-MIB octet counters. Empty for a mission whose router is not "
                         "polled over SNMP.", "octets", " * 8", "bps")
    errors = in_and_out("Router interface errors (SNMP)",
                        "Errored packets per second in (up) and out (down) per router "
                        "interface.", "errors", "", "pps")
    # IF-MIB ifOperStatus values.
    oper = {1: ("up", "green"), 2: ("down", "red"), 3: ("testing", "blue"),
            4: ("unknown", "text"), 5: ("dormant", "purple"), 6: ("notPresent", "text"),
            7: ("lowerLayerDown", "orange")}
    status = (statetimeline.Panel().title("Router interface status (SNMP)")
              .description("IF-MIB ifOperStatus per router interface.")
              .with_target(query(f"unhindered_router_if_oper_status{{{M}}}",
                                 legend="{{router}} {{ifname}}"))
              .mappings([model.ValueMap(options={
                  str(k): model.ValueMappingResult(text=t, color=c, index=k - 1)
                  for k, (t, c) in oper.items()})])
              .show_value(cm.VisibilityMode.NEVER).no_value("no router polled over SNMP")
              .height(6).span(24))
    return (dash.Row("Router interfaces (SNMP, when polled)")
            .with_panel(traffic).with_panel(errors).with_panel(status))


def outage_annotations() -> list[PromAnnotation]:
    return [
        PromAnnotation("Access down",
                       f'unhindered_mission_access_state{{{M},group="*",state="down"}} == 1',
                       "access down", "mission", "red"),
        PromAnnotation("Check down",
                       f'max by (check) (unhindered_check_state{{{M},state="down"}}) == 1',
                       "{{check}} down", "check", "orange"),
    ]


def build() -> dash.Dashboard:
    d = (new_dashboard(UID_MISSION, "Unhindered — Mission",
                       "One mission: access, latency, loss, states and outages.", "now-24h")
         .with_variable(query_variable("mission", "Mission",
                                       "label_values(unhindered_check_info, mission)"))
         .with_variable(query_variable(
             "check", "ICMP check",
             f"label_values(unhindered_check_rtt_median_seconds{{{M}}}, check)",
             multi=True))
         .link(dash.DashboardLink("Overview").url(f"/d/{UID_OVERVIEW}/overview")
               .keep_time(True).icon("dashboard")))
    for annotation in outage_annotations():
        d = d.annotation(Built(annotation))
    for panel in headline():
        d = d.with_panel(panel)
    d = d.with_panel(access_by_group()).with_panel(check_states())
    d = d.with_row(dash.Row("Latency and loss"))
    d = d.with_panel(smokeping_rtt())
    d = d.with_panel(loss()).with_panel(connect_time()).with_panel(failed_rounds())
    return d.with_row(snmp_row())
