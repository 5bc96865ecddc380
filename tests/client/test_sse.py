"""The Server-Sent Events decoder, fed line by line as the client reads a stream."""

from __future__ import annotations

from client.sse import ServerSentEvent, SSEDecoder


def decode(text: str) -> tuple[list[ServerSentEvent], SSEDecoder]:
    decoder = SSEDecoder()
    events = [event for line in text.split("\n") if (event := decoder.feed(line)) is not None]
    return events, decoder


def test_events_are_dispatched_on_blank_lines_with_their_id_and_type() -> None:
    events, decoder = decode('retry: 3000\n\nid: 1\nevent: state\ndata: {"a": 1}\n\nid: 2\ndata:x\n\n')
    assert events == [
        ServerSentEvent(event="state", data='{"a": 1}', id="1"),
        ServerSentEvent(event="message", data="x", id="2"),
    ]
    assert decoder.retry == 3000 and decoder.last_event_id == "2"


def test_comments_are_heartbeats_and_data_lines_join_with_newlines() -> None:
    events, _ = decode(": heartbeat\n\ndata: one\n: inside\ndata: two\n\n")
    assert events == [ServerSentEvent(event="message", data="one\ntwo", id=None)]


def test_an_unfinished_event_is_not_dispatched_but_an_id_without_data_sticks() -> None:
    events, decoder = decode("id: 7\n\nid: 8\nevent: state\ndata: partial")
    assert events == [] and decoder.last_event_id == "8"
    events, decoder = decode("id: 7\n\ndata: next\n\n")
    assert events == [ServerSentEvent(event="message", data="next", id="7")]


def test_malformed_fields_are_ignored() -> None:
    events, decoder = decode("retry: soon\nid: a\0b\nunknown: x\ndata\n\n")
    assert decoder.retry is None and decoder.last_event_id is None
    assert events == [ServerSentEvent(event="message", data="", id=None)]
