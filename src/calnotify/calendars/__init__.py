"""HighLevel-shaped calendars."""
