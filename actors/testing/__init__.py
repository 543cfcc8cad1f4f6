"""A test kit for synchronizers: run yours from its own config, fast, with no broker and no sleeps.

>>> from actors.testing import SyncHarness
>>> with SyncHarness("config.yaml") as sync:
...     obj = sync.objects.MyModel.create(first_name="Jane", last_name="Roe")
...     sync.run_until_idle()
...     sync.assert_enacted(obj)
...     assert sync.calls("SyncMyModel.sync_record")[0].arg.id == obj.id

With pytest, the ``sync`` fixture does the same (the plugin comes with the
package); see ``docs/testing.md``.
"""

from ._bus import DeadLetter, InProcessBus
from ._driving import SynchronizerTestError
from ._harness import SyncHarness
from ._record import Call, LogLine

__all__ = [
    "Call",
    "DeadLetter",
    "InProcessBus",
    "LogLine",
    "SyncHarness",
    "SynchronizerTestError",
]
