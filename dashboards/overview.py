"""Overview: the fleet at a glance — where missions are and whether they have access, how
many are in each state, which are worst, and which targets fail for many at once."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import geomap, stat, table
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as model

from dashboards.common import (
    STATE_COLOURS,
    UID_MISSION,
    UID_OVERVIEW,
    joined_table,
    new_dashboard,
    query,
    severity,
    state_mappings,
    state_thresholds,
)

ACCESS = severity("unhindered_mission_access_state", 'group="*"', "mission")
# A mission's name from the inventory; a mission not in it keeps its code alone.
ACCESS_NAMED = (f"({ACCESS}) * on(mission) group_left(name) unhindered_mission_info\n"
                f"or on(mission) ({ACCESS})")
# Per target: how many missions have a check on it down, and how many measure it
# (a mission with an ICMP and a TCP check on one target counts once).
TARGET_DOWN = ('sum by (target) (max by (target, mission) (\n'
               '    unhindered_check_state{state="down"}\n'
               '  * on(mission, check) group_left(target) unhindered_check_info{group!="local"}\n'
               '))')
TARGET_MEASURED = ('count by (target) (count by (target, mission) ('
                   'unhindered_check_info{group!="local"}))')


def _mission_link() -> dash.DashboardLink:
    return (dash.DashboardLink("Mission dashboard")
            .url(f"/d/{UID_MISSION}/mission?var-mission=${{__data.fields.mission}}"
                 "&${__url_time_range}"))


def missions_map() -> geomap.Panel:
    markers = (cb.MapLayerOptions().type("markers").name("Missions").tooltip(True)
               .location(cb.FrameGeometrySource().mode(cm.FrameGeometrySourceMode.COORDS)
                         .latitude("latitude").longitude("longitude"))
               .config({
                   "showLegend": True,
                   "style": {
                       "color": {"field": "Value", "fixed": "dark-green"},
                       "opacity": 0.8,
                       "size": {"fixed": 7, "max": 15, "min": 2},
                       "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                       "text": {"field": "mission", "fixed": "", "mode": "field"},
                       "textConfig": {"fontSize": 9, "offsetX": 0, "offsetY": -10,
                                      "textAlign": "center", "textBaseline": "bottom"},
                   },
               }))
    # The default base layer (CARTO tiles) is fetched from the Internet by the browser;
    # docs/dashboards.md shows how to use a local tile server on a closed network.
    basemap = cb.MapLayerOptions().type("default").name("Base map")
    expr = f"({ACCESS}) * on(mission) group_left(name, city, latitude, longitude) " \
           "unhindered_mission_info"
    return (geomap.Panel().title("Missions by access state")
            .description("Each monitored mission at its inventory coordinates, coloured by "
                         "its overall access state now. Missions without a probe are not "
                         "shown.")
            .with_target(query(expr, instant=True, table=True))
            # Labels arrive as text; the map needs numbers.
            .with_transformation(model.DataTransformerConfig(
                id_val="convertFieldType",
                options={"conversions": [
                    {"targetField": "latitude", "destinationType": "number"},
                    {"targetField": "longitude", "destinationType": "number"}],
                    "fields": {}}))
            .view(geomap.MapViewConfig().id("zero").lat(20).lon(0).zoom(2))
            .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True)
                      .show_attribution(True))
            .basemap(basemap).layers([markers])
            .mappings(state_mappings()).thresholds(state_thresholds())
            .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
            .height(14).span(16))


def counts_by_state() -> stat.Panel:
    panel = (stat.Panel().title("Missions per state")
             .description("How many monitored missions are in each overall access state.")
             .with_target(query('sum by (state) (unhindered_mission_access_state{group="*"})',
                                legend="{{state}}", instant=True))
             .graph_mode(cm.BigValueGraphMode.NONE).color_mode(cm.BigValueColorMode.BACKGROUND)
             .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
             .orientation(cm.VizOrientation.VERTICAL)
             .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
             .decimals(0).height(14).span(8))
    for state, colour in STATE_COLOURS.items():
        panel = panel.override_by_name(state, [model.DynamicConfigValue(
            id_val="color", value={"mode": "fixed", "fixedColor": colour})])
    return panel


def missions_worst_first() -> table.Panel:
    return (joined_table(
                "Missions, worst first",
                "Every monitored mission: its overall access state, for how long, and how "
                "many of its checks are down. Click a code to open its Mission dashboard.",
                [ACCESS_NAMED,
                 'time() - max by (mission) ('
                 'unhindered_mission_access_since_timestamp_seconds{group="*"})',
                 'sum by (mission) (unhindered_check_state{state="down"})'],
                {"mission": "Mission", "name": "Name", "Value #A": "Access", "Value #B": "For",
                 "Value #C": "Checks down"},
                "Access", descending=True)
            .override_by_name("Access", [
                model.DynamicConfigValue(id_val="mappings", value=state_mappings()),
                model.DynamicConfigValue(id_val="custom.cellOptions",
                                         value={"type": "color-background"})])
            .override_by_name("For", [model.DynamicConfigValue(id_val="unit", value="s")])
            .override_by_name("Mission", [model.DynamicConfigValue(
                id_val="links", value=[_mission_link().build()])])
            .height(12).span(12))


def targets_across_missions() -> table.Panel:
    return (joined_table(
                "Targets across missions",
                "For each target: how many missions measure it and how many see it down now. "
                "A target down for many missions is a fault at the target or on the way to "
                "it, not at the missions.",
                [TARGET_DOWN, TARGET_MEASURED, f"({TARGET_DOWN}) / ({TARGET_MEASURED})"],
                {"target": "Target", "Value #A": "Missions seeing it down",
                 "Value #B": "Missions measuring it", "Value #C": "Share down"},
                "Share down", descending=True)
            .override_by_name("Share down", [
                model.DynamicConfigValue(id_val="unit", value="percentunit"),
                model.DynamicConfigValue(id_val="custom.cellOptions",
                                         value={"type": "color-background"}),
                model.DynamicConfigValue(id_val="thresholds", value={
                    "mode": "absolute", "steps": [
                        {"value": None, "color": "green"}, {"value": 0.01, "color": "orange"},
                        {"value": 0.5, "color": "red"}]})])
            .height(12).span(12))


def build() -> dash.Dashboard:
    return (new_dashboard(UID_OVERVIEW, "Unhindered — Overview",
                          "Where the missions are and whether they have access now.", "now-6h")
            .with_panel(missions_map())
            .with_panel(counts_by_state())
            .with_panel(missions_worst_first())
            .with_panel(targets_across_missions()))
