"""Benchmark metrics, one subpackage per dataset family."""
