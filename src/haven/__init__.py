"""Haven: disaster recovery for OpenStack and KVM clouds."""

__version__ = "0.1.0"
