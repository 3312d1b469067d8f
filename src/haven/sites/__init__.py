"""haven.sites"""
