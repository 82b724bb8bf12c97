"""The root of every error hubfleet raises on purpose.

Every part's own errors (``ProfileConfigError``, ``CullConfigError``, ``ValuesError``, ...) derive from
:class:`HubfleetError`, so an operator's script or a test can catch all of them at once, and the CLI can print them
as one line instead of a traceback. Raise them at the boundary where a library error is understood, chained with
``raise ... from e``, with a message that names what was wrong and says what to do next (``fix``).
"""

from __future__ import annotations


class HubfleetError(Exception):
    """A problem hubfleet can explain: ``message`` says what is wrong, ``fix`` (optional) what to do about it."""

    def __init__(self, message: str = "", *args, fix: str | None = None):
        self.message = str(message)
        self.fix = fix
        super().__init__(self.message if not fix else f"{self.message} ({fix})", *args)


def explain(exc: BaseException) -> str:
    """One line for a user: the error and its chained causes (``a: b: c``), no traceback."""
    parts: list[str] = []
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = str(e) or type(e).__name__
        if not parts or text not in parts[-1]:
            parts.append(text)
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return ": ".join(parts)
