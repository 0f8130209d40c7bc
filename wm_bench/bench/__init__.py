"""Benchmarks: training throughput against a Hugging Face yardstick, shared timing helpers."""
