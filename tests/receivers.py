"""Real local receivers standing in for Slack and a mail server, on 127.0.0.1 and free ports.

- :class:`WebhookReceiver`: an HTTP server that records every POST (path, headers, JSON body) and answers ``200 ok``
  like Slack's incoming webhooks do (any status can be configured to test failure handling).
- :class:`SmtpReceiver`: an aiosmtpd server that records every message (envelope and parsed MIME).
- :class:`S3Receiver`: moto's S3-compatible HTTP server (``moto.server.ThreadedMotoServer``), with a boto3 client
  to look into its buckets directly.

Both are context managers and give the ``AIRFLOW_CONN_*`` value that points an Airflow connection at them::

    with WebhookReceiver() as slack, SmtpReceiver() as smtp:
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SLACK", slack.airflow_conn())
        monkeypatch.setenv("AIRFLOW_CONN_WRITEOFFS_SMTP", smtp.airflow_conn(to="controller@example.com"))
        ...
        (message,) = slack.wait_for(1)
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(items: list, n: int, timeout: float, what: str) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(items) >= n:
            return list(items)
        time.sleep(0.05)
    raise AssertionError(f"{what}: expected {n} message(s) within {timeout}s, got {len(items)}")


@dataclass(frozen=True)
class WebhookRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


class WebhookReceiver:
    """HTTP server recording POSTs; the webhook "token" is the path after the host."""

    def __init__(self, status: int = 200, reply: bytes = b"ok") -> None:
        self.status = status
        self.reply = reply
        self.requests: list[WebhookRequest] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append(WebhookRequest(self.path, dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(receiver.reply)))
                self.end_headers()
                self.wfile.write(receiver.reply)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def airflow_conn(self, token: str = "T000/B000/XXXXXXXX") -> str:
        """JSON connection in the Slack webhook hook's layout: host = endpoint, password = token."""
        return json.dumps({"conn_type": "http", "host": self.base_url, "password": token})

    def wait_for(self, n: int = 1, timeout: float = 20.0) -> list[WebhookRequest]:
        return _wait(self.requests, n, timeout, "webhook")

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def text(self) -> str:
        """All text parts, decoded (the provider sends HTML, base64 or quoted-printable encoded)."""
        parts = []
        for part in self.message.walk():
            if part.get_content_maintype() == "text":
                parts.append(part.get_content())
        return "\n".join(parts)


class _Handler:
    def __init__(self, sink: list[ReceivedMail]) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        self.sink.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


class SmtpReceiver:
    """aiosmtpd controller on 127.0.0.1 (plain SMTP: no TLS, no auth, like a local relay)."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[ReceivedMail] = []
        self.port = free_port()
        self._controller = Controller(_Handler(self.messages), hostname="127.0.0.1", port=self.port)

    def airflow_conn(self, to: str = "controller@example.com", from_email: str = "airflow@example.com") -> str:
        return json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": self.port,
                "extra": {
                    "from_email": from_email,
                    "to": to,
                    "disable_tls": True,
                    "disable_ssl": True,
                    "timeout": 10,
                    "retry_limit": 0,
                },
            }
        )

    def wait_for(self, n: int = 1, timeout: float = 20.0) -> list[ReceivedMail]:
        return _wait(self.messages, n, timeout, "smtp")

    def __enter__(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


class S3Receiver:
    """An S3-compatible HTTP server (moto's, in a thread) on 127.0.0.1 and a port the system picks. Nothing is
    written to disk: moto keeps the buckets in memory. ``airflow_conn`` points an Amazon ``aws`` connection at it
    through the connection extra ``endpoint_url`` (the field that points Airflow at MinIO or another S3-compatible
    store too)."""

    KEY = "testing"  # moto accepts any key pair; fixed so tests can check it never shows in a message
    REGION = "us-east-1"

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # the port it got: endpoint
        self.running = False

    @property
    def endpoint(self) -> str:
        host, port = self.server.get_host_and_port()
        return f"http://{host}:{port}"

    def client(self) -> Any:
        """A boto3 S3 client of its own (not Airflow's, not s3fs's): what the bucket really holds."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.KEY,
            aws_secret_access_key=self.KEY,
            region_name=self.REGION,
        )

    def new_bucket(self) -> str:
        bucket = f"writeoffs-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def read(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def airflow_conn(self, endpoint: str | None = None, **extra: Any) -> str:
        """The connection's JSON; ``endpoint`` another URL (one nobody answers on), ``extra`` more extra fields
        (``config_kwargs``: botocore's ``Config``)."""
        extra = {"endpoint_url": endpoint or self.endpoint, "region_name": self.REGION, **extra}
        return json.dumps({"conn_type": "aws", "login": self.KEY, "password": self.KEY, "extra": extra})

    def stop(self) -> None:
        if self.running:
            self.server.stop()
            self.running = False

    def __enter__(self) -> S3Receiver:
        self.server.start()
        self.running = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
