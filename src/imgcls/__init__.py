"""imgcls: image classification on any provider, behind one CLI."""
__version__ = "0.1.0"
