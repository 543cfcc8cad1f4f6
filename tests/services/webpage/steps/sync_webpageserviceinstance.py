from multistructlog import create_logger
from xosconfig import Config
from xossynchronizer.modelaccessor import WebPageService, WebPageServiceInstance
from xossynchronizer.steps.syncstep import SyncStep

log = create_logger(Config().get("logging"))


class SyncWebPageServiceInstance(SyncStep):
    provides = [WebPageServiceInstance]
    observes = WebPageServiceInstance
    requested_interval = 0

    def __init__(self, *args, **kwargs):
        super(SyncWebPageServiceInstance, self).__init__(*args, **kwargs)

    def sync_record(self, o):
        # The page is configured through the config map the policy writes; nothing to push here.
        # No delete_record either, as in the original service.
        log.info("synced web page", object=str(o), owner=WebPageService.objects.get(id=o.owner_id).name)
