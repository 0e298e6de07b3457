"""The centre's control measurements (docs/control.md): the collector measures the
targets of the fleet's checks from its own vantage point, with the probes' own check code,
and keeps the results beside the probes' for comparison (issue 14). plan.py decides what
is measured, runner.py when, store.py keeps the results, settings.py is the `control:`
section of the configuration."""
