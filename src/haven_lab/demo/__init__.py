"""``haven demo``: the whole DR story on the KVM lab (see scenario.py)."""
