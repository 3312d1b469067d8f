"""haven.observability"""
