"""A real MIT Kerberos realm on loopback: Debian's `krb5kdc`, a database made by `kdb5_util`,
principals and a keytab made by `kadmin.local`, all in a temporary folder.

`KDC(workdir).start()` gives a realm with a user (password known to the test), the service
principal `HTTP/<host>` in a keytab the loopback PSRP endpoint accepts with, and `env()`: the
KRB5_CONFIG / KRB5_KTNAME / KRB5CCNAME a client and the acceptor in this process should use.
Name canonicalisation is off, as in a lab without reverse DNS: `HTTP/localhost` is what a client
asks for when it connects to `localhost`.

`skew_seconds` runs the KDC under libfaketime (Debian `faketime`), so its clock is off against the
client's: the login fails with "Clock skew too great", as on a workstation whose clock drifted.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

REALM = "EXLAB.TEST"
BINARIES = ("krb5kdc", "kdb5_util", "kadmin.local", "kinit")


def missing_binaries() -> list[str]:
    """The Kerberos programs this module needs that are not installed."""
    found = [shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin") for name in BINARIES]
    return [name for name, path in zip(BINARIES, found, strict=True) if path is None]


def _binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise RuntimeError(f"{name} is not installed (scripts/install-test-servers.sh installs it)")
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class KDC:
    def __init__(
        self,
        workdir: Path,
        *,
        service_host: str = "localhost",
        users: dict[str, str] | None = None,
        skew_seconds: int = 0,
    ) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.realm = REALM
        self.service_host = service_host
        self.users = users or {}
        self.skew_seconds = skew_seconds
        self.port = _free_port()
        self.krb5_conf = self.dir / "krb5.conf"
        self.kdc_conf = self.dir / "kdc.conf"
        self.keytab = self.dir / "http.keytab"
        self.ccache = self.dir / "ccache"
        self.log = self.dir / "kdc.log"
        self._process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {
            "KRB5_CONFIG": str(self.krb5_conf),
            "KRB5_KDC_PROFILE": str(self.kdc_conf),
            "KRB5_KTNAME": f"FILE:{self.keytab}",
            "KRB5CCNAME": f"FILE:{self.ccache}",
        }

    def _write_config(self) -> None:
        address = f"127.0.0.1:{self.port}"
        self.krb5_conf.write_text(
            f"""[libdefaults]
    default_realm = {self.realm}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    # A client that does not adopt the KDC's clock (MIT does by default): a skewed clock fails.
    kdc_timesync = 0
    udp_preference_limit = 1
    default_ccache_name = FILE:{self.ccache}
[realms]
    {self.realm} = {{
        kdc = {address}
    }}
[domain_realm]
    {self.service_host} = {self.realm}
""",
            encoding="utf-8",
        )
        self.kdc_conf.write_text(
            f"""[kdcdefaults]
    kdc_listen = {address}
    kdc_tcp_listen = {address}
[realms]
    {self.realm} = {{
        database_name = {self.dir / "principal"}
        key_stash_file = {self.dir / "stash"}
        acl_file = {self.dir / "kadm5.acl"}
        kdc_listen = {address}
        kdc_tcp_listen = {address}
        max_life = 10h
    }}
[logging]
    kdc = FILE:{self.log}
""",
            encoding="utf-8",
        )
        (self.dir / "kadm5.acl").write_text("", encoding="utf-8")

    def _run(self, *args: str) -> None:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **self.env()}
        subprocess.run(args, env=env, check=True, capture_output=True, timeout=60)

    def kadmin(self, query: str) -> None:
        self._run(_binary("kadmin.local"), "-r", self.realm, "-q", query)

    def start(self) -> KDC:
        self._write_config()
        self._run(_binary("kdb5_util"), "create", "-s", "-r", self.realm, "-P", "master-key-of-the-test")
        for user, password in self.users.items():
            self.kadmin(f"addprinc -pw {password} {user}")
        principal = f"HTTP/{self.service_host}"
        self.kadmin(f"addprinc -randkey {principal}")
        self.kadmin(f"ktadd -k {self.keytab} {principal}")
        command = [_binary("krb5kdc"), "-n", "-r", self.realm]
        if self.skew_seconds:
            command = [_binary("faketime"), "-f", f"{self.skew_seconds:+d}s", *command]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **self.env()}
        self._process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"krb5kdc exited with {self._process.returncode}; see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"krb5kdc did not listen on 127.0.0.1:{self.port}")

    def kinit(self, user: str, password: str) -> None:
        """A ticket in this realm's credential cache, as an admin's `kinit` would leave it."""
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **self.env()}
        subprocess.run(
            [_binary("kinit"), f"{user}@{self.realm}"],
            input=f"{password}\n".encode(),
            env=env,
            check=True,
            capture_output=True,
            timeout=30,
        )

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        self._process = None
