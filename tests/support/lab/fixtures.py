"""Pytest plugin for the network lab: `pytest_plugins = ["tests.support.lab.fixtures"]` in the
top-level conftest (pytest refuses `pytest_plugins` in nested conftests; importing the
fixture there, `from tests.support.lab.fixtures import lab`, works too)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .netns import Lab, list_netns, unavailable_reason


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh lab (net + centre namespaces); always torn down, even when the test fails."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    the_lab = Lab()
    try:
        yield the_lab
    finally:
        try:
            the_lab.close()
        finally:
            # Independent of the Lab's own bookkeeping: match on the run's name prefix.
            prefix = f"uh-{the_lab.run_id}-"
            leftover = [ns for ns in list_netns() if ns.startswith(prefix)]
            if leftover:
                pytest.fail(f"lab namespaces left behind: {leftover}")
