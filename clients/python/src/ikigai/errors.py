"""The one error type of the client: the protocol's `code`, `message` and `retriable` (§5)."""

from __future__ import annotations

from typing import Any


class IkigaiError(Exception):
    """A failed call: the daemon's error, or `unavailable` when the connection was lost."""

    def __init__(
        self,
        code: str,
        message: str,
        retriable: bool = False,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retriable = retriable
        self.retry_after_ms = retry_after_ms

    @classmethod
    def from_wire(cls, err: Any) -> IkigaiError:
        """Builds the error from a reply's `err` map."""
        if not isinstance(err, dict):
            return cls("internal", f"malformed error body: {err!r}")
        return cls(
            str(err.get("code", "internal")),
            str(err.get("message", "")),
            bool(err.get("retriable", False)),
            err.get("retry_after_ms"),
        )


def connection_lost(detail: str = "connection to the daemon lost") -> IkigaiError:
    """What a call in flight gets when its connection goes away: outcome unknown, retriable."""
    return IkigaiError("unavailable", detail, retriable=True)
