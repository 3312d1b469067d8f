"""Helpers shared by test modules (one place, not copies in each module)."""
