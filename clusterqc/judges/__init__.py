"""Judges propose a verdict for a cluster: an LLM behind an OpenAI-compatible API, or the offline heuristics."""
