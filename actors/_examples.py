"""Where the ``steps_examples`` synchronizer (the default of ``python -m actors.main``) lives.

In a checkout or an editable install it is the ``steps_examples`` folder next to the
package; a regular install (``pip install .``, a wheel) puts a copy under
``<prefix>/share/actors/steps_examples`` (``[options.data_files]`` in setup.cfg).
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

__all__ = ["examples_config"]

_SHARE = Path("share") / "actors" / "steps_examples"


def _candidates() -> list[Path]:
    """The folders that may hold the examples, in the order they are tried."""
    folders = [Path(__file__).resolve().parent.parent / "steps_examples"]
    prefixes = [Path(sysconfig.get_path("data")), Path(sys.prefix), Path(sys.base_prefix)]
    user_scheme = f"{sysconfig.get_preferred_scheme('user')}"
    try:
        prefixes.append(Path(sysconfig.get_path("data", user_scheme)))
    except KeyError:  # a platform without a user scheme
        pass
    folders.extend(prefix / _SHARE for prefix in prefixes)
    return folders


def examples_config() -> Path:
    """The examples' ``config.yaml``: the first that exists, else the checkout's path (for the message)."""
    candidates = _candidates()
    for folder in candidates:
        config = folder / "config.yaml"
        if config.is_file():
            return config
    return candidates[0] / "config.yaml"
