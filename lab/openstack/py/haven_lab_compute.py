"""Nova compute driver for the Haven lab: Nova's FakeDriver plus assisted volume snapshots.

Cinder's NFS driver snapshots an attached volume by writing a new qcow2 overlay and then
asking Nova to switch the guest onto it (and, on delete, to merge the chain). Libvirt does
that with blockRebase/blockCommit; FakeDriver raises NotImplementedError, so snapshots of
in-use volumes would hang in "creating". No guest runs here, so the switch is a no-op and
the merge is done on the files with qemu-img, as libvirt itself does for a stopped guest.
The region's share is mounted at $HAVEN_LAB_NFS_DIR on this host.
"""

import json
import os
import subprocess

from oslo_log import log as logging

from nova.virt import fake
from nova.volume import cinder

LOG = logging.getLogger(__name__)


def _info(path):
    out = subprocess.run(["qemu-img", "info", "--output", "json", "-U", path],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


class HavenLabDriver(fake.FakeDriver):
    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only)
        self._volume_api = cinder.API()

    def _dir(self):
        return os.environ["HAVEN_LAB_NFS_DIR"]

    def volume_snapshot_create(self, context, instance, volume_id, create_info):
        LOG.info("lab: volume_snapshot_create %s %s", volume_id, create_info)
        self._volume_api.update_snapshot_status(context, create_info["snapshot_id"], "creating")

    def volume_snapshot_delete(self, context, instance, volume_id, snapshot_id, delete_info):
        LOG.info("lab: volume_snapshot_delete %s %s", volume_id, delete_info)
        d = self._dir()
        try:
            with open(os.path.join(d, f"volume-{volume_id}.info")) as f:
                active = os.path.join(d, json.load(f)["active"])
            target = delete_info["merge_target_file"]
            top = delete_info["file_to_merge"]
            if target is None:
                # pull: the active image absorbs its backing chain down to `top` (None: all)
                cmd = ["qemu-img", "rebase", "-f", "qcow2"]
                if top:
                    cmd += ["-F", _info(os.path.join(d, top))["format"], "-b", top]
                else:
                    cmd += ["-b", ""]
                subprocess.run(cmd + [active], check=True, cwd=d, capture_output=True)
            else:
                # commit `top` into `target`, then point top's overlay at `target`
                top_path = os.path.join(d, top)
                overlay = active
                while True:
                    backing = _info(overlay).get("backing-filename")
                    if backing is None:
                        raise RuntimeError(f"{top} is not in the chain of {active}")
                    if os.path.basename(backing) == top:
                        break
                    overlay = os.path.join(d, os.path.basename(backing))
                subprocess.run(["qemu-img", "commit", "-f", "qcow2", "-d", top_path],
                               check=True, capture_output=True)
                fmt = _info(os.path.join(d, target))["format"]
                subprocess.run(["qemu-img", "rebase", "-u", "-f", "qcow2", "-F", fmt, "-b", target,
                                overlay], check=True, cwd=d, capture_output=True)
        except Exception:
            LOG.exception("lab: volume_snapshot_delete failed")
            self._volume_api.update_snapshot_status(context, snapshot_id, "error_deleting")
            raise
        self._volume_api.update_snapshot_status(context, snapshot_id, "deleting")
