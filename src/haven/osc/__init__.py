"""``openstack dr ...``: an OpenStackClient plugin for Haven. A client of the REST API
(``haven api``) found through the Keystone catalog (service type ``disaster-recovery``);
it never imports the engine or the adapters (import-linter says so)."""
