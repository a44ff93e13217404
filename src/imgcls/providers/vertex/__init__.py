"""Vertex AI AutoML image classification: provider.py (our logic) and client.py (the only SDK import)."""
