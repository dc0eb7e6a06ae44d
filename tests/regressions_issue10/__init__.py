"""Regression tests for issue 10, found by the torture harness (xfail until the runtime is fixed)."""
