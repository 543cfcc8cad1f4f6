"""A synchronizer laid out like a real CORD service (e.g. olt-service, att-workflow-driver).

Written by the tests into a temporary folder (no service is vendored): ``xos/synchronizer``
with ``config.yaml``, a ``helpers.py`` next to it that steps of every kind import by
plain name, ``models/`` with the xproto, a ``models.py`` (custom_python) and
``convenience/`` wrappers that extend the core's, and one step of each kind.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

__all__ = ["write_service"]

FILES: dict[str, str] = {
    "helpers.py": """
        # Next to config.yaml, as in att-workflow-driver: imported by plain name from every step kind.
        import json

        IMPORTS = []


        class VoltHelpers(object):
            @staticmethod
            def alarm(onu):
                return json.dumps({"id": "xos.voltservice.%s.ONU_LOS" % onu.serial_number,
                                   "state": onu.oper_status})
        """,
    "models/volt.xproto": """
        option app_label = "volt";

        message VOLTService (Service) {
            option custom_python = "True";
            optional string voltha_url = 1 [max_length = 256, default = "voltha.voltha.svc"];
        }
        message VOLTServiceInstance (ServiceInstance) {
            option owner_class_name = "VOLTService";
            option custom_python = "True";
            optional string description = 1 [max_length = 254];
            optional manytoone onu_device->ONUDevice:volt_service_instances = 2:1001 [db_index = True];
        }
        message ONUDevice (XOSBase) {
            option custom_python = "True";
            required string serial_number = 1 [max_length = 254, tosca_key = True];
            optional string oper_status = 2 [max_length = 254];
            optional manytoone volt_service->VOLTService:onu_devices = 3:1001 [db_index = True];
        }
        message RCORDSubscriber (ServiceInstance) {
            optional int32 c_tag = 1;
            optional string onu_device = 2 [max_length = 256];
        }
        """,
    "models/models.py": """
        # Written for the XOS core (Django), as services' models.py are.
        from xos.exceptions import XOSValidationError, XOSNotFound
        from django.core.exceptions import ObjectDoesNotExist
        from models_decl import VOLTService_decl, VOLTServiceInstance_decl, ONUDevice_decl

        SAVES = []


        class VOLTService(VOLTService_decl):
            class Meta:
                proxy = True

            @staticmethod
            def has_access_device(serial_number):
                try:
                    ONUDevice.objects.get(serial_number=serial_number)
                    return True
                except IndexError:
                    return False

            def get_onu_status(self, serial_number):
                try:
                    return ONUDevice.objects.get(serial_number=serial_number).oper_status
                except ObjectDoesNotExist:
                    raise XOSNotFound("Can't find ONU %s" % serial_number)


        class VOLTServiceInstance(VOLTServiceInstance_decl):
            class Meta:
                proxy = True

            def save(self, *args, **kwargs):
                self.validate_unique_service_specific_id(none_okay=True)
                SAVES.append(self.name)
                super(VOLTServiceInstance, self).save(*args, **kwargs)


        class ONUDevice(ONUDevice_decl):
            class Meta:
                proxy = True

            def save(self, *args, **kwargs):
                if not self.serial_number.isalnum():
                    raise XOSValidationError("The serial number %s is not valid" % self.serial_number)
                super(ONUDevice, self).save(*args, **kwargs)

            def delete(self, *args, **kwargs):
                if len(self.volt_service_instances.all()) > 0:
                    raise XOSValidationError(
                        'ONU "%s" can\\'t be deleted as it has subscribers' % self.serial_number)
                super(ONUDevice, self).delete(*args, **kwargs)
        """,
    "models/convenience/voltservice.py": """
        from xosapi.orm import register_convenience_wrapper
        from xosapi.convenience.service import ORMWrapperService


        class ORMWrapperVOLTService(ORMWrapperService):
            @property
            def onos_app_names(self):
                return [s.name for s in self.provider_services]


        register_convenience_wrapper("VOLTService", ORMWrapperVOLTService)
        """,
    "models/convenience/voltserviceinstance.py": """
        from xosapi.orm import register_convenience_wrapper
        from xosapi.convenience.serviceinstance import ORMWrapperServiceInstance


        class ORMWrapperVOLTServiceInstance(ORMWrapperServiceInstance):
            @property
            def subscriber(self):
                return self.get_westbound_service_instance_properties("c_tag", include_self=True)


        register_convenience_wrapper("VOLTServiceInstance", ORMWrapperVOLTServiceInstance)
        """,
    "steps/sync_volt_si.py": """
        from xossynchronizer.steps.syncstep import SyncStep
        from xossynchronizer.modelaccessor import VOLTServiceInstance
        from helpers import VoltHelpers, IMPORTS

        IMPORTS.append("steps")


        class SyncVOLTServiceInstance(SyncStep):
            provides = [VOLTServiceInstance]
            observes = VOLTServiceInstance

            def sync_record(self, o):
                o.description = "c_tag %s" % o.subscriber
                o.save(update_fields=["description"])

            def delete_record(self, o):
                pass
        """,
    "pull_steps/pull_onus.py": """
        from xossynchronizer.pull_steps.pullstep import PullStep
        from xossynchronizer.modelaccessor import ONUDevice
        from xoskafka import XOSKafkaProducer
        from helpers import VoltHelpers, IMPORTS

        IMPORTS.append("pull_steps")
        ALARM_TOPIC = "{alarm_topic}"


        class ONUDevicePullStep(PullStep):
            def __init__(self, model_accessor=None):
                super(ONUDevicePullStep, self).__init__(
                    model_accessor=model_accessor, observed_model=ONUDevice)

            def pull_records(self):
                for onu in ONUDevice.objects.filter(oper_status="down"):
                    XOSKafkaProducer.produce(ALARM_TOPIC, onu.serial_number, VoltHelpers.alarm(onu))
        """,
    "event_steps/onu_event.py": """
        import json
        from xossynchronizer.event_steps.eventstep import EventStep
        from helpers import VoltHelpers, IMPORTS

        IMPORTS.append("event_steps")


        class ONUEventStep(EventStep):
            topics = ["onu.events"]
            technology = "kafka"

            def process_event(self, event):
                value = json.loads(event.value)
                onu = self.model_accessor.ONUDevice.objects.get(serial_number=value["serialNumber"])
                onu.oper_status = value["status"]
                onu.save_changed_fields(always_update_timestamp=True)
        """,
    "model_policies/model_policy_volt_si.py": """
        from xossynchronizer.model_policies.policy import Policy
        from helpers import VoltHelpers, IMPORTS

        IMPORTS.append("model_policies")


        class VOLTServiceInstancePolicy(Policy):
            model_name = "VOLTServiceInstance"

            def handle_create(self, si):
                return self.handle_update(si)

            def handle_update(self, si):
                si.create_eastbound_instance()
        """,
}

CONFIG = """
name: {name}
models_dir: models
steps_dir: steps
pull_steps_dir: pull_steps
event_steps_dir: event_steps
model_policies_dir: model_policies
data_dir: data
event_bus:
  kind: kafka
  endpoint: "{bootstrap}"
runtime:
  pull_period: {pull_period}
"""


def write_service(
    root: Path,
    *,
    name: str = "volt",
    bootstrap: str = "127.0.0.1:9",
    pull_period: float = 60,
    alarm_topic: str = "xos.alarms.volt-service",
) -> Path:
    """Write the service under ``root/xos/synchronizer``; returns the path of its ``config.yaml``.

    Its pull step publishes one alarm per ONU with ``oper_status == "down"`` to ``alarm_topic``.
    """
    base = root / "xos" / "synchronizer"
    for relative, text in FILES.items():
        path = base / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = textwrap.dedent(text).lstrip()
        path.write_text(text.replace("{alarm_topic}", alarm_topic))
    for package in ("steps", "pull_steps", "event_steps", "model_policies", "models"):
        (base / package / "__init__.py").write_text("")
    config = base / "config.yaml"
    config.write_text(CONFIG.format(name=name, bootstrap=bootstrap, pull_period=pull_period))
    return config
