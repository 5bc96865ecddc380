"""A Server-Sent Events decoder (the WHATWG event-stream format), fed one line at a time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None


class SSEDecoder:
    """Turns lines (without their line ending) into events; a blank line dispatches the event.

    ``last_event_id`` is the id to resume from (it persists across events, as the spec says), and
    ``retry`` the reconnection delay in milliseconds the server last asked for. Comment lines (``:``),
    used as heartbeats, are ignored.
    """

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        self.retry: int | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._event, self._data = "", []
        if not data:
            return None  # a block without data dispatches nothing (an id in it still sticks)
        return ServerSentEvent(event=event or "message", data="\n".join(data), id=self.last_event_id)
