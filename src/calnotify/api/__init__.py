"""Shared pieces of the HTTP API: input types, error handlers, middleware."""
