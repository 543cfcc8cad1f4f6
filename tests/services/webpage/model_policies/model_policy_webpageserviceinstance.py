import base64
import json
import os
import string

from multistructlog import create_logger
from xosconfig import Config
from xossynchronizer.model_policies.policy import Policy

log = create_logger(Config().get("logging"))


class WebPageServiceInstancePolicy(Policy):
    model_name = "WebPageServiceInstance"

    def handle_create(self, service_instance):
        self.handle_update(service_instance)

    def render_index(self, service_instance):
        service = service_instance.owner.leaf_model

        fields = {
            "tenant_message": service_instance.tenant_message,
            "service_message": service.service_message,
            "foreground_color": "black",
            "background_color": "white",
        }
        if service_instance.foreground_color:
            fields["foreground_color"] = service_instance.foreground_color.html_code
        if service_instance.background_color:
            fields["background_color"] = service_instance.background_color.html_code
        images = ['<img alt="%s" src="%s">' % (i.name, i.url) for i in service_instance.embedded_images.all()]
        fields["images"] = "".join(images)

        template_fn = os.path.join(
            os.path.abspath(os.path.dirname(os.path.realpath(__file__))), "index.html.template"
        )
        with open(template_fn) as f:
            return string.Template(f.read()).substitute(fields)

    def handle_update(self, service_instance):
        if not service_instance.compute_instance:
            compute_service = self.model_accessor.PodService.objects.first()
            compute_service_instance_class = self.model_accessor.Service.objects.get(
                id=compute_service.id
            ).get_service_instance_class()

            pageservice = service_instance.owner.leaf_model
            slice = pageservice.slices.first()
            image = slice.default_image

            name = "webpageserviceinstance-%s" % service_instance.id
            compute_service_instance = compute_service_instance_class(
                slice=slice, owner=compute_service, image=image, name=name, no_sync=True
            )
            compute_service_instance.save()

            data = {"index.html": self.render_index(service_instance)}
            cfmap = self.model_accessor.PodConfigMap(
                name="webpageserviceinstance-map-%s" % service_instance.id,
                trust_domain=slice.trust_domain,
                data=json.dumps(data),
            )
            cfmap.save()
            cfmap_mnt = self.model_accessor.PodConfigVolumeMount(
                config=cfmap,
                service_instance=compute_service_instance,
                mount_path="/usr/local/apache2/htdocs",
            )
            cfmap_mnt.save()

            data = {
                "service_secret.txt": base64.b64encode(str(pageservice.service_secret).encode()).decode(),
                "tenant_secret.txt": base64.b64encode(str(service_instance.tenant_secret).encode()).decode(),
            }
            secret = self.model_accessor.PodSecret(
                name="webpageserviceinstance-secret-%s" % service_instance.id,
                trust_domain=slice.trust_domain,
                data=json.dumps(data),
            )
            secret.save()
            secret_mnt = self.model_accessor.PodSecretVolumeMount(
                secret=secret,
                service_instance=compute_service_instance,
                mount_path="/usr/local/apache2/secrets",
            )
            secret_mnt.save()

            compute_service_instance.no_sync = False
            compute_service_instance.save(update_fields=["no_sync"])

            service_instance.compute_instance = compute_service_instance
            service_instance.save(update_fields=["compute_instance"])
        else:
            compute_instance = service_instance.compute_instance
            mnt = compute_instance.leaf_model.pod_config_volume_mounts.first()
            config = mnt.config
            new_data = json.dumps({"index.html": self.render_index(service_instance)})
            if new_data != config.data:
                config.data = new_data
                config.save(always_update_timestamp=True)
                compute_instance.save(always_update_timestamp=True)

    def handle_delete(self, service_instance):
        log.info("handle_delete")
        if service_instance.compute_instance:
            log.info("has a compute_instance")
            service_instance.compute_instance.delete()
            service_instance.compute_instance = None
            service_instance.save(update_fields=["compute_instance"])
