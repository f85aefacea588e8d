"""Callbacks from providers."""
