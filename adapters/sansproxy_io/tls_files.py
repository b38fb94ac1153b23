"""A TLS listener's certificate and key, loaded with errors an operator can act on.

OpenSSL explains a bad file as ``[SSL] PEM lib (_ssl.c:3926)`` and does not say which
of the two files it means. Start-up and reload promise one line naming the
configuration file, the key and the problem (``docs/configuration.md``), so the files
are checked here one at a time, before OpenSSL sees them:

1. each file must exist, be a file and be readable (``listeners[0].certificate: file
   not found: cert.pem``);
2. the certificate file must hold at least one PEM certificate;
3. the key file must hold a PEM private key, not encrypted (a server cannot ask for a
   passphrase, and OpenSSL would prompt on the terminal);
4. the key must belong to the certificate.

Each problem names the key of the file at fault: a key file that is not a key is
reported as ``private_key``, never as the certificate.
"""

from __future__ import annotations

import errno
import ssl
from pathlib import Path

from sansproxy.errors import ConfigError

__all__ = ["load_listener_files"]

_CERTIFICATE_MARK = b"-----BEGIN CERTIFICATE-----"
_KEY_MARK = b"PRIVATE KEY-----"
_ENCRYPTED_MARKS = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")


class _NoPassphrase(Exception):
    """Raised by the password callback: the key asked for a passphrase."""


def load_listener_files(
    context: ssl.SSLContext, certificate: str, private_key: str, *, source: str, index: int
) -> None:
    """Load listener ``index``'s certificate chain and key into ``context``.

    Args:
        context: The listener's server context.
        certificate: The ``certificate`` path, as configured.
        private_key: The ``private_key`` path, as configured.
        source: The configuration file's name, for the message.
        index: The listener's position in ``listeners``.

    Raises:
        ConfigError: A file is missing, unreadable or not what its key says, or the key
            does not match the certificate; the message says which, in plain words.
    """
    where = f"listeners[{index}]"
    cert_key, key_key = f"{where}.certificate", f"{where}.private_key"
    cert_bytes = _read(certificate, source, cert_key)
    key_bytes = _read(private_key, source, key_key)
    if _CERTIFICATE_MARK not in cert_bytes or not _has_certificate(certificate):
        raise ConfigError(source, cert_key, f"{certificate}: not a PEM certificate")
    if _KEY_MARK not in key_bytes:
        problem = f"{private_key}: not a PEM private key"
        if _CERTIFICATE_MARK in key_bytes:
            problem += " (it holds a certificate: is it the certificate file?)"
        raise ConfigError(source, key_key, problem)
    if any(mark in key_bytes for mark in _ENCRYPTED_MARKS):
        raise ConfigError(
            source, key_key, f"{private_key}: the key is encrypted; give it without a passphrase"
        )
    try:
        context.load_cert_chain(certificate, private_key, password=_refuse_passphrase)
    except _NoPassphrase:
        raise ConfigError(
            source, key_key, f"{private_key}: the key is encrypted; give it without a passphrase"
        ) from None
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            problem = f"{private_key}: does not belong to the certificate {certificate}"
        else:
            problem = f"{private_key}: not a private key OpenSSL can read (damaged or unsupported)"
        raise ConfigError(source, key_key, problem) from None
    except OSError as error:  # the files changed since they were read just now
        raise ConfigError(source, where, f"cannot load: {_plain(error)}") from None


def _read(path: str, source: str, key: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, key, f"file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(source, key, f"{path} is a directory, not a file") from None
    except PermissionError:
        raise ConfigError(
            source, key, f"cannot read {path}: permission denied (for this user)"
        ) from None
    except OSError as error:
        raise ConfigError(source, key, f"cannot read {path}: {_plain(error)}") from None


def _has_certificate(path: str) -> bool:
    """Whether OpenSSL finds at least one certificate in the file at ``path``."""
    scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        scratch.load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError):
        return False
    return True


def _refuse_passphrase() -> bytes:
    raise _NoPassphrase


def _plain(error: OSError) -> str:
    """An OS error in words, lower case: ``no such file or directory``."""
    if error.errno is not None and error.strerror:
        return error.strerror[0].lower() + error.strerror[1:]
    return errno.errorcode.get(error.errno or 0, str(error))
