"""A fake SMS gateway for tests: a tiny HTTP server in a thread that speaks jiesu's gateway
protocol (docs/notices.md) and records what it receives.

    with FakeSmsGateway() as gw:                 # a free port below 32768
        monkeypatch.setenv("JIESU_SMS_GATEWAY_URL", gw.url)
        monkeypatch.setenv("JIESU_SMS_GATEWAY_KEY", gw.key)
        ... run the deliveries ...
        assert gw.messages[0]["text"].startswith("【")

Behaviours: `fail(n, status=500)` answers the next n requests with `status` (a 4xx other than
429 is a permanent refusal); `hang(seconds)` makes every request wait that long before answering
(until `hang(0)`); a request with a wrong key gets 401. `inbound(client, ...)` posts a citizen's
reply to jiesu's inbound endpoint as the gateway would (for the 短信回访 tests).
"""

from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEY_HEADER = "X-Api-Key"


class FakeSmsGateway:
    def __init__(self, key: str = "test-gateway-key") -> None:
        self.key = key
        self.requests: list[dict[str, Any]] = []  # every request: headers and JSON body
        self.messages: list[dict[str, Any]] = []  # bodies of the requests answered 2xx
        self._failures: list[int] = []
        self._hang_s = 0.0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- control ------------------------------------------------------------------------

    def fail(self, times: int, status: int = 500) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    def hang(self, seconds: float) -> None:
        self._hang_s = seconds

    @property
    def url(self) -> str:
        assert self._server is not None, "start the gateway first"
        return f"http://127.0.0.1:{self._server.server_port}/sms/send"

    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages]

    # ---- life ---------------------------------------------------------------------------

    def start(self) -> FakeSmsGateway:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet test output

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"raw": raw.decode("utf-8", "replace")}
                record = {"path": self.path, "headers": dict(self.headers), "body": body}
                with gateway._lock:
                    gateway.requests.append(record)
                    status = gateway._failures.pop(0) if gateway._failures else None
                if gateway._hang_s:
                    time.sleep(gateway._hang_s)
                if self.headers.get(KEY_HEADER) != gateway.key:
                    status = 401
                if status is None:
                    with gateway._lock:
                        gateway.messages.append(body)
                    self._answer(200, {"id": body.get("id"), "status": "accepted"})
                else:
                    self._answer(status, {"error": f"fake failure {status} for 13912345678"})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        for _ in range(50):  # a free port below the ephemeral range (32768-60999)
            port = random.randint(20000, 32000)
            try:
                self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
                break
            except OSError:
                continue
        else:
            raise RuntimeError("no free port for the fake SMS gateway")
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._hang_s = 0.0
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeSmsGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- inbound (gateway → jiesu) --------------------------------------------------------

    def inbound(
        self, client: Any, path: str, *, phone: str, text: str, msg_id: str | None = None,
        received_at: str | None = None, headers: dict[str, str] | None = None,
    ) -> Any:  # fmt: skip
        """POST a citizen's reply to jiesu as the gateway would: {"id", "from", "text",
        "received_at"} with the key header. `client` is a TestClient or an httpx.Client."""
        body = {
            "id": msg_id or f"in_{random.randrange(10**12)}",
            "from": phone,
            "text": text,
            "received_at": received_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return client.post(path, json=body, headers={KEY_HEADER: self.key, **(headers or {})})
