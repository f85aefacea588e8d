"""Claiming due deliveries, fencing, rendering, sending and recording the outcome."""
