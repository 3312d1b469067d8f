"""Imported at start-up by every lab daemon (it is on their PYTHONPATH).

Nova loads ``compute_driver`` only from inside ``nova.virt``; this finder serves the
lab's driver as ``nova.virt.haven_lab_compute`` without touching Debian's files.
"""

import importlib.abc
import importlib.util
import os
import sys


class _LabFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "nova.virt.haven_lab_compute":
            here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "haven_lab_compute.py")
            return importlib.util.spec_from_file_location(name, here)
        return None


sys.meta_path.insert(0, _LabFinder())
