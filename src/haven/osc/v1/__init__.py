"""Commands of ``openstack dr`` for API v1 (entry-point group ``openstack.dr.v1``)."""
