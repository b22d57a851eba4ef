"""An IndoxRouter-compatible HTTP server that runs in-process, offline and without a key.

It speaks the wire protocol of /api/v1 (auth exchange, image generations, models, usage),
draws deterministic placeholder PNGs, serves them from /files/, honours Idempotency-Key,
and can be told to misbehave (latency, random 503s, scripted faults) so that a client's
retry, timeout and re-auth logic can be tested over real loopback sockets.
Stdlib + Pillow only.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import ipaddress
import json
import random
import secrets
import socket
import struct
import sys
import threading
import time
import traceback
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable
from urllib.parse import parse_qs, unquote

from . import catalog, draw
from .faults import Fault, FaultQueue

API = "/api/v1"
GENERATIONS = f"{API}/images/generations"
MAX_BODY = 10 * 1024 * 1024
MAX_FILES = 1000
MAX_IDEMPOTENT_ANSWERS = 1000  # answers kept for replay (retries come within seconds)
MAX_RECORDED = 10_000
STARTING_CREDITS = 100.0
SECRET_HEADERS = frozenset({"x-api-key", "authorization", "cookie", "set-cookie", "proxy-authorization"})
SECRET_WORDS = ("api_key", "apikey", "token", "secret", "password")
_EXPIRED_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message></Error>"
)


@dataclass
class Response:
    """A complete answer, built before any byte is written (so faults can wrap it)."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(obj).encode(), "application/json", dict(headers or {}))

    @classmethod
    def detail(cls, status: int, detail: Any, headers: dict[str, str] | None = None) -> Response:
        return cls.json(status, {"detail": detail}, headers)


