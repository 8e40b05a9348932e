"""Benchmark suites; each returns the Figures it measured."""
