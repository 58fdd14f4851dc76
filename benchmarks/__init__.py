"""Benchmarks, load tests, and the local-node launcher they share with the integration tests."""
