"""Fault scripting for the local server.

Tests queue `Fault`s to make the next matching requests fail in a chosen way (an error
status, a reset connection, a truncated or endless body, a lost response after charging),
so every branch of a client's retry logic can be exercised over real sockets.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import asdict, dataclass, fields
from typing import Any

ACTIONS = ("respond", "reset", "truncate", "slow", "huge", "pass", "lose")
GENERATIONS_PATH = "/api/v1/images/generations"


@dataclass
class Fault:
    """One scripted misbehaviour for the next `times` requests whose path matches `path`.

    action:
      respond  - answer `status` with `body` (dict -> JSON; None -> {"detail": "Injected fault <status>"})
                 and `headers`, after `delay` seconds. Nothing is generated or charged.
      reset    - after `delay`, send the first `size` bytes of a response head (0: nothing),
                 then abort the TCP connection (RST).
      truncate - send `status` with a Content-Length `max(size, 64)` bytes larger than the body
                 actually sent, then close.
      slow     - dribble the body one byte every `delay` seconds; with body None the request is
                 handled normally and the real answer (JSON or image) is dribbled.
      huge     - stream `size` bytes (default 64 MiB) of PNG-looking junk with no Content-Length,
                 then close.
      pass     - wait `delay`, then handle normally (extra `headers` are added to the answer).
      lose     - handle normally (generate, charge, remember the Idempotency-Key answer), then
                 abort the connection without answering: "charged but the response was lost".
    """

    path: str = GENERATIONS_PATH
    status: int = 500
    body: bytes | str | dict | None = None
    headers: dict | None = None
    delay: float = 0.0
    action: str = "respond"
    size: int = 0
    content_type: str | None = None
    times: int = 1

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}; expected one of {ACTIONS}")
        if self.times < 1:
            raise ValueError("times must be >= 1")

    def matches(self, path: str) -> bool:
        """Exact path, or a prefix when the pattern ends with '*'."""
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def body_bytes(self) -> tuple[bytes, str]:
        """The body to send and its default content type."""
        if self.body is None:
            return json.dumps({"detail": f"Injected fault {self.status}"}).encode(), "application/json"
        if isinstance(self.body, dict):
            return json.dumps(self.body).encode(), "application/json"
        if isinstance(self.body, str):
            try:
                json.loads(self.body)
                kind = "application/json"
            except ValueError:
                kind = "text/plain; charset=utf-8"
            return self.body.encode(), kind
        return bytes(self.body), "application/octet-stream"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the control API (bytes bodies become latin-1 strings)."""
        d = asdict(self)
        if isinstance(self.body, (bytes, bytearray)):
            d["body"] = bytes(self.body).decode("latin-1")
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """Build from the control API's JSON; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**data)


class FaultQueue:
    """Thread-safe FIFO of faults; each request takes the first fault matching its path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: deque[list[Any]] = deque()  # [fault, remaining]

    def add(self, *faults: Fault) -> None:
        with self._lock:
            for f in faults:
                self._items.append([f, f.times])

    def take(self, path: str) -> Fault | None:
        with self._lock:
            for item in self._items:
                fault = item[0]
                if fault.matches(path):
                    item[1] -= 1
                    if item[1] <= 0:
                        self._items.remove(item)
                    return fault
        return None

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(f.to_dict(), times=n) for f, n in self._items]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
