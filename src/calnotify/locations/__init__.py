"""Locations (sub-accounts): the tenants."""
