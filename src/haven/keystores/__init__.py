"""Key stores: where the projects' data keys live (the engine's ``KeyStore`` role,
``haven.engine.keys``). ``local`` keeps them in files under ``$HAVEN_HOME/keys``;
``barbican`` reads the tenant's Barbican secret through castellan."""
