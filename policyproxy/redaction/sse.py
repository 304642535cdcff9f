"""Server-sent events, sans I/O: bytes in, whole events out, each re-serialisable byte for byte.

Only the ``data`` of an event is ever rewritten; ids, event names, comments and retry lines are kept
in their order and spelling.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Event:
    lines: list[str]          # every line of the event as received, without line endings
    newline: str = "\n"

    @property
    def data(self) -> str | None:
        parts = [_value(line) for line in self.lines if line.startswith("data:") or line == "data"]
        return "\n".join(parts) if parts else None

    @property
    def name(self) -> str | None:
        for line in self.lines:
            if line.startswith("event:"):
                return _value(line)
        return None

    def with_data(self, data: str) -> Event:
        """The same event with its data replaced (one ``data:`` line per line of ``data``)."""
        out: list[str] = []
        placed = False
        for line in self.lines:
            if line.startswith("data:") or line == "data":
                if not placed:
                    out += [f"data: {part}" for part in data.split("\n")]
                    placed = True
                continue
            out.append(line)
        if not placed:
            out += [f"data: {part}" for part in data.split("\n")]
        return Event(out, self.newline)

    def encode(self) -> bytes:
        return (self.newline.join(self.lines) + self.newline + self.newline).encode("utf-8")


def _value(line: str) -> str:
    _, _, value = line.partition(":")
    return value[1:] if value.startswith(" ") else value


class EventReader:
    """Feed bytes; get complete events. Handles LF, CRLF, CR and events split across chunks."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[Event]:
        self.buffer += data
        events: list[Event] = []
        while True:
            cut, newline, size = _boundary(self.buffer)
            if cut < 0:
                return events
            block, self.buffer = self.buffer[:cut], self.buffer[cut + size:]
            text = block.decode("utf-8", "replace")
            events.append(Event(text.split(newline) if text else [""], newline))

    def rest(self) -> bytes:
        rest, self.buffer = self.buffer, b""
        return rest


def _boundary(buffer: bytes) -> tuple[int, str, int]:
    """The first event end: LF, CRLF or CR line endings (all three are SSE; a CR-only stream was
    buffered whole and its placeholders passed through unrestored)."""
    found = [(at, newline, size) for at, newline, size in (
        (buffer.find(b"\n\n"), "\n", 2), (buffer.find(b"\r\n\r\n"), "\r\n", 4), (buffer.find(b"\r\r"), "\r", 2))
        if at >= 0]
    return min(found, key=lambda f: (f[0], -f[2])) if found else (-1, "\n", 0)
