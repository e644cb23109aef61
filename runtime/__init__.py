"""The engine of subjects: activation, mailboxes, turns, supervision, persistence."""

from actors import SubjectsError  # the root of every error, re-exported for `except`

from ._backoff import Backoff
from ._clock import Clock
from ._deadletters import DeadLetter, DeadLetters
from ._errors import (
    AskCycleError,
    AskTimeout,
    BatchFailed,
    CascadeTooDeep,
    MailboxFull,
    NoHandler,
    NotDurable,
    RuntimeNotRunning,
    StaleVersion,
    SubjectStopped,
)
from ._observe import Observed
from ._ref import SubjectRef, SubjectView
from ._run import run
from ._runtime import Runtime
from ._scheduler import Scheduler
from ._supervision import Policy, Supervisor

__all__ = [
    "AskCycleError",
    "AskTimeout",
    "Backoff",
    "BatchFailed",
    "CascadeTooDeep",
    "Clock",
    "DeadLetter",
    "DeadLetters",
    "MailboxFull",
    "NoHandler",
    "NotDurable",
    "Observed",
    "Policy",
    "Runtime",
    "RuntimeNotRunning",
    "Scheduler",
    "StaleVersion",
    "SubjectRef",
    "SubjectStopped",
    "SubjectView",
    "SubjectsError",
    "Supervisor",
    "run",
]
