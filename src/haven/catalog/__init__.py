"""haven.catalog"""
