"""Location access tokens, scopes and the ``Version`` header."""
