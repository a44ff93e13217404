"""Local HTTP servers that speak each vendor's REST API as its SDK sends it, keeping state."""
