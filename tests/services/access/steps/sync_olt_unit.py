import os
import sys

import requests
from multistructlog import create_logger
from xosconfig import Config
from xossynchronizer.modelaccessor import OltUnit, UnitProfile, model_accessor
from xossynchronizer.steps.syncstep import DeferredException, SyncStep

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from helpers import Helpers

log = create_logger(Config().get("logging"))


class SyncOltUnit(SyncStep):
    provides = [OltUnit]
    observes = OltUnit

    def wait_for_tp(self, technology):
        try:
            UnitProfile.objects.get(technology=technology, backend_code=1)
        except IndexError:
            raise DeferredException(
                "Waiting for a UnitProfile (technology=%s) to be synchronized" % technology
            )
        return True

    def sync_record(self, model):
        log.info("Synching device", object=str(model), **model.tologdict())

        self.wait_for_tp(model.technology)

        if model.admin_state not in ["ENABLED", "DISABLED"]:
            raise Exception("OLT Device %s admin_state has invalid value %s" % (model.id, model.admin_state))

        if not model.device_id:
            manager = Helpers.get_manager_info(model.access_service)
            onos = Helpers.get_onos(model.access_service)
            data = {
                "type": "openolt",
                "host_and_port": "%s:%s" % (model.host, model.port),
                "controller": "%s:%s" % (onos.rest_hostname, onos.rest_port),
            }
            request = requests.post(
                "%s:%d/api/v1/devices" % (manager["url"], manager["port"]), json=data, timeout=5
            )
            if request.status_code != 200:
                raise Exception("Failed to add OLT device: %s" % request.text)
            model.device_id = request.json()["id"]
            model.save_changed_fields()

    def delete_record(self, model):
        log.info("Deleting OLT device", object=str(model), **model.tologdict())
        if not model.device_id or model.backend_code == 2:
            log.warning("OltUnit %s has no device_id, it was never saved in the device manager" % model.name)
            return
        manager = Helpers.get_manager_info(model.access_service)
        request = requests.post(
            "%s:%d/api/v1/devices/%s/delete" % (manager["url"], manager["port"], model.device_id), timeout=5
        )
        if request.status_code != 200:
            raise Exception("Failed to delete OLT device from the device manager")
