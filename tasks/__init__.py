"""Experiments: each subpackage builds the run configs of one figure or table (`runs(scale)`)."""
