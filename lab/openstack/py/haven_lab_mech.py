"""ML2 mechanism driver for the Haven OpenStack lab: binds every port, moves no packets.

The lab has no L2 agent and no data plane; Nova (fake compute driver) only needs
ports that bind. Each port is bound to the network's first segment with
vif_type "other" and status ACTIVE.
"""

from neutron_lib.api.definitions import portbindings
from neutron_lib import constants
from neutron_lib.plugins.ml2 import api


class HavenLabMechanismDriver(api.MechanismDriver):
    def initialize(self):
        pass

    def bind_port(self, context):
        for segment in context.segments_to_bind:
            context.set_binding(
                segment[api.ID], portbindings.VIF_TYPE_OTHER, {}, status=constants.PORT_STATUS_ACTIVE
            )
            return
