# Model methods and save hooks that the XOS core merged into the generated
# classes of the models with custom_python (the Django side of the service).
from xos.exceptions import XOSValidationError

from models_decl import AccessService_decl
from models_decl import OltUnit_decl
from models_decl import OnuUnit_decl


class AccessService(AccessService_decl):
    class Meta:
        proxy = True

    @staticmethod
    def has_access_device(serial_number):
        try:
            OnuUnit.objects.get(serial_number=serial_number)
            return True
        except IndexError:
            return False


class OltUnit(OltUnit_decl):
    class Meta:
        proxy = True

    def save(self, *args, **kwargs):
        if (self.host or self.port) and self.mac_address:
            raise XOSValidationError(
                "You can't specify both host/port and mac_address for OltUnit "
                "[host=%s, port=%s, mac_address=%s]" % (self.host, self.port, self.mac_address)
            )
        super(OltUnit, self).save(*args, **kwargs)


class OnuUnit(OnuUnit_decl):
    class Meta:
        proxy = True

    def delete(self, *args, **kwargs):
        if len(self.access_service_instances.all()) > 0:
            raise XOSValidationError(
                'ONU "%s" can\'t be deleted as it has subscribers associated with it' % self.serial_number
            )
        super(OnuUnit, self).delete(*args, **kwargs)
