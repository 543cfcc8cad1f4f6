class Helpers:
    @staticmethod
    def format_url(url):
        if "http" in url:
            return url
        else:
            return "http://%s" % url

    @staticmethod
    def get_manager_info(access_service):
        return {
            "url": Helpers.format_url(access_service.manager_url),
            "port": access_service.manager_port,
        }

    @staticmethod
    def get_onos(access_service):
        onos = [s.leaf_model for s in access_service.provider_services if "onos" in s.name.lower()]
        if len(onos) == 0:
            raise Exception("Cannot find ONOS service in provider_services of AccessService")
        return onos[0]

    @staticmethod
    def datapath_id_to_hex(id):
        if isinstance(id, str):
            id = int(id)
        return "{0:0{1}x}".format(id, 16)
