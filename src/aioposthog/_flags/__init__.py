"""Local feature-flag evaluation: compile ``/flags/definitions`` once, evaluate many times.

>>> from aioposthog._flags import FlagEngine, compile_definitions
>>> engine = FlagEngine(compile_definitions({"flags": []}))
>>> engine.evaluate_all("user-1")
({}, {})
"""

from ._compile import CompiledDefinitions, compile_definitions
from ._engine import FlagEngine
from ._errors import InconclusiveMatch, InconclusiveReason
from ._flag import CompiledFlag
from ._result import FlagResult, MatchReason

__all__ = [
    "CompiledDefinitions",
    "CompiledFlag",
    "FlagEngine",
    "FlagResult",
    "InconclusiveMatch",
    "InconclusiveReason",
    "MatchReason",
    "compile_definitions",
]
