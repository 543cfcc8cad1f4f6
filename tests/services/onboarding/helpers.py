from xossynchronizer.steps.syncstep import DeferredException


class OnboardingHelpers:
    @staticmethod
    def validate_onu(model_accessor, log, si):
        """Check the ONU of ``si`` against the whitelist: [valid, message].

        Raises DeferredException while the ONU is not known yet.
        """
        service = si.owner.leaf_model

        matching_entries = model_accessor.OnboardingWhiteListEntry.objects.filter(owner_id=service.id)
        matching_entries = [
            e for e in matching_entries if e.serial_number.lower() == si.serial_number.lower()
        ]

        if len(matching_entries) == 0:
            log.warn(
                "ONU not found in whitelist", object=str(si), serial_number=si.serial_number, **si.tologdict()
            )
            return [False, "ONU not found in whitelist"]

        whitelisted = matching_entries[0]
        try:
            onu = model_accessor.OnuRecord.objects.get(serial_number=si.serial_number)
            pon_port = onu.pon_port
        except IndexError:
            raise DeferredException("ONU device %s is not know to XOS yet" % si.serial_number)

        if onu.admin_state == "ADMIN_DISABLED":
            return [False, "ONU has been manually disabled"]

        if pon_port.port_no != whitelisted.pon_port_id or si.of_dpid != whitelisted.device_id:
            return [False, "ONU activated in wrong location"]

        return [True, "ONU has been validated"]

    @staticmethod
    def find_or_create_si(model_accessor, log, event):
        try:
            si = model_accessor.OnboardingServiceInstance.objects.get(serial_number=event["serialNumber"])
            log.debug("OnboardingHelpers: Found existing OnboardingServiceInstance", si=si)
        except IndexError:
            si = model_accessor.OnboardingServiceInstance(
                serial_number=event["serialNumber"],
                of_dpid=event["deviceId"],
                uni_port_id=int(event["portNumber"]),
                owner=model_accessor.OnboardingService.objects.first(),
            )
            log.debug("OnboardingHelpers: Created new OnboardingServiceInstance", si=si)
        return si
