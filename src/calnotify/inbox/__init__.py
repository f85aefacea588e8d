"""Users' in-app inboxes."""
