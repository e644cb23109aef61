"""Event types the runtime itself emits.

Property events carry the KRules names so that behaviours written in that style read the same.
Lifecycle events are delivered to the supervisor subject (`supervisor:<name>`) that watches the
actor they describe, with the actor's name in the payload's "subject" field.
"""

from __future__ import annotations

PROPERTY_CHANGED = "subject-property-changed"
PROPERTY_DELETED = "subject-property-deleted"

SUBJECT_ACTIVATED = "subject-activated"
SUBJECT_PASSIVATED = "subject-passivated"
SUBJECT_RESTARTED = "subject-restarted"
SUBJECT_STOPPED = "subject-stopped"
SUPERVISOR_ESCALATED = "supervisor-escalated"

LIFECYCLE_EVENTS = frozenset(
    {
        SUBJECT_ACTIVATED,
        SUBJECT_PASSIVATED,
        SUBJECT_RESTARTED,
        SUBJECT_STOPPED,
        SUPERVISOR_ESCALATED,
    }
)
