import json

from multistructlog import create_logger
from xosconfig import Config
from xoskafka import XOSKafkaProducer
from xossynchronizer.event_steps.eventstep import EventStep

log = create_logger(Config().get("logging"))


class PonPortEventStep(EventStep):
    topics = ["access.events.pon"]
    technology = "kafka"

    def process_event(self, event):
        value = json.loads(event.value)

        olt = self.model_accessor.OltUnit.objects.filter(device_id=value["deviceId"])
        if not olt:
            log.info("Event for unknown olt", deviceId=value["deviceId"])
            return
        olt = olt[0]

        # The device manager sends port numbers as strings.
        port = self.model_accessor.AccessPonPort.objects.filter(olt_unit_id=olt.id, port_no=value["portId"])
        if not port:
            log.info("Event for unknown port", deviceId=value["deviceId"], portId=value["portId"])
            return
        port = port[0]

        oper_status = "enabled" if value["enabled"] else "disabled"
        if oper_status != port.oper_status:
            port.oper_status = oper_status
            port.save_changed_fields()
            key = "%s:%s" % (olt.device_id, port.port_no)
            XOSKafkaProducer.produce(
                "xos.alarms.access-service", key, json.dumps({"port": key, "state": oper_status})
            )
