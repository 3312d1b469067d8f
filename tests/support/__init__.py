"""Helpers shared by test modules (one place instead of copies in each module)."""
