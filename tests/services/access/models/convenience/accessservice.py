import logging as log

from xosapi.convenience.service import ORMWrapperService
from xosapi.orm import ORMWrapper, register_convenience_wrapper


class ORMWrapperAccessService(ORMWrapperService):
    def get_onu_sn_from_openflow(self, dp_id, port_no):
        """The serial number of the ONU on port ``port_no`` of the OLT ``dp_id``."""
        log.debug("Searching OnuUnit for %s:%s" % (dp_id, port_no))
        try:
            olt = self.stub.OltUnit.objects.get(switch_datapath_id=dp_id)
            ports = self.stub.AccessPonPort.objects.filter(olt_unit_id=olt.id, port_no=port_no)
            onu = [o for p in ports for o in p.onu_units.all()][0]
            return onu.serial_number
        except IndexError:
            log.error("Can't find ONU for %s:%s" % (dp_id, port_no))


register_convenience_wrapper("AccessService", ORMWrapperAccessService)
