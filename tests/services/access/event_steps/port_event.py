import datetime
import json
import time

from multistructlog import create_logger
from xosconfig import Config
from xoskafka import XOSKafkaProducer
from xossynchronizer.event_steps.eventstep import EventStep

log = create_logger(Config().get("logging"))


class UplinkPortEventStep(EventStep):
    topics = ["access.events.uplink"]
    technology = "kafka"

    def __init__(self, *args, **kwargs):
        super(UplinkPortEventStep, self).__init__(*args, **kwargs)

    def subscriber_olt_closure(self, olt):
        subscribers = []
        for pon_port in olt.pon_ports.all():
            for onu_unit in pon_port.onu_units.all():
                for si in onu_unit.access_service_instances.all():
                    for subscriber in si.westbound_service_instances:
                        subscribers.append(subscriber)
        return subscribers

    def send_alarm(self, olt, value):
        timestamp = time.mktime(
            datetime.datetime.strptime(value["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").timetuple()
        )
        state = "RAISED" if olt.link_status == "down" else "CLEARED"
        subscribers = [x.name for x in self.subscriber_olt_closure(olt)]
        alarm = {
            "category": "OLT",
            "reported_ts": time.time(),
            "raised_ts": timestamp,
            "state": state,
            "alarm_type_name": "OLT.PORT_LOS",
            "resource_id": olt.device_id,
            "context": {"affected_subscribers": subscribers, "oltunit.name": olt.name},
        }
        XOSKafkaProducer.produce("xos.alarms.access-service", olt.device_id, json.dumps(alarm, default=repr))

    def process_event(self, event):
        log.info("Received uplink port event", kafka_event=event)
        value = json.loads(event.value)

        olt = self.model_accessor.OltUnit.objects.filter(
            switch_datapath_id=value["deviceId"], switch_port=value["portId"]
        )
        if not olt:
            log.info("Port event not for a known olt", deviceId=value["deviceId"], portId=value["portId"])
            return
        olt = olt[0]

        link_status = "up" if value["enabled"] else "down"
        if link_status != olt.link_status:
            olt.link_status = link_status
            olt.save_changed_fields()
            self.send_alarm(olt, value)
