"""A throwaway certificate for the TLS scenarios, made at run time in the run's temp folder.

The TLS peers (sansproxy's TLS listener, nginx with ``ssl http2``) all load the same
certificate and key, so the handshake and the record layer cost them the same: an ECDSA
P-256 key, valid for ``127.0.0.1`` and ``localhost``, issued by a CA made on the spot.
trustme makes it when it is installed (it is a test dependency); otherwise the ``openssl``
command line does. Nothing is ever written outside the folder it is given, and nothing
made here is committed.
"""

from __future__ import annotations

import importlib.util
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Certificate", "make_certificate"]


@dataclass(frozen=True)
class Certificate:
    """The files of one server certificate, and where they came from."""

    certificate: Path  # PEM, the leaf only
    private_key: Path  # PEM
    ca: Path  # PEM of the issuing CA, for clients that verify
    origin: str  # "trustme" or "openssl", for the report

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate (for readiness checks)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.check_hostname = False  # clients connect to 127.0.0.1 by address
        return context


def _with_trustme(folder: Path) -> Certificate:
    import trustme  # noqa: PLC0415  (optional: only the test extra installs it)

    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1", "localhost")
    made = Certificate(folder / "cert.pem", folder / "key.pem", folder / "ca.pem", "trustme")
    issued.cert_chain_pems[0].write_to_path(str(made.certificate))
    issued.private_key_pem.write_to_path(str(made.private_key))
    authority.cert_pem.write_to_path(str(made.ca))
    return made


def _with_openssl(openssl: str, folder: Path) -> Certificate:
    """A self-signed certificate: it is its own CA."""
    made = Certificate(folder / "cert.pem", folder / "key.pem", folder / "cert.pem", "openssl")
    argv = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    argv += ["-nodes", "-keyout", str(made.private_key), "-out", str(made.certificate)]
    argv += ["-days", "2", "-subj", "/CN=localhost"]
    argv += ["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl req failed: {done.stderr.strip()[-300:]}")
    return made


def make_certificate(folder: Path) -> tuple[Certificate | None, str]:
    """Make a certificate and key in ``folder``: (certificate, "") or (None, why not)."""
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        if importlib.util.find_spec("trustme") is not None:
            made = _with_trustme(folder)
        elif (openssl := shutil.which("openssl")) is not None:
            made = _with_openssl(openssl, folder)
        else:
            return None, "no certificate maker: pip install trustme, or apt-get install openssl"
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as error:
        return None, f"could not make a certificate: {error}"
    return made, ""
