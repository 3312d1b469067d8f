"""Helpers shared by test modules (import them as ``tests.support.<module>``)."""
