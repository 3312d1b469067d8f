"""The Barbican key store: a project's data key is a secret the tenant keeps in Barbican
(in the tenant's own project), read by Haven through castellan as Haven's service user,
which the secret's ACL allows to read it.

- Haven authenticates with a clouds.yaml entry (the repository's ``key_cloud``: Haven's
  service user, its project and region); Barbican is found in that region's Keystone
  catalog (service type ``key-manager``). Credentials are never logged.
- Which secret belongs to which project is registered by the operator (``haven keys
  register``, the reference the tenant hands over): ``<dir>/<project>.ref`` (0600) holds
  the secret's href, never key material. The key itself is read at every use.
- The tenant revokes by removing Haven's user from the secret's ACL (Barbican answers
  403) or deleting the secret (404): both ``KeyRevoked``, exit 7. A refused login of
  Haven's user is ``KeyUnavailable`` (exit 7); Barbican or Keystone not answering is
  ``KeyStoreUnreachable`` (exit 5, retryable).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from haven.domain.errors import (
    KeyRevoked,
    KeyStoreUnreachable,
    KeyUnavailable,
    ValidationError,
)
from haven.keystores.files import private_dir
from haven.observability.logging import register_secret

KEY_LEN = 32
_REF = re.compile(r"^(?:https?://[^\s]+/v1/secrets/)?([0-9a-fA-F-]{36})$")


class BarbicanKeyStore:
    """Implements the engine's ``KeyStore`` role with Barbican through castellan.

    ``cloud``: the clouds.yaml entry of Haven's service user; ``directory``: where the
    registered secret references are kept; ``setting``: the spec field naming ``cloud``
    (for errors)."""

    def __init__(self, cloud: str, directory: Path, setting: str) -> None:
        self.cloud = cloud
        self.directory = directory
        self.setting = setting
        self._manager: Any = None
        self._context: Any = None

    def _ref_file(self, project: str) -> Path:
        return self.directory / f"{project}.ref"

    def reference(self, project: str) -> str:
        try:
            return "barbican secret " + self._ref_file(project).read_text().strip()
        except OSError:
            return f"barbican secret of project {project} (not registered)"

    def register(self, project: str, ref: str) -> str:
        """Record which Barbican secret holds the project's key (its href or uuid)."""
        if not _REF.match(ref.strip()):
            raise ValidationError(
                "ref", "a Barbican secret reference: http(s)://.../v1/secrets/<uuid> or <uuid>"
            )
        private_dir(self.directory)
        path = self._ref_file(project)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(ref.strip() + "\n")
        os.replace(tmp, path)
        return self.reference(project)

    def project_key(self, project: str) -> bytes:
        ref = self.reference(project)
        try:
            text = self._ref_file(project).read_text().strip()
        except OSError:
            raise KeyUnavailable(
                project, ref, "no Barbican secret registered for it (haven keys register)"
            ) from None
        m = _REF.match(text)
        if not m:
            raise KeyUnavailable(project, ref, f"{self._ref_file(project)} is not a reference")
        from castellan.common import exception as castellan_errors
        from keystoneauth1 import exceptions as ks_errors

        manager, context = self._connect()
        try:
            secret = manager.get(context, m.group(1))
        except castellan_errors.ManagedObjectNotFoundError:
            raise KeyRevoked(project, ref, "the secret is gone (deleted by its owner)") from None
        except castellan_errors.KeyManagerError as exc:
            # castellan raises it while handling barbicanclient's error: that is the answer
            raise _refusal(project, ref, exc.__context__ or exc) from None
        except ks_errors.Unauthorized:
            raise KeyUnavailable(project, ref, "Keystone refuses Haven's user (401)") from None
        except ks_errors.EndpointNotFound:
            raise KeyUnavailable(
                project, ref, f"no key-manager endpoint in the catalog of {self.cloud}"
            ) from None
        except ks_errors.ClientException as exc:  # connection refused, timeouts, 5xx
            raise KeyStoreUnreachable("barbican", f"{type(exc).__name__}: {exc}"[:200]) from None
        data = secret.get_encoded()
        if not isinstance(data, bytes) or len(data) != KEY_LEN:
            raise KeyUnavailable(project, ref, "the secret is not a 256-bit symmetric key")
        return data

    def _connect(self) -> tuple[Any, Any]:
        """castellan's Barbican manager and Haven's credentials, from the clouds.yaml
        entry (read once per store; the key itself is read at every use)."""
        if self._manager is not None:
            return self._manager, self._context
        try:
            import openstack.config
        except ImportError:
            raise ValidationError(
                self.setting,
                "reading clouds.yaml needs openstacksdk (pip install haven-dr[openstack])",
            ) from None
        from castellan import key_manager, options
        from castellan.common.credentials import keystone_password
        from oslo_config import cfg

        try:
            region = openstack.config.OpenStackConfig().get_one(cloud=self.cloud)
        except Exception as exc:  # openstack.config raises its own ConfigException
            raise ValidationError(
                self.setting, f"clouds.yaml entry {self.cloud!r} unusable: {str(exc)[:200]}"
            ) from None
        auth = dict(region.auth)
        if not auth.get("password") or not auth.get("auth_url"):
            raise ValidationError(
                self.setting, f"clouds.yaml entry {self.cloud!r} needs auth_url and password"
            )
        register_secret(str(auth["password"]))
        conf = cfg.ConfigOpts()
        options.set_defaults(conf, backend="barbican", auth_endpoint=auth["auth_url"],
                             barbican_endpoint_type="public", number_of_retries=1)  # fmt: skip
        if region.region_name:
            conf.set_override("barbican_region_name", region.region_name, group="barbican")
        self._context = keystone_password.KeystonePassword(
            password=auth["password"],
            auth_url=auth["auth_url"],
            username=auth.get("username"),
            user_id=auth.get("user_id"),
            user_domain_name=auth.get("user_domain_name"),
            user_domain_id=auth.get("user_domain_id"),
            project_name=auth.get("project_name"),
            project_id=auth.get("project_id"),
            project_domain_name=auth.get("project_domain_name"),
            project_domain_id=auth.get("project_domain_id"),
        )
        self._manager = key_manager.API(conf)
        return self._manager, self._context


def _refusal(project: str, ref: str, exc: BaseException) -> Exception:
    """Barbican's answer (barbicanclient's error) as Haven's: a withdrawn ACL (403) or a
    deleted secret (404) is a revocation, a refused login unavailability, a server or
    network failure unreachability."""
    from barbicanclient import exceptions as barbican_errors

    if isinstance(exc, barbican_errors.HTTPAuthError):
        return KeyUnavailable(project, ref, "Barbican refuses Haven's token (401)")
    if isinstance(exc, barbican_errors.HTTPClientError):
        if exc.status_code == 403:
            return KeyRevoked(project, ref, "Barbican refuses Haven's user (403: access withdrawn)")
        if exc.status_code == 404:
            return KeyRevoked(project, ref, "the secret is gone (404)")
        return KeyUnavailable(project, ref, f"Barbican answers {exc.status_code}")
    return KeyStoreUnreachable("barbican", f"{type(exc).__name__}: {exc}"[:200])
