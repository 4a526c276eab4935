"""Benchmarks: load generators and measurements that print numbers (never pass/fail)."""
