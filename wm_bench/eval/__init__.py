"""Evaluation: perplexity at several context lengths (downstream tasks: the arch experiment)."""
