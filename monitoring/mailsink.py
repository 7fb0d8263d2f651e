"""A loopback SMTP server that keeps every message it receives as an ``.eml`` file.

The embedded deployment has no mail relay, yet alerts should still travel through real
SMTP (the same Airflow connection and code path as in production). :class:`MailSink`
runs an `aiosmtpd <https://aiosmtpd.aio-libs.org>`_ server in a background thread and
writes each message to ``<directory>/<UTC stamp>-<hash>.eml``: the bytes as received,
preceded by ``X-MailFrom`` / ``X-RcptTo`` headers carrying the SMTP envelope (as
aiosmtpd's own ``Message`` handler does), so Bcc recipients are visible too. Files are
written atomically, so a reader never sees half a message. Open them with any mail
client or :func:`read_message`.

Example::

    with MailSink(tmp_path / "mail") as sink:       # port=0: the OS picks a free port
        smtplib.SMTP(sink.host, sink.port).send_message(msg)
    [path] = sink.messages()
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import logging
import signal
import socket
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from graphrec.lake import atomic_write_bytes
from graphrec.settings import Settings

log = logging.getLogger(__name__)


def message_filename(content: bytes, received: dt.datetime) -> str:
    """``YYYYMMDDTHHMMSSffffffZ-<12 hex of sha256>.eml``: sorts by arrival, unique by content."""
    stamp = received.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{hashlib.sha256(content).hexdigest()[:12]}.eml"


def read_message(path: Path) -> EmailMessage:
    """Parse a stored ``.eml`` file with the modern ``email.policy.default``."""
    with open(path, "rb") as fh:
        return email.message_from_binary_file(fh, policy=email.policy.default)


class _EmlHandler:
    """aiosmtpd handler: accept every message and store it under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd hook name)
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        # Envelope headers first: a message's own headers never name its Bcc recipients.
        envelope_headers = f"X-MailFrom: {envelope.mail_from}\r\nX-RcptTo: {', '.join(envelope.rcpt_tos)}\r\n".encode()
        data = envelope_headers + content
        path = self.directory / message_filename(data, dt.datetime.now(dt.UTC))
        atomic_write_bytes(path, data)
        log.info("stored mail from %s to %s in %s", envelope.mail_from, envelope.rcpt_tos, path)
        return "250 Message accepted for delivery"


def _bound_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(100)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _controller(handler: _EmlHandler, sock: socket.socket) -> Any:
    """An aiosmtpd ``Controller`` serving on an already bound socket.

    ``Controller`` binds ``host:port`` itself and then connects to that same port to
    check the server is up, which fails for ``port=0``. Binding first (the OS assigns
    the port, with no window in which another process could take it) and overriding
    ``_create_server`` - the hook aiosmtpd documents for subclasses - avoids both.
    """
    from aiosmtpd.controller import Controller  # only a running sink needs the SMTP server library

    class _SocketController(Controller):
        def _create_server(self):  # noqa: ANN202 - aiosmtpd's signature
            return self.loop.create_server(self._factory_invoker, sock=sock, ssl=self.ssl_context)

    host, port = sock.getsockname()[:2]
    # server_hostname: the name in the greeting; the default, socket.getfqdn(), may wait on DNS.
    return _SocketController(handler, hostname=host, port=port, server_hostname="localhost")


class MailSink:
    """An SMTP server on loopback that stores received mail as ``.eml`` files.

    Args:
        directory (Path): where messages are stored (created on :meth:`start`).
        host (str): address to listen on. Default: ``"127.0.0.1"``.
        port (int): port to listen on; ``0`` lets the OS pick a free one, readable from
            :attr:`port` after :meth:`start` (a restart keeps that port, so clients
            configured with it keep working). Default: ``0``.

    Use as a context manager (``with MailSink(d) as sink: ...``) or call :meth:`start`
    and :meth:`stop`.
    """

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.directory = Path(directory)
        self.host = host
        self.port = port
        self._controller: Any = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> MailSink:
        """Bind, start the server thread and wait until it answers. Returns ``self``."""
        if self.running:
            raise RuntimeError(f"mail sink already running on {self.host}:{self.port}")
        self.directory.mkdir(parents=True, exist_ok=True)
        sock = _bound_socket(self.host, self.port)
        controller = _controller(_EmlHandler(self.directory), sock)
        try:
            controller.start()
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._controller = controller
        log.info("mail sink listening on %s:%d, storing into %s", self.host, self.port, self.directory)
        return self

    def stop(self) -> None:
        """Stop the server and release the port (a no-op when not running)."""
        if self._controller is None:
            return
        controller, self._controller = self._controller, None
        controller.stop()

    def messages(self) -> list[Path]:
        """Stored ``.eml`` files, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob("*.eml") if not p.name.startswith("."))

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"MailSink({str(self.directory)!r}, host={self.host!r}, port={self.port}, {state})"


def serve_forever(settings: Settings, *, stop: threading.Event | None = None) -> None:
    """Run the mail sink on ``settings.alerts.smtp_host:smtp_port`` into ``settings.mail_dir``.

    Blocks until ``stop`` is set, Ctrl-C, or SIGTERM (when called from the main thread),
    then shuts the server down. Meant for a ``graphrec mailsink`` CLI command next to an
    Airflow SMTP connection pointing at the same host and port.

    Args:
        settings (Settings): provides ``smtp_host``, ``smtp_port`` and ``mail_dir``.
        stop (threading.Event | None): set it to return (for embedding and tests).
    """
    stop = stop or threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with MailSink(settings.mail_dir, host=settings.alerts.smtp_host, port=settings.alerts.smtp_port) as sink:
            print(f"graphrec mail sink: smtp://{sink.host}:{sink.port} -> {sink.directory}", flush=True)
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
