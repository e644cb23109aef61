"""The programming model of subjects: names, property values, events, state, behaviours."""

from ._behaviours import Handler, Middleware, Next, Registry
from ._context import Context
from ._errors import SubjectsError
from ._events import (
    LIFECYCLE_EVENTS,
    PROPERTY_CHANGED,
    PROPERTY_DELETED,
    SUBJECT_ACTIVATED,
    SUBJECT_PASSIVATED,
    SUBJECT_RESTARTED,
    SUBJECT_STOPPED,
    SUPERVISOR_ESCALATED,
)
from ._names import MAX_NAME_BYTES, InvalidSubjectName, check_subject_name
from ._refused import InvalidPayload
from ._state import SubjectState, TurnClosed
from ._values import ValueNotStorable, normalize

__all__ = [
    "LIFECYCLE_EVENTS",
    "MAX_NAME_BYTES",
    "PROPERTY_CHANGED",
    "PROPERTY_DELETED",
    "SUBJECT_ACTIVATED",
    "SUBJECT_PASSIVATED",
    "SUBJECT_RESTARTED",
    "SUBJECT_STOPPED",
    "SUPERVISOR_ESCALATED",
    "Context",
    "Handler",
    "InvalidPayload",
    "InvalidSubjectName",
    "Middleware",
    "Next",
    "Registry",
    "SubjectState",
    "SubjectsError",
    "TurnClosed",
    "ValueNotStorable",
    "check_subject_name",
    "normalize",
]
