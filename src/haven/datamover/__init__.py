"""haven.datamover"""
