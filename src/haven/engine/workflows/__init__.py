"""haven.engine.workflows"""
