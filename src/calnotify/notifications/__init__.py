"""HighLevel's Calendar Notifications: the five operations and their validation rules."""
