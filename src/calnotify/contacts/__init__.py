"""HighLevel-shaped contacts: the people appointments are booked for."""
