"""Appointment and notification changes → deliveries rows, in the same transaction."""
