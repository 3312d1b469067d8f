"""haven.specs"""
