"""Haven's lab kit: the labs Haven is demonstrated and tested on, as Python.

Not part of the product. ``haven.*`` never imports this package (import-linter enforces
it), with one exception: ``haven demo`` (``haven.cli.demo``) runs ``haven_lab.demo``. The
kit is installed alongside ``haven`` (same ``src/`` tree, same distribution) so that the
CLI, the tests and the benches import one copy of it; the lab scripts it drives
(``lab/kvm/*.sh``) stay in the source checkout.

- ``haven_lab.kvm``: the two-site KVM lab (``lab/kvm``): finding or starting it, its sites
  as a spec and as drivers, booting and removing the tiny lab guests.
- ``haven_lab.demo``: the ``haven demo`` scenario on that lab.
"""
