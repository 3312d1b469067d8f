"""haven.engine"""
