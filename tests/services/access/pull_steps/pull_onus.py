import os
import sys

import requests
from multistructlog import create_logger
from requests import ConnectionError
from requests.models import InvalidURL
from xosconfig import Config
from xossynchronizer.modelaccessor import AccessPonPort, AccessService, OltUnit, OnuUnit, model_accessor
from xossynchronizer.pull_steps.pullstep import PullStep

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from helpers import Helpers

log = create_logger(Config().get("logging"))


class OnuUnitPullStep(PullStep):
    def __init__(self, model_accessor):
        super(OnuUnitPullStep, self).__init__(model_accessor=model_accessor, observed_model=OnuUnit)

    def pull_records(self):
        log.debug("pulling ONU devices from the device manager")

        try:
            self.access_service = AccessService.objects.all()[0]
        except IndexError:
            log.warn("AccessService not found")
            return

        manager = Helpers.get_manager_info(self.access_service)
        try:
            r = requests.get("%s:%s/api/v1/devices" % (manager["url"], manager["port"]), timeout=1)
            if r.status_code != 200:
                log.warn("It was not possible to fetch devices from the device manager")
            elif r.text:
                devices = [d for d in r.json()["items"] if "onu" in d["type"]]
                self.create_or_update_onus(devices)
        except (ValueError, TypeError) as e:
            log.warn("Invalid Json received in response from the device manager", reason=e)
        except ConnectionError as e:
            log.warn("It was not possible to connect to the device manager", reason=e)
        except InvalidURL as e:
            log.warn("The device manager url is invalid", reason=e)

    def create_or_update_onus(self, onus):
        for onu in onus:
            try:
                model = OnuUnit.objects.filter(serial_number=onu["serial_number"])[0]
            except IndexError:
                model = OnuUnit()
                model.serial_number = onu["serial_number"]

            try:
                olt = OltUnit.objects.get(device_id=onu["parent_id"])
            except IndexError:
                log.warning("Unable to find olt for OnuUnit", serial_number=onu["serial_number"])
                continue

            try:
                pon_port = AccessPonPort.objects.get(port_no=onu["parent_port_no"], olt_unit_id=olt.id)
            except IndexError:
                log.warning("Unable to find pon_port for OnuUnit", serial_number=onu["serial_number"])
                continue

            model.vendor = onu["vendor"]
            model.device_id = onu["id"]
            model.oper_status = onu["oper_status"]
            model.xos_managed = False
            model.pon_port = pon_port
            model.pon_port_id = pon_port.id
            model.save_changed_fields()
