"""Runs sparsification jobs: turns a validated job spec into an engine run (locally or in a task)."""
