"""haven.datamover.backends"""
