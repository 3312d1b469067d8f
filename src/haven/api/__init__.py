"""haven.api"""
