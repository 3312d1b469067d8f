"""haven.domain"""
