"""The public API is a contract: these names are what users import. Changing the lists below
is a decision, not an accident."""

import actors
import runtime
import storage
from runtime import edge

ACTORS = {
    "LIFECYCLE_EVENTS", "MAX_NAME_BYTES", "PROPERTY_CHANGED", "PROPERTY_DELETED",
    "SUBJECT_ACTIVATED", "SUBJECT_PASSIVATED", "SUBJECT_RESTARTED", "SUBJECT_STOPPED",
    "SUPERVISOR_ESCALATED", "Context", "Handler", "InvalidPayload", "InvalidSubjectName",
    "Middleware", "Next", "Registry", "SubjectState", "SubjectsError", "TurnClosed",
    "ValueNotStorable",
    "check_subject_name", "normalize",
}
RUNTIME = {
    "AskCycleError", "AskTimeout", "Backoff", "BatchFailed", "CascadeTooDeep", "Clock",
    "DeadLetter", "DeadLetters", "MailboxFull", "NoHandler", "NotDurable", "Observed", "Policy",
    "Runtime", "RuntimeNotRunning", "Scheduler", "StaleVersion", "SubjectRef", "SubjectStopped",
    "SubjectView", "SubjectsError", "Supervisor", "run",
}
STORAGE = {
    "Delete", "MemoryStore", "SQLiteStore", "Snapshot", "SnapshotCorrupt", "SnapshotRefused",
    "SnapshotStore", "StoreError",
    "StoreUnavailable", "Write", "open_store",
}


def test_public_names_are_pinned():
    assert set(actors.__all__) == ACTORS
    assert set(runtime.__all__) == RUNTIME
    assert set(storage.__all__) == STORAGE


# Names a package re-exports from a lower one, on purpose.
REEXPORTED = {("runtime", "SubjectsError")}


def test_every_public_name_exists_and_belongs_to_its_package():
    for package in (actors, runtime, storage):
        for name in package.__all__:
            obj = getattr(package, name)
            if (package.__name__, name) in REEXPORTED:
                continue
            if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__code__")):
                assert obj.__module__.startswith(package.__name__), (package.__name__, name)


def test_property_event_names_are_krules_compatible():
    assert actors.PROPERTY_CHANGED == "subject-property-changed"
    assert actors.PROPERTY_DELETED == "subject-property-deleted"


def test_every_error_of_every_package_shares_one_root():
    """Model, engine, store and edge errors: `except SubjectsError` catches them all."""
    errors = [getattr(package, name) for package in (actors, runtime, storage, edge)
              for name in package.__all__
              if isinstance(getattr(package, name), type)
              and issubclass(getattr(package, name), BaseException)]
    assert len(errors) >= 20
    for error in errors:
        assert issubclass(error, actors.SubjectsError), error
    assert runtime.SubjectsError is actors.SubjectsError
