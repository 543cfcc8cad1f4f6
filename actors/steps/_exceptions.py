"""Exceptions step code raises to tell the framework how a failure should be treated."""

__all__ = ["DeferredException", "InnocuousException"]


class DeferredException(Exception):
    """Work is still in progress: ``backend_code = 0``, retried with the short backoff."""


class InnocuousException(Exception):
    """A benign failure: ``backend_code = 1``, retried with the short backoff."""
