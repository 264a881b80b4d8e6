"""The project's exceptions: one place, so callers can catch exactly what they mean.

Messages say what was expected, what was found, and what to do about it.
"""

from __future__ import annotations


class LaminIntegrationsError(Exception):
    """Base class: catch this to handle any error raised on purpose by this package."""


class ObjectDoesNotExist(LaminIntegrationsError, LookupError):
    """No record matched a `get()` or `one()`."""


class MultipleResultsFound(LaminIntegrationsError, LookupError):
    """More than one record matched where exactly one was expected."""


class FieldError(LaminIntegrationsError, ValueError):
    """A field or lookup name that the registry does not have."""


class ValidationError(LaminIntegrationsError, ValueError):
    """A value of the wrong type or shape, rejected before anything is written."""


class InvalidKey(ValidationError):
    """An artifact key that is absolute, contains `..` or escapes the storage root."""


class InstanceError(LaminIntegrationsError, RuntimeError):
    """The registry database cannot be reached, created or upgraded."""


class RegistryUnavailable(InstanceError):
    """The registry cannot be reached or written right now (server down, database locked past
    the busy timeout, disk full); adapters and `ln.track()` journal what they could not write."""


class IntegrityError(LaminIntegrationsError, RuntimeError):
    """A write that would break a registry invariant (for example a lineage cycle)."""


class NotFoundOnDisk(LaminIntegrationsError, FileNotFoundError):
    """A path given to the registry does not exist or cannot be read."""


# lamindb's names for the errors its users catch (`ln.errors.TrackNotCalled`, ...).


class InvalidArgument(ValidationError):
    """An argument of the wrong kind (lamindb's name)."""


class TrackNotCalled(ValidationError):
    """`ln.finish()` (or what needs the current run) before `ln.track()`."""


class UpdateContext(ValidationError):
    """The tracked uid no longer fits the script (its source changed under a pinned version)."""


DoesNotExist = ObjectDoesNotExist
