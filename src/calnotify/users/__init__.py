"""Users of a location."""
