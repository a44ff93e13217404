"""Azure ML AutoML for images: provider.py (our logic) and client.py (the only SDK import)."""
