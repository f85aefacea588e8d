"""Stored templates and Liquid rendering with HighLevel's merge fields."""
