"""The recipient's appointment page and its signed links (docs/semantics.md §8)."""
