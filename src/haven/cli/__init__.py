"""haven.cli"""
