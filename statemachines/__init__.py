"""kycflow's pure core: raw envelope -> canonical events -> per-subject state.

No I/O, no clock, no randomness, no environment: the same functions run embedded, in
Faust workers and in replay, and give the same answer.
"""

from statemachines.envelope import RawEnvelope
from statemachines.events import CanonicalEvent, Subject, Unrecognised
from statemachines.fold import Annotation, Outcome, SubjectState, Transition, fold
from statemachines.normalise import normalise
from statemachines.process import Step, replay, step

__all__ = [
    "Annotation",
    "CanonicalEvent",
    "Outcome",
    "RawEnvelope",
    "Step",
    "Subject",
    "SubjectState",
    "Transition",
    "Unrecognised",
    "fold",
    "normalise",
    "replay",
    "step",
]
