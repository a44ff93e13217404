"""Metrics computed locally from scores, so every provider is judged by the same code."""
