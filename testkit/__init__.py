"""The project's test kit: real servers for tests and benchmarks (PostgreSQL today)."""
