"""Base classes of the original that only exist under another name here."""

from __future__ import annotations

from actors.steps import SyncStep, abstract_step

__all__ = ["SyncInstanceUsingAnsible"]


@abstract_step
class SyncInstanceUsingAnsible(SyncStep):
    """The original's Ansible-driven base step, accepted so that steps deriving from it load.

    It is a plain :class:`~actors.steps.SyncStep`: the Ansible machinery
    (``run_playbook``, templates, ``map_sync_inputs``) is not provided, so a step
    ported from it overrides ``sync_record`` and ``delete_record``. Discovery
    never takes this class itself as a step.
    """
