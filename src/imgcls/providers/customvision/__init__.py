"""Azure Custom Vision: provider.py (our logic) and client.py (the only SDK import)."""
