"""MTA-STS policy hosts on loopback: nginx with one TLS vhost per `mta-sts.<domain>` (SNI), plus hostile
servers nginx cannot play.

    vhosts = [Vhost("mta-sts.good.test", cert, body=b"version: STSv1\\n..."),
              Vhost("mta-sts.redirect.test", cert, redirect="https://elsewhere.test/"),
              Vhost("mta-sts.ctype.test", cert, body=b"...", content_type="text/html"),
              Vhost("mta-sts.notfound.test", cert)]                      # no body: 404
    with Nginx.start(tmp_path, vhosts, ip="127.0.80.1", port=port) as nginx: ...
    SilentTcp("127.0.80.2", port)      # accepts TCP, never says a word (not even a TLS ServerHello)
    DripTls("127.0.80.3", port, cert)  # completes TLS, then sends the response one byte at a time, forever

nginx runs in the foreground (`daemon off`) from Debian's package with a prefix, pid file, logs and
temp dirs of its own, on an unprivileged port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.servers.ca import IssuedCert

POLICY_PATH = "/.well-known/mta-sts.txt"


class ServerStartError(RuntimeError):
    pass


def nginx_binary() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin:/usr/local/sbin")


@dataclass
class Vhost:
    server_name: str
    cert: IssuedCert
    body: bytes | None = None  # the policy; None: no file (404)
    content_type: str = "text/plain"
    redirect: str | None = None  # answer every request with 301 to this URL


class Nginx:
    def __init__(self, directory: Path, ip: str, port: int) -> None:
        self.directory, self.ip, self.port = directory, ip, port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path = directory / "error.log"

    @classmethod
    def start(
        cls, directory: Path, vhosts: Sequence[Vhost], *, ip: str, port: int, startup_timeout: float = 15.0
    ) -> Nginx:
        binary = nginx_binary()
        if binary is None:
            raise ServerStartError("nginx is not installed (run scripts/install-test-servers.sh)")
        directory.mkdir(parents=True, exist_ok=True)
        server = cls(directory, ip, port)
        server._write_config(vhosts)
        argv = [binary, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-e", str(server._log)]
        test = subprocess.run([*argv, "-t"], capture_output=True, text=True, check=False)
        if test.returncode != 0:
            raise ServerStartError(f"nginx -t failed:\n{test.stderr}")
        server._proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + startup_timeout
        while True:
            if server._proc.poll() is not None:
                raise ServerStartError(f"nginx exited with {server._proc.returncode}:\n{server.tail()}")
            try:
                with socket.create_connection((ip, port), timeout=0.5):
                    return server
            except OSError:
                if time.monotonic() > deadline:
                    server.stop()
                    raise ServerStartError(f"nginx did not listen on {ip}:{port}:\n{server.tail()}") from None
                time.sleep(0.05)

    def _write_config(self, vhosts: Sequence[Vhost]) -> None:
        root = self.directory / "www"
        blocks = []
        listen = f"{self.ip}:{self.port}"
        for index, vhost in enumerate(vhosts):
            docroot = root / f"vhost{index}"
            (docroot / ".well-known").mkdir(parents=True, exist_ok=True)
            if vhost.body is not None:
                (docroot / ".well-known" / "mta-sts.txt").write_bytes(vhost.body)
            if vhost.redirect is not None:
                location = f"location / {{ return 301 {vhost.redirect}; }}"
            else:
                location = (
                    f'location = {POLICY_PATH} {{ types {{ }} default_type "{vhost.content_type}"; }}\n'
                    "        location / { return 404; }"
                )
            default = " default_server" if index == 0 else ""
            blocks.append(
                f"""
    server {{
        listen {listen} ssl{default};
        server_name {vhost.server_name};
        ssl_certificate {vhost.cert.chain_path};
        ssl_certificate_key {vhost.cert.key_path};
        root {docroot};
        {location}
    }}"""
            )
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = self.directory / "tmp"
        temp.mkdir(exist_ok=True)
        config = f"""{user}daemon off;
master_process on;
worker_processes 2;
pid {self.directory / "nginx.pid"};
error_log {self._log} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {temp / "body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};
    keepalive_timeout 5;
    server_names_hash_max_size 8192;  # the benchmark's thousand policy hosts
    ssl_protocols TLSv1.2 TLSv1.3;  # as real policy hosts; this nginx's default stops at 1.2
    {"".join(blocks)}
}}
"""
        (self.directory / "nginx.conf").write_text(config)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGQUIT)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._proc = None

    def __enter__(self) -> Nginx:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _ThreadedServer:
    def __init__(self, ip: str, port: int) -> None:
        self.ip, self.port = ip, port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((ip, port))
        self._listener.listen(64)
        self._stopping = threading.Event()
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.close()
        self._thread.join(timeout=5)


class SilentTcp(_ThreadedServer):
    """Accepts the connection and never answers (the client's TLS handshake hangs)."""

    def _serve(self, conn: socket.socket) -> None:
        self._stopping.wait()


class DripTls(_ThreadedServer):
    """Completes TLS for `cert`, then sends `HTTP/1.1 200 OK` headers one byte every `interval` s, forever.

    Every single read succeeds quickly, so only a deadline over the whole fetch ends the client's wait.
    """

    def __init__(self, ip: str, port: int, cert: IssuedCert, interval: float = 0.2) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert.chain_path, cert.key_path)
        self.interval = interval
        super().__init__(ip, port)

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            tls = self._context.wrap_socket(conn, server_side=True)
            tls.recv(4096)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")
            while not self._stopping.is_set():
                tls.sendall(b"X")
                time.sleep(self.interval)
        except OSError:
            return


class CannedTls(_ThreadedServer):
    """Completes TLS for `cert`, reads the request, sends `response` as it is; then closes, or with
    `keep_open` holds the connection open (as a server ignoring `Connection: close` does).

    Binds an ephemeral port on `ip` when `port` is 0 (`self.port` says which)."""

    def __init__(self, ip: str, cert: IssuedCert, response: bytes, *, keep_open: bool, port: int = 0) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert.chain_path, cert.key_path)
        self.response, self.keep_open = response, keep_open
        super().__init__(ip, port)
        self.port = self._listener.getsockname()[1]

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            tls = self._context.wrap_socket(conn, server_side=True)
            tls.recv(4096)
            tls.sendall(self.response)
            if self.keep_open:
                self._stopping.wait()
            tls.close()
        except OSError:
            return
