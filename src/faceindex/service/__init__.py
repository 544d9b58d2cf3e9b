"""REST service and web UI over the Engine."""
