"""Evaluation: perplexity at several context lengths (downstream tasks come with the arch experiment)."""
