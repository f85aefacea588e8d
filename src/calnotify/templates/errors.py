"""Errors of rendering, in a module of their own so every rendering module can import them."""

from __future__ import annotations


class RenderError(Exception):
    """A template could not be rendered (a limit was hit); the delivery fails for good."""
