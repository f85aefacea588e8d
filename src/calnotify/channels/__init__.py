"""Channel adapters: one small interface, one implementation per provider."""
