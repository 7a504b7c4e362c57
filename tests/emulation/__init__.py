"""Servers that behave like the ones fdp-tasks meets in the wild, run on loopback.

Tests and benchmarks start them to meet real conventions and defects without a network:
`upstream` is the FAIR Data Pipeline registry (data-registry) with its S3 object store.
"""
