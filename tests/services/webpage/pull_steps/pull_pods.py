import os
import sys

from multistructlog import create_logger
from xosconfig import Config
from xossynchronizer.modelaccessor import PodServiceInstance
from xossynchronizer.pull_steps.pullstep import PullStep

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from podhelpers import read_pod_ips

log = create_logger(Config().get("logging"))


class PodIpPullStep(PullStep):
    def __init__(self, model_accessor):
        super(PodIpPullStep, self).__init__(model_accessor=model_accessor, observed_model=PodServiceInstance)

    def pull_records(self):
        pods = read_pod_ips()
        for instance in PodServiceInstance.objects.all():
            ip = pods.get(instance.name)
            if ip and ip != instance.pod_ip:
                log.info("pod ip learned", name=instance.name, pod_ip=ip)
                instance.pod_ip = ip
                instance.save_changed_fields()