def redact(value: Any) -> Any:
    """Copy of a JSON value with every secret-looking field (api_key, token, ...) replaced by '***'."""
    if isinstance(value, dict):
        return {
            k: ("***" if v is not None and any(w in str(k).lower() for w in SECRET_WORDS) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _short(text: Any, limit: int = 100) -> str:
    """Untrusted text echoed in an error detail: bounded length."""
    s = str(text)
    return s if len(s) <= limit else s[: limit - 1] + "\u2026"


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer sized for bursts, which tracks connections so stop() can cut them."""

    daemon_threads = True
    request_queue_size = 1024  # the stdlib backlog of 5 drops connections in a burst
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: LocalServer) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.owner = owner
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut open keep-alive connections; otherwise their threads keep serving after stop()."""
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Client disconnects are expected (faults, timeouts): stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    """Reads the request, then hands it to the owning LocalServer."""

    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries a Content-Length
    server_version = "IndoxRouterLocal/0.1"
    sys_version = ""
    timeout = 60  # idle keep-alive connections and stuck writers give their thread back
    server: _HTTPServer

    def setup(self) -> None:
        """No Nagle: headers and body leave at once (otherwise delayed ACKs add ~40 ms)."""
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the default logs every request line to stderr."""

    def do_GET(self) -> None:
        self.server.owner._serve(self)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    # -- low-level writing -------------------------------------------------------------
    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise OverflowError
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > MAX_BODY:
            raise OverflowError
        return self.rfile.read(length) if length else b""

    def write_head(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()

    def send(self, resp: Response, extra: dict[str, str] | None = None) -> None:
        headers = {"Content-Type": resp.content_type, **resp.headers, **(extra or {})}
        headers["Content-Length"] = str(len(resp.body))
        self.send_response(resp.status)
        for k, v in headers.items():
            self.send_header(k, v)
        if self.command != "HEAD" and resp.body:
            # one write for head and body: fewer packets for small JSON answers
            self._headers_buffer.append(b"\r\n" + resp.body)
            self.flush_headers()
        else:
            self.end_headers()

    def abort(self, partial: bytes = b"") -> None:
        """Reset the TCP connection (RST), optionally after some bytes of a response."""
        self.close_connection = True
        try:
            if partial:
                self.wfile.write(partial)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


class LocalServer:
    """IndoxRouter look-alike on loopback: see the module docstring.

    `latency` and `fail_rate` may be changed at any time; they apply to generations only.
    With `api_keys=None` any non-empty key is accepted.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        fail_rate: float = 0.0,
        seed: int = 0,
        api_keys: Iterable[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.latency = float(latency)
        self.fail_rate = float(fail_rate)
        self.seed = seed
        self.api_keys: frozenset[str] | None = None if api_keys is None else frozenset(api_keys)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._run_lock = threading.Lock()
        self._lock = threading.RLock()
        self._faults = FaultQueue()
        self._rng = random.Random(seed)
        self._reset_state()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> LocalServer:
        """Start serving on a daemon thread (idempotent); a stopped server restarts on its port."""
        with self._run_lock:
            if self._httpd is not None:
                return self
            httpd = _HTTPServer((self.host, self.port), self)
            self.port = httpd.server_address[1]
            self._httpd = httpd
            self._thread = threading.Thread(
                target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                name=f"indox-local-{self.port}", daemon=True,
            )
            self._thread.start()
            return self

    def stop(self) -> None:
        """Stop accepting, cut open connections, free the port."""
        with self._run_lock:
            httpd, self._httpd = self._httpd, None
            thread, self._thread = self._thread, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def url(self) -> str:
        """Base URL without trailing slash, e.g. http://127.0.0.1:54321."""
        if not self.port:
            raise RuntimeError("LocalServer has no port yet: call start() first")
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self.port else "not started"
        return f"<LocalServer {where} running={self.running}>"

    # -- test controls -----------------------------------------------------------------
    def script(self, *faults: Fault) -> None:
        """Queue faults for the next matching requests, first in first out."""
        self._faults.add(*faults)

    def reset(self) -> None:
        """Forget faults, stats, recorded requests, idempotency answers, files and tokens."""
        self._faults.clear()
        self._reset_state()

    def expire_tokens(self) -> None:
        """Every access token issued so far answers 401 from now on (clients must re-auth)."""
        with self._lock:
            self._expired_tokens.update(self._tokens)
            self._tokens.clear()

    def expire_files(self) -> None:
        """Every file URL issued so far answers 403, like an expired provider URL."""
        with self._lock:
            self._expired_files.update(self._files)
            self._files.clear()

    @property
    def stats(self) -> dict[str, Any]:
        """Snapshot of counters (requests to /_local/* are not counted)."""
        with self._lock:
            s = copy.deepcopy(self._stats)
        s["charged"] = round(s["charged"], 6)
        for m in s["by_model"].values():
            m["cost"] = round(m["cost"], 6)
        return s

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Recorded requests, oldest first, with secrets already replaced by '***'."""
        with self._lock:
            return copy.deepcopy(list(self._requests))

    def _reset_state(self) -> None:
        with self._lock:
            self._stats: dict[str, Any] = {
                "requests": 0, "by_path": {}, "generations": 0, "images": 0, "charged": 0.0,
                "auth_exchanges": 0, "idempotent_replays": 0, "by_model": {},
            }
            self._requests: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDED)
            self._tokens: dict[str, str] = {}  # token -> identity
            self._expired_tokens: set[str] = set()
            self._files: OrderedDict[str, bytes] = OrderedDict()
            self._expired_files: set[str] = set()
            self._idem: dict[tuple[str, str], tuple[str, Response]] = {}
            self._idem_locks: dict[tuple[str, str], threading.Lock] = {}

    # -- request plumbing --------------------------------------------------------------
    def _serve(self, h: _Handler) -> None:
        started = time.monotonic()
        path = h.path.split("?", 1)[0] or "/"
        try:
            body = h.read_body()
        except OverflowError:
            h.close_connection = True
            h.send(Response.detail(413, "Request body too large"))
            return
        except (ValueError, OSError):
            h.close_connection = True
            h.send(Response.detail(400, "Malformed request body"))
            return

        if path.startswith("/_local/"):
            if not _is_loopback(h.client_address[0]):
                h.send(Response.detail(403, "The control API is only available on loopback"))
                return
            h.send(self._guard(lambda: self._control(h.command, path, body)))
            return

        record = self._record(h, path, body, started)
        fault = self._faults.take(path)
        if fault is not None and fault.action not in ("pass", "lose") and not (
            fault.action == "slow" and fault.body is None
        ):
            self._apply_fault(h, fault, path)
            return
        if fault is not None and fault.action == "pass" and fault.delay > 0:
            time.sleep(fault.delay)

        resp = self._guard(lambda: self._route(h.command, path, h.headers, body, record, started))

        if fault is None or fault.action == "pass":
            h.send(resp, extra=fault.headers if fault else None)
        elif fault.action == "lose":
            h.abort()
        else:  # slow, dribbling the real answer
            self._dribble(h, resp.status, resp.body, resp.content_type, {**resp.headers, **(fault.headers or {})},
                          fault.delay)

    def _guard(self, fn: Any) -> Response:
        """Turn a bug into a plain 500 (its traceback goes to stderr, never request data)."""
        try:
            return fn()
        except Exception:
            traceback.print_exc(file=sys.stderr)
            return Response.detail(500, "Internal server error")

    def _record(self, h: _Handler, path: str, body: bytes, started: float) -> dict[str, Any]:
        headers = {k.lower(): ("***" if k.lower() in SECRET_HEADERS else v) for k, v in h.headers.items()}
        parsed: Any = None
        if body:
            try:
                parsed = redact(json.loads(body))
            except ValueError:
                parsed = None
        rec = {"method": h.command, "path": path, "headers": headers, "json": parsed, "time": started,
               "auth": None}
        with self._lock:
            self._requests.append(rec)
            self._stats["requests"] += 1
            self._stats["by_path"][path] = self._stats["by_path"].get(path, 0) + 1
        return rec

    def _apply_fault(self, h: _Handler, fault: Fault, path: str) -> None:
        """Answer with a scripted failure; nothing behind it runs (no generation, no charge)."""
        if fault.delay > 0 and fault.action != "slow":
            time.sleep(fault.delay)
        body, ctype = fault.body_bytes()
        ctype = fault.content_type or ctype
        extra = dict(fault.headers or {})
        try:
            if fault.action == "respond":
                h.send(Response(fault.status, body, ctype), extra=extra)
            elif fault.action == "reset":
                head = f"HTTP/1.1 {fault.status} Error\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                h.abort(head.encode()[: max(0, fault.size)])
            elif fault.action == "truncate":
                h.close_connection = True
                headers = {"Content-Type": ctype, **extra,
                           "Content-Length": str(len(body) + max(fault.size, 64)), "Connection": "close"}
                h.write_head(fault.status, headers.items())
                h.wfile.write(body)
            elif fault.action == "slow":
                self._dribble(h, fault.status, body, ctype, extra, fault.delay)
            elif fault.action == "huge":
                self._huge(h, fault, path, extra)
        except OSError:
            h.close_connection = True

    def _dribble(self, h: _Handler, status: int, body: bytes, ctype: str, extra: dict[str, str],
                 delay: float) -> None:
        """Correct headers, then the body one byte every `delay` seconds."""
        try:
            headers = {"Content-Type": ctype, **extra, "Content-Length": str(len(body))}
            h.write_head(status, headers.items())
            for i in range(len(body)):
                h.wfile.write(body[i:i + 1])
                if delay > 0 and i + 1 < len(body):
                    time.sleep(delay)
        except OSError:
            h.close_connection = True

    def _huge(self, h: _Handler, fault: Fault, path: str, extra: dict[str, str]) -> None:
        """Stream `size` bytes of PNG-looking junk with no Content-Length, then close."""
        size = fault.size or 64 * 1024 * 1024
        ctype = fault.content_type or ("image/png" if path.startswith("/files/") else "application/json")
        h.close_connection = True
        h.write_head(fault.status, {"Content-Type": ctype, "Connection": "close", **extra}.items())
        chunk = b"\x89PNG\r\n\x1a\n" + random.Random(size).randbytes(64 * 1024 - 8)
        sent = 0
        while sent < size:
            piece = chunk[: min(len(chunk), size - sent)]
            h.wfile.write(piece)
            sent += len(piece)

    # -- routing -----------------------------------------------------------------------
    def _route(self, method: str, path: str, headers: Any, body: bytes, record: dict[str, Any],
               started: float) -> Response:
        if path.startswith("/files/"):
            if method not in ("GET", "HEAD"):
                return Response.detail(405, "Method Not Allowed")
            return self._file(path[len("/files/"):])
        if path == f"{API}/auth/api-key":
            return self._auth_api_key(method, headers)
        if path == f"{API}/auth/token":
            return self._auth_token(method, headers, body)

        parts = [unquote(p) for p in path[len(API):].strip("/").split("/")] if path.startswith(API + "/") else []
        if parts == ["images", "generations"]:
            want = "POST"
        elif (parts and parts[0] == "models" and 1 <= len(parts) <= 3) or parts == ["user", "usage"]:
            want = "GET"
        else:
            return Response.detail(404, "Not Found")
        if method != want:
            return Response.detail(405, "Method Not Allowed")

        identity, kind = self._authenticate(headers)
        record["auth"] = kind
        if identity is None:
            return Response.detail(401, "Could not validate credentials", {"WWW-Authenticate": "Bearer"})
        if parts[0] == "images":
            return self._generate(identity, headers, body, started)
        if parts[0] == "models":
            return self._models(parts[1:])
        return self._usage()

    # -- auth --------------------------------------------------------------------------
    def _key_ok(self, key: str) -> bool:
        if not key:
            return False
        return self.api_keys is None or key in self.api_keys

    @staticmethod
    def _identity(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def _issue_token(self, key: str) -> Response:
        identity = self._identity(key)
        header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
        payload = _b64url(json.dumps({"sub": identity, "iat": int(time.time()), "jti": uuid.uuid4().hex}).encode())
        token = f"{header}.{payload}.{secrets.token_urlsafe(32)}"
        with self._lock:
            self._tokens[token] = identity
            self._stats["auth_exchanges"] += 1
        return Response.json(
            200, {"access_token": token, "token_type": "bearer"},
            {"Set-Cookie": f"access_token={token}; HttpOnly; Path=/; SameSite=Lax"},
        )

    def _auth_api_key(self, method: str, headers: Any) -> Response:
        if method != "POST":
            return Response.detail(405, "Method Not Allowed")
        key = (headers.get("X-API-Key") or "").strip()
        if not self._key_ok(key):
            return Response.detail(401, "Invalid API key")
        return self._issue_token(key)

    def _auth_token(self, method: str, headers: Any, body: bytes) -> Response:
        """Legacy form login of the reference client: the key is the password (or username)."""
        if method != "POST":
            return Response.detail(405, "Method Not Allowed")
        form = parse_qs(body.decode("utf-8", "replace"))
        for field_name in ("password", "username"):
            for key in form.get(field_name, []):
                if key != "pip_client" and self._key_ok(key.strip()):
                    return self._issue_token(key.strip())
        return Response.detail(401, "Incorrect username or password", {"WWW-Authenticate": "Bearer"})

    def _authenticate(self, headers: Any) -> tuple[str | None, str]:
        """(identity, kind): a Bearer access token, a Bearer API key, or the access_token cookie."""
        cred = ""
        auth = headers.get("Authorization")
        if auth:
            scheme, _, cred = auth.strip().partition(" ")
            if scheme.lower() != "bearer":
                return None, "invalid"
            cred = cred.strip()
        else:
            raw = headers.get("Cookie")
            if raw:
                try:
                    morsel = SimpleCookie(raw).get("access_token")
                except Exception:
                    morsel = None
                cred = morsel.value if morsel else ""
        if not cred:
            return None, "none"
        with self._lock:
            identity = self._tokens.get(cred)
            expired = cred in self._expired_tokens
        if identity is not None:
            return identity, "token"
        if expired or cred.count(".") == 2:  # JWT-shaped: a token, never an API key
            return None, "expired_token" if expired else "invalid"
        if self._key_ok(cred):
            return self._identity(cred), "api_key"
        return None, "invalid"

    # -- generation --------------------------------------------------------------------
    def _generate(self, identity: str, headers: Any, body: bytes, started: float) -> Response:
        try:
            payload = json.loads(body) if body else None
        except ValueError as e:
            return Response.detail(422, [{"loc": ["body", getattr(e, "pos", 0)], "msg": "JSON decode error",
                                          "type": "json_invalid"}])
        if not isinstance(payload, dict):
            return Response.detail(422, [{"loc": ["body"], "msg": "Input should be a valid dictionary",
                                          "type": "model_attributes_type" if payload is not None else "missing"}])
        checked = self._validate(payload)
        if isinstance(checked, Response):
            return checked
        model, size, aspect, n, quality, style, fmt, seed = checked

        if self.latency > 0:
            time.sleep(self.latency)
        if self.fail_rate > 0:
            with self._lock:
                fail = self._rng.random() < self.fail_rate
            if fail:
                return Response.detail(503, "Provider temporarily unavailable")

        key = (headers.get("Idempotency-Key") or "").strip()
        if not key:
            return self._perform(payload, model, size, aspect, n, quality, style, fmt, seed, started)
        slot = (identity, key)
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        with self._lock:
            key_lock = self._idem_locks.setdefault(slot, threading.Lock())
        with key_lock:  # concurrent duplicates wait here and then replay
            with self._lock:
                stored = self._idem.get(slot)
            if stored is not None:
                if stored[0] != digest:
                    return Response.detail(422, "Idempotency-Key was already used with a different request body")
                with self._lock:
                    self._stats["idempotent_replays"] += 1
                return Response(stored[1].status, stored[1].body, stored[1].content_type,
                                {**stored[1].headers, "Idempotent-Replayed": "true"})
            resp = self._perform(payload, model, size, aspect, n, quality, style, fmt, seed, started)
            if resp.status == 200:
                with self._lock:
                    self._idem[slot] = (digest, resp)
                    # Bounded like the files: a long-lived shared server must not grow forever.
                    while len(self._idem) > MAX_IDEMPOTENT_ANSWERS:
                        oldest = next(iter(self._idem))
                        del self._idem[oldest]
                        self._idem_locks.pop(oldest, None)
            return resp

    def _validate(self, p: dict[str, Any]) -> Response | tuple[Any, ...]:
        """Check the body like the real service: 422 for shape, 404 for names, 400 for options."""
        errors = []
        for name in ("prompt", "model"):
            v = p.get(name)
            if name not in p or v is None:
                errors.append({"loc": ["body", name], "msg": "Field required", "type": "missing"})
            elif not isinstance(v, str):
                errors.append({"loc": ["body", name], "msg": "Input should be a valid string", "type": "string_type"})
            elif not v.strip():
                errors.append({"loc": ["body", name], "msg": "String should have at least 1 character",
                               "type": "string_too_short"})
        for name in ("n", "seed"):
            v = p.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                errors.append({"loc": ["body", name], "msg": "Input should be a valid integer", "type": "int_type"})
        for name in ("size", "quality", "style", "response_format", "aspect_ratio"):
            v = p.get(name)
            if v is not None and not isinstance(v, str):
                errors.append({"loc": ["body", name], "msg": "Input should be a valid string", "type": "string_type"})
        if errors:
            return Response.detail(422, errors)

        provider, sep, name = p["model"].strip().partition("/")
        if not sep or not provider or not name:
            return Response.detail(
                400, f"Invalid model format '{_short(p['model'])}': expected 'provider/model_name'")
        if provider.lower() not in catalog.PROVIDERS:
            return Response.detail(404, f"Provider '{_short(provider)}' not found")
        model = catalog.find_model(provider, name)
        if model is None:
            other = catalog.find_any_model(provider, name)
            if other is not None:
                return Response.detail(
                    400, f"Model '{_short(name)}' is a {other['type']} model and cannot generate images")
            return Response.detail(404, f"Model '{_short(name)}' not found for provider '{provider.lower()}'")

        size = aspect = None
        if model.aspect_ratios:  # Imagen: size is ignored, aspect_ratio decides
            aspect = p.get("aspect_ratio") or model.default_aspect_ratio
            if aspect not in model.aspect_ratios:
                return Response.detail(400, f"Aspect ratio '{_short(aspect)}' is not supported by {model.id}. "
                                            f"Supported aspect ratios: {', '.join(model.aspect_ratios)}")
        else:
            size = p.get("size") or model.default_size
            if size not in model.sizes:
                return Response.detail(400, f"Size '{_short(size)}' is not supported by {model.id}. "
                                            f"Supported sizes: {', '.join(model.sizes)}")
        n = 1 if p.get("n") is None else p["n"]
        if not 1 <= n <= model.max_n:
            return Response.detail(400, f"n must be between 1 and {model.max_n} for {model.id} (got {n})")
        quality = p.get("quality") or model.default_quality
        if quality is not None and quality not in model.qualities:
            allowed = ", ".join(model.qualities) or "none (omit quality)"
            return Response.detail(400, f"Quality '{_short(quality)}' is not supported by {model.id}. "
                                        f"Supported qualities: {allowed}")
        style = p.get("style") or model.default_style
        if style is not None and style not in model.styles:
            allowed = ", ".join(model.styles) or "none (omit style)"
            return Response.detail(400, f"Style '{_short(style)}' is not supported by {model.id}. "
                                        f"Supported styles: {allowed}")
        fmt = p.get("response_format") or "url"
        if fmt not in catalog.RESPONSE_FORMATS:
            return Response.detail(400, f"Invalid response_format '{_short(fmt)}': expected 'url' or 'b64_json'")
        if model.b64_only:
            fmt = "b64_json"
        seed = p["seed"] if p.get("seed") is not None else self.seed
        return model, size, aspect, n, quality, style, fmt, seed

    def _perform(self, p: dict[str, Any], model: catalog.ImageModel, size: str | None, aspect: str | None,
                 n: int, quality: str | None, style: str | None, fmt: str, seed: int,
                 started: float) -> Response:
        """Draw, store, charge, and build the protocol's response."""
        prompt: str = p["prompt"]
        width, height = model.pixels(size, aspect)
        revised = model.revise(prompt)
        byok = bool(p.get("byok_api_key"))
        per_image = 0.0 if byok else model.price(size, quality)
        cost = round(per_image * n, 6)
        data = []
        for i in range(n):
            png = draw.render_png(prompt, seed, i, width, height)
            item: dict[str, Any] = {}
            if fmt == "b64_json":
                item["b64_json"] = base64.b64encode(png).decode()
            else:
                file_id = uuid.uuid4().hex
                with self._lock:
                    self._files[file_id] = png
                    while len(self._files) > MAX_FILES:
                        self._files.popitem(last=False)
                item["url"] = f"{self.url}/files/{file_id}.png"
            if revised is not None:
                item["revised_prompt"] = revised
            item["index"] = i
            data.append(item)
        with self._lock:
            s = self._stats
            s["generations"] += 1
            s["images"] += n
            s["charged"] += cost
            m = s["by_model"].setdefault(model.id, {"requests": 0, "images": 0, "cost": 0.0})
            m["requests"] += 1
            m["images"] += n
            m["cost"] += cost
        duration = time.monotonic() - started
        return Response.json(200, {
            "request_id": str(uuid.uuid4()),
            "created_at": _now_iso(),
            "duration_ms": round(duration * 1000, 1),
            "provider": model.provider,
            "model": model.name,
            "success": True,
            "message": "",
            "data": data,
            "usage": {"cost": cost, "latency": round(duration, 4),
                      "cost_breakdown": {"total_cost": cost, "per_image": per_image}},
            "byok_api_key": byok,
        })

    # -- other endpoints ---------------------------------------------------------------
    def _file(self, name: str) -> Response:
        file_id = unquote(name).rsplit(".", 1)[0]
        with self._lock:
            png = self._files.get(file_id)
            expired = file_id in self._expired_files
        if expired:
            return Response(403, _EXPIRED_XML, "application/xml")
        if png is None:
            return Response.detail(404, "Not Found")
        return Response(200, png, "image/png", {"Cache-Control": "private, max-age=3600"})

    def _models(self, rest: list[str]) -> Response:
        if not rest or rest == [""]:
            return Response.json(200, catalog.listing())
        provider = catalog.PROVIDERS.get(rest[0].lower())
        if provider is None:
            return Response.detail(404, f"Provider '{_short(rest[0])}' not found")
        if len(rest) == 1:
            return Response.json(200, provider.to_dict())
        if rest[1] == "image_generation":
            return Response.json(200, [m.to_dict() for m in provider.image_models])
        entry = catalog.find_any_model(provider.name, "/".join(rest[1:]))
        if entry is None:
            return Response.detail(404, f"Model '{_short(rest[1])}' not found for provider '{provider.name}'")
        return Response.json(200, entry)

    def _usage(self) -> Response:
        s = self.stats
        return Response.json(200, {
            "credits_remaining": round(STARTING_CREDITS - s["charged"], 6),
            "total_cost": s["charged"],
            "total_requests": s["generations"],
            "images_generated": s["images"],
            "by_model": s["by_model"],
        })

    # -- control API -------------------------------------------------------------------
    def _control(self, method: str, path: str, body: bytes) -> Response:
        name = path[len("/_local/"):].strip("/")
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return Response.detail(400, "Body must be JSON")
        if method == "GET":
            if name == "stats":
                return Response.json(200, self.stats)
            if name == "requests":
                return Response.json(200, self.requests)
            if name == "faults":
                return Response.json(200, {"pending": self._faults.pending()})
            if name == "config":
                return Response.json(200, self._config())
        elif method == "POST":
            if name == "faults":
                try:
                    faults = [Fault.from_dict(d) for d in payload.get("faults", [])]
                except (TypeError, ValueError, AttributeError) as e:
                    return Response.detail(400, f"Bad fault: {e}")
                self.script(*faults)
                return Response.json(200, {"queued": len(faults), "pending": self._faults.pending()})
            if name == "reset":
                self.reset()
                return Response.json(200, {"ok": True})
            if name == "expire-files":
                self.expire_files()
                return Response.json(200, {"ok": True})
            if name == "expire-tokens":
                self.expire_tokens()
                return Response.json(200, {"ok": True})
            if name == "config":
                try:
                    latency = float(payload.get("latency", self.latency))
                    fail_rate = float(payload.get("fail_rate", self.fail_rate))
                except (TypeError, ValueError, AttributeError):
                    return Response.detail(400, "latency and fail_rate must be numbers")
                if latency < 0 or not 0 <= fail_rate <= 1:
                    return Response.detail(400, "need latency >= 0 and 0 <= fail_rate <= 1")
                self.latency, self.fail_rate = latency, fail_rate
                return Response.json(200, self._config())
        return Response.detail(404, "Not Found")

    def _config(self) -> dict[str, Any]:
        return {"latency": self.latency, "fail_rate": self.fail_rate, "seed": self.seed, "url": self.url}


_shared: LocalServer | None = None
_shared_lock = threading.Lock()


def shared_server() -> LocalServer:
    """The process-wide server behind base_url="local", started on first use."""
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.running:
            _shared = LocalServer().start()
        return _shared


def serve(host: str = "127.0.0.1", port: int = 8765, latency: float = 0.0, fail_rate: float = 0.0) -> None:
    """Run a server in the foreground until Ctrl-C (for `indox-jupyter serve`)."""
    server = LocalServer(host, port, latency=latency, fail_rate=fail_rate).start()
    print(f"IndoxRouter-compatible local server on {server.url} (any API key works; Ctrl-C to stop)",
          flush=True)
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print("stopped", flush=True)
