"""The deploy tests' helpers: the shipped nginx site made runnable, nginx as a process, a cert.

`site_for_test` is the only way a test gets an nginx site: it reads
docs/deploy/nginx-chatapp.conf and replaces exactly the lines named in
`SUBSTITUTED` (upstream address, listen ports, certificate paths), each of
which must occur once. `test_deploy.py` checks that nothing else differs.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from .support import ROOT, until_sync

DEPLOY = ROOT / "docs" / "deploy"
SITE = DEPLOY / "nginx-chatapp.conf"
UNIT = DEPLOY / "chatapp.service"
PRODUCTION_CONFIG = DEPLOY / "config.production.yaml"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

# The shipped lines a test replaces, and nothing else.
UPSTREAM = "    server 127.0.0.1:8080;"
LISTEN_HTTP = "    listen 80;"
LISTEN_HTTPS = "    listen 443 ssl;"
CERTIFICATE = "    ssl_certificate /etc/letsencrypt/live/chat.example.com/fullchain.pem;"
CERTIFICATE_KEY = "    ssl_certificate_key /etc/letsencrypt/live/chat.example.com/privkey.pem;"
SUBSTITUTED = (UPSTREAM, LISTEN_HTTP, LISTEN_HTTPS, CERTIFICATE, CERTIFICATE_KEY)


def site_for_test(
    *,
    upstream_port: int,
    http_port: int,
    https_port: int,
    cert: Path,
    key: Path,
    tls: bool = True,
) -> str:
    """The shipped site with the test's addresses. `tls=False` serves the main
    server over plain http (its `listen` without `ssl`) on `https_port`."""
    replacements = {
        UPSTREAM: f"    server 127.0.0.1:{upstream_port};",
        LISTEN_HTTP: f"    listen 127.0.0.1:{http_port};",
        LISTEN_HTTPS: f"    listen 127.0.0.1:{https_port}{' ssl' if tls else ''};",
        CERTIFICATE: f"    ssl_certificate {cert};",
        CERTIFICATE_KEY: f"    ssl_certificate_key {key};",
    }
    lines = SITE.read_text().splitlines()
    for shipped in SUBSTITUTED:
        count = lines.count(shipped)
        assert count == 1, f"{SITE.name}: expected the line {shipped.strip()!r} once, found {count}"
    return "\n".join(replacements.get(line, line) for line in lines) + "\n"


def require_nginx() -> None:
    """No skip: CI installs nginx-light (.ci/run); a machine without it fails, saying so."""
    if not Path(NGINX).exists():
        pytest.fail("the deploy tests need nginx (apt-get install nginx-light)")


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class NginxProcess:
    """nginx as an ordinary foreground process: its own prefix, config, logs and temp dirs.

    The main config is the test's; the site is included as given (see `site_for_test`).
    """

    def __init__(self, site: str, ports: list[int], directory: Path | None = None) -> None:
        self.dir = directory or Path(tempfile.mkdtemp(prefix="chatapp-nginx-"))
        self.ports = ports
        self.site_path = self.dir / "chatapp.conf"
        self.site_path.write_text(site)
        self.conf = self.dir / "nginx.conf"
        self.error_log = self.dir / "error.log"
        self.output = self.dir / "output.log"
        self.proc: subprocess.Popen | None = None
        d = self.dir
        # Root's workers would run as nobody, who cannot enter this private directory.
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"{user}daemon off;\nmaster_process on;\nworker_processes 1;\n"
            f"pid {d}/nginx.pid;\nerror_log {self.error_log} info;\n"
            "events { worker_connections 512; }\n"
            "http {\n"
            f"    access_log {d}/access.log;\n"
            f"    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n"
            f"    fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n"
            f"    scgi_temp_path {d}/scgi;\n"
            f"    include {self.site_path};\n"
            "}\n"
        )

    def command(self, *extra: str) -> list[str]:
        return [NGINX, "-p", str(self.dir), "-c", str(self.conf), "-e", str(self.error_log), *extra]

    def test_config(self) -> subprocess.CompletedProcess:
        """`nginx -t` on this config."""
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)

    def start(self) -> NginxProcess:
        with self.output.open("ab") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        until_sync(self._ready, 15, f"nginx on ports {self.ports}")
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"nginx exited with {self.proc.returncode}:\n{self.log()}")
        for port in self.ports:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    pass
            except OSError:
                return False
        return True

    def log(self) -> str:
        return "".join(
            path.read_text(errors="replace")
            for path in (self.output, self.error_log)
            if path.exists()
        )

    def stop(self) -> None:
        """SIGTERM: nginx's fast shutdown (a graceful one would wait for every socket)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def upstream_connections(server_port: int, pids: list[int]) -> dict[int, int]:
    """Established connections to `server_port` (the proxy's, here): {peer port: owner pid}.

    Read from /proc: /proc/net/tcp for the connections, each process's fds for
    the owners. A connection whose owner is not among `pids` is left out.
    """
    inodes: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == server_port and fields[3] == "01":  # ESTABLISHED
                inodes[f"socket:[{fields[9]}]"] = int(fields[2].rsplit(":", 1)[1], 16)
    owners: dict[int, int] = {}
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target in inodes:
                owners[inodes[target]] = pid
    return owners
