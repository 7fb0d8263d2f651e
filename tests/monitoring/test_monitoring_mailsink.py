"""The loopback SMTP sink: a real aiosmtpd server, real smtplib clients."""

from __future__ import annotations

import datetime as dt
import smtplib
import socket
import threading
import time
from email.message import EmailMessage

import pytest

from graphrec.settings import Settings
from monitoring.mailsink import MailSink, message_filename, read_message, serve_forever


def _message(subject: str, to: str = "ops@example.org") -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = "graphrec@example.org"
    message["To"] = to
    message.set_content(f"body of {subject} — ünïcode")
    return message


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_port_zero_picks_a_free_port_and_messages_become_eml_files(tmp_path):
    with MailSink(tmp_path / "mail") as sink:
        assert sink.running and sink.port > 0
        with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
            client.send_message(_message("first"), to_addrs=["ops@example.org", "hidden@example.org"])
        [path] = sink.messages()
    assert path.parent == tmp_path / "mail" and path.suffix == ".eml"
    stored = read_message(path)
    assert stored["Subject"] == "first"
    assert stored["X-RcptTo"] == "ops@example.org, hidden@example.org"
    assert "ünïcode" in stored.get_content()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_stop_releases_the_port(tmp_path):
    sink = MailSink(tmp_path).start()
    port = sink.port
    sink.stop()
    assert not sink.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    sink.stop()  # stopping twice is harmless


def test_given_port_is_used_and_a_busy_port_is_an_error(tmp_path):
    port = _free_port()
    with MailSink(tmp_path, port=port) as sink:
        assert sink.port == port
        with pytest.raises(OSError):
            MailSink(tmp_path, port=port).start()
        with pytest.raises(RuntimeError, match="already running"):
            sink.start()


@pytest.mark.parametrize("count", [1, 3])
def test_every_message_gets_its_own_file_in_arrival_order(tmp_path, count):
    with MailSink(tmp_path) as sink, smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        for i in range(count):
            client.send_message(_message(f"message {i}"))
    assert [read_message(p)["Subject"] for p in sink.messages()] == [f"message {i}" for i in range(count)]


def test_message_filename_is_a_utc_stamp_and_a_content_hash():
    received = dt.datetime(2025, 1, 8, 6, 30, 1, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    name = message_filename(b"hello", received)
    assert name == "20250108T043001123456Z-2cf24dba5fb0.eml"
    assert message_filename(b"other", received) != name


def test_serve_forever_runs_on_the_settings_address_until_stopped(tmp_path):
    settings = Settings(home=tmp_path, alerts={"smtp_port": _free_port()})
    stop = threading.Event()
    server = threading.Thread(target=serve_forever, args=(settings,), kwargs={"stop": stop}, daemon=True)
    server.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client = smtplib.SMTP(settings.alerts.smtp_host, settings.alerts.smtp_port, timeout=5)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        with client:
            client.send_message(_message("from the cli"))
    finally:
        stop.set()
        server.join(timeout=10)
    assert not server.is_alive()
    [path] = sorted(settings.mail_dir.glob("*.eml"))
    assert read_message(path)["Subject"] == "from the cli"
