"""The repository's root conftest: the actors.testing pytest plugin, for runs from a checkout.

Installed, the plugin comes by its ``pytest11`` entry point (under the same name, so
it is not registered twice); a checkout whose install predates the plugin gets it here.
"""

pytest_plugins = ["actors_pytest_plugin"]
