"""The programming model of subjects: names, property values, events, state, behaviours."""

from ._behaviours import Handler, Middleware, Next, Registry
from ._compiled import check as _check_compiled
from ._context import Context
from ._errors import SubjectsError, TurnClosed, ValueNotStorable
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
from ._state import SubjectState
from ._values import normalize

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

# A compiled build whose sources were edited since it was built warns, naming the modules.
_check_compiled()
