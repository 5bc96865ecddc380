"""A loopback TCP forwarder that a test switches between up, down and hanging, to stage a database outage.

``down()`` closes the listener and cuts every forwarded connection (a crashed or restarted server: new
connections are refused, open ones break). ``hang()`` cuts the open connections and accepts new ones
without ever answering (a host that vanished from the network: only a timeout ends the wait). ``up()``
forwards again on the same port, so clients keep their configured address.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading

_CHUNK = 64 * 1024


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._stop_accepting = threading.Event()
        self._open: set[socket.socket] = set()
        self._forward = True
        self.port = 0

    # -- control -------------------------------------------------------------------------------------------
    def up(self) -> None:
        """Accept and forward on ``self.port`` (a free port the first time)."""
        self._stop_listening()
        self._forward = True
        self._listen()

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        self._stop_listening()
        self._cut_all()

    def hang(self) -> None:
        """Cut the open connections; accept new ones and never answer them."""
        self._stop_listening()
        self._cut_all()
        self._forward = False
        self._listen()

    def close(self) -> None:
        self.down()

    # -- listener ------------------------------------------------------------------------------------------
    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stop_accepting = threading.Event()
        self._accepting = threading.Thread(
            target=self._accept_loop, args=(listener, self._stop_accepting), daemon=True
        )
        self._accepting.start()

    def _stop_listening(self) -> None:
        if self._listener is None:
            return
        self._stop_accepting.set()
        assert self._accepting is not None
        self._accepting.join(timeout=10)
        self._listener.close()
        self._listener = None

    def _accept_loop(self, listener: socket.socket, stop: threading.Event) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            while not stop.is_set():
                if not selector.select(timeout=0.05):
                    continue
                try:
                    client, _ = listener.accept()
                except OSError:
                    return
                self._track(client)
                if self._forward:
                    threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    # -- connections ---------------------------------------------------------------------------------------
    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            self._cut(client)
            return
        upstream.settimeout(None)
        self._track(upstream)
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(_CHUNK):
                sink.sendall(data)
        except OSError:
            pass
        self._cut(source)
        self._cut(sink)

    def _cut(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def _cut_all(self) -> None:
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            self._cut(sock)
