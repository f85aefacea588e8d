"""HighLevel-shaped appointments and the domain events their changes record."""
