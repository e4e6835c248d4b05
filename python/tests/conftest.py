"""Shared by the tests: one clattn context per session, a seeded generator per test, and the
summary of the worst error of each group (reference.worst)."""

import numpy as np
import pytest

import clattn
from reference import worst


def pytest_terminal_summary(terminalreporter):
    if worst:
        terminalreporter.section("worst errors (relative, as each test measures them)")
        for group in sorted(worst):
            error, tolerance = worst[group]
            terminalreporter.write_line(f"{group:44s} {error:9.2e}  (tolerance {tolerance:g})")


@pytest.fixture(scope="session")
def ctx():
    with clattn.Context() as context:
        yield context


@pytest.fixture
def rng(request):
    """A generator seeded by the test's name: every run draws the same inputs."""
    return np.random.default_rng(sum(map(ord, request.node.name)))




def pytest_report_header():
    return f"clattn {clattn.__version__} from {clattn.__file__}"
