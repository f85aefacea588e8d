"""calnotify: self-hosted calendar notifications, wire-compatible with HighLevel's API."""

__version__ = "0.1.0"
