"""The ``http`` settings: where the observability endpoint listens, and whether it runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_HTTP_ADDRESS", "HttpSettings", "http_settings"]

DEFAULT_HTTP_ADDRESS = "127.0.0.1:8080"


@dataclass(frozen=True)
class HttpSettings:
    """``http.enabled`` and ``http.address`` (``host:port``; port 0 picks a free port)."""

    enabled: bool = True
    address: str = DEFAULT_HTTP_ADDRESS


def http_settings(config: Any) -> HttpSettings | None:
    """The config's ``http`` section, or ``None`` when the config has none.

    The one place the settings are read (``ACTORS_HTTP__ADDRESS`` and
    ``ACTORS_HTTP__ENABLED`` reach it through the config's environment overrides).
    The main job and ``core`` serve the endpoint with the defaults when this is
    ``None``; an embedded synchronizer serves it only when the section is there.
    """
    settings = getattr(config, "settings", None)
    if settings is None or "http" not in settings.model_fields_set:
        return None
    section = settings.http
    return HttpSettings(enabled=section.enabled, address=section.address)
