"""Running the local endpoint: uvicorn (h11) serving the app of app.py on a socket bound up front, a deadline
on reading each request, and `python -m imgcls.providers.local.serve` (what `deploy --detach` starts)."""
from __future__ import annotations

import functools
import json
import signal
import socket
import sys
import threading
from pathlib import Path

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from imgcls.config import EndpointLimits
from imgcls.providers.local.app import PREDICT_PATHS, Batcher, create_app

__all__ = ["PREDICT_PATHS", "Batcher", "ModelServer", "make_server", "serve", "main"]

def raw_answer(status: int, reason: str, message: str) -> bytes:
    """A JSON error answer written straight to the socket (the connection is closed after it), in the
    shape of every other answer: for what the protocol refuses before the app sees a request."""
    body = json.dumps({"error": message, "code": status}).encode()
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
            % (status, reason.encode(), len(body), body))


class DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline on receiving each request. uvicorn closes idle keep-alive
    connections but waits forever for a request that trickles in a byte at a time (slow-loris)."""

    def __init__(self, *args, read_timeout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout
        self._deadline = None
        self._protocol_error = ""
        next_event = self.conn.next_event

        def next_event_noting_errors():  # uvicorn drops h11's reason; the 400 below names it
            try:
                return next_event()
            except h11.RemoteProtocolError as exc:
                self._protocol_error = str(exc)
                raise
        self.conn.next_event = next_event_noting_errors

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is closed too (without an answer)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first bytes of a request
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete and not self.cycle.more_body:
            self._disarm()  # all of it is in: the app's work is not timed here (a cycle already answered
            #                 is the previous request on a kept-alive connection: this one is still coming)

    def send_400_response(self, msg: str) -> None:
        """Malformed HTTP (a bad Content-Length, request line, chunk size...): JSON like every other answer."""
        reason = (self._protocol_error or msg)[:200]
        self.transport.write(raw_answer(400, "Bad Request", f"malformed HTTP request: {reason}"))
        self.transport.close()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if cycle is not None and not cycle.more_body and not cycle.response_complete:
            return  # the request arrived and is being answered (bytes after it are a pipelined request)
        if self.transport.is_closing():
            return
        started = cycle is not None and not cycle.response_complete or bool(self.conn.trailing_data[0])
        if started and (cycle is None or cycle.response_complete or not cycle.response_started):
            self.transport.write(raw_answer(408, "Request Timeout", f"request not received within "
                                            f"{self.read_timeout:g} s (deploy.limits.read_timeout)"))
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app, waiting for the body, sees the client gone
            cycle.message_event.set()
        self.transport.close()


class ModelServer:
    """uvicorn serving the app on a socket bound at construction, so port 0's choice is known at once:
    serve_forever() in one thread, shutdown() from another (socketserver's shape, which callers use)."""

    def __init__(self, address: tuple[str, int], app, limits: EndpointLimits):
        self.app, self.limits = app, limits
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind(address)
            self.socket.listen(256)
        except OSError:
            self.socket.close()
            app.state.model.close()
            raise
        self.server_address = self.socket.getsockname()[:2]
        config = uvicorn.Config(
            app, http=functools.partial(DeadlineProtocol, read_timeout=limits.read_timeout), loop="asyncio",
            lifespan="on", timeout_keep_alive=limits.keep_alive_timeout, timeout_graceful_shutdown=5,
            log_config=None, log_level="warning", access_log=False, server_header=False)
        self._server = uvicorn.Server(config)
        self._done = threading.Event()
        self._started = False

    @property
    def batcher(self) -> Batcher:
        return self.app.state.model.batcher

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def serve_forever(self) -> None:
        self._started = True
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self._done.set()
            self.server_close()

    def shutdown(self) -> None:
        """Stop serving (from another thread) and wait until the port is closed."""
        self._server.should_exit = True
        if self._started:
            self._done.wait(timeout=15)
        self.server_close()

    def server_close(self) -> None:
        self.socket.close()
        self.app.state.model.close()


def make_server(artifact_dir: Path, host: str = "127.0.0.1", port: int = 0, max_body_bytes: int | None = None,
                max_batch: int = 16, batch_wait_ms: float = 5, limits: EndpointLimits | None = None,
                **limit_values) -> ModelServer:
    """A ready server (not yet serving): call .serve_forever(), and .shutdown() from another thread.
    Limits come as an EndpointLimits or as its fields (max_body_bytes=…, max_images=…)."""
    values = {**(limits or EndpointLimits()).model_dump(), **limit_values}
    if max_body_bytes is not None:
        values["max_body_bytes"] = max_body_bytes
    limits = EndpointLimits(**values)
    return ModelServer((host, port), create_app(Path(artifact_dir), limits, max_batch, batch_wait_ms), limits)


# The servers this process serves in the foreground, by port: `down` from another thread of the same
# process (a notebook) stops one here; signalling the pid in the ledger would end the caller itself.
IN_PROCESS: dict[int, ModelServer] = {}


def stop_in_process(port: int) -> bool:
    """Shut down the server this process serves on `port`; False when there is none."""
    server = IN_PROCESS.pop(int(port), None)
    if server is None:
        return False
    server.shutdown()
    return True


def serve(artifact_dir: Path, host: str = "127.0.0.1", port: int = 8080, expires_at=None, **options) -> None:
    """Serve in the foreground until Ctrl-C, SIGTERM or `expires_at` (an aware datetime: deploy.ttl)."""
    from imgcls import clock
    left = None if expires_at is None else (expires_at - clock.now()).total_seconds()
    if left is not None and left <= 0:
        print(f"not serving {artifact_dir}: it expired at {clock.stamp(expires_at)} (deploy.ttl)",
              file=sys.stderr, flush=True)
        return
    server = make_server(artifact_dir, host, port, **options)
    if left is not None:
        # The endpoint stops itself at expiry, as `down --expired` would: a forgotten one stops billing too.
        timer = threading.Timer(left, server.shutdown)
        timer.daemon = True
        timer.start()
        print(f"the endpoint expires at {clock.stamp(expires_at)} and stops then (deploy.ttl)",
              file=sys.stderr, flush=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        # uvicorn takes SIGINT/SIGTERM while it serves, shuts down gracefully and then raises the signal
        # again: here, as a KeyboardInterrupt the caller already handles.
        signal.signal(signal.SIGTERM, stop)
    print(f"serving {artifact_dir} on {server.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    IN_PROCESS[server.server_address[1]] = server
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        IN_PROCESS.pop(server.server_address[1], None)


def main(argv: list[str] | None = None) -> None:
    """`python -m imgcls.providers.local.serve ARTIFACT_DIR --host H --port P [--max-… N]`."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m imgcls.providers.local.serve")
    parser.add_argument("artifact_dir", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port (printed)")
    parser.add_argument("--expires-at", default=None, help="ISO 8601 time at which the server stops (deploy.ttl)")
    for name, field in EndpointLimits.model_fields.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=field.annotation, default=field.default,
                            help=field.description)
    args = vars(parser.parse_args(argv))
    try:
        limits = EndpointLimits(**{name: args.pop(name) for name in EndpointLimits.model_fields})
    except ValueError as exc:
        parser.error(str(exc))
    expires_at = None
    if args["expires_at"]:
        from imgcls import clock
        try:
            expires_at = clock.parse_time(args["expires_at"])
        except ValueError:
            parser.error(f"--expires-at {args['expires_at']!r} is not an ISO 8601 time")
    serve(args["artifact_dir"], args["host"], args["port"], expires_at=expires_at, limits=limits)


if __name__ == "__main__":
    main()
