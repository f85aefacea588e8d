"""Operating calnotify: configuration checks (``calnotify check``) and the startup summary."""
