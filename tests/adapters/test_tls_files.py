"""A TLS listener's bad certificate or key is one plain line naming file, key and problem.

Every case runs ``--check-config`` and a real start-up (``--config``, on each event loop),
in process: both must print the same single line and exit 2, without OpenSSL's text and
without a traceback. The files are made by trustme.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from conftest import TlsFiles

from sansproxy.config import parse_config
from sansproxy_io.tls import server_context
from sansproxy_trio.cli import main

Case = Callable[[Path, TlsFiles], tuple[str, str, str]]
"""Makes the files of one case: (certificate path, key path, the expected problem)."""


def _config(tmp_path: Path, certificate: str, private_key: str) -> str:
    path = tmp_path / "proxy.toml"
    path.write_text(
        f"""\
[[listeners]]
address = "127.0.0.1:0"

[[listeners]]
address = "127.0.0.1:0"
certificate = "{certificate}"
private_key = "{private_key}"

[upstreams.app]
servers = ["http://127.0.0.1:9"]
"""
    )
    return str(path)


def _missing_certificate(tmp: Path, files: TlsFiles) -> tuple[str, str, str]:
    missing = tmp / "nowhere.pem"
    return str(missing), str(files.key_file), f"certificate: file not found: {missing}"


def _missing_key(tmp: Path, files: TlsFiles) -> tuple[str, str, str]:
    missing = tmp / "nowhere.key"
    return str(files.cert_file), str(missing), f"private_key: file not found: {missing}"


def _unreadable_key(tmp: Path, files: TlsFiles) -> tuple[str, str, str]:
    files.key_file.chmod(0)
    problem = f"private_key: cannot read {files.key_file}: permission denied (for this user)"
    return str(files.cert_file), str(files.key_file), problem


def _key_is_a_directory(tmp: Path, files: TlsFiles) -> tuple[str, str, str]:
    return str(files.cert_file), str(tmp), f"private_key: {tmp} is a directory, not a file"


def _key_is_not_a_key(tmp: Path, files: TlsFiles) -> tuple[str, str, str]:
    text = tmp / "notes.txt"
    text.write_text("this is not a key\n")
    return str(files.cert_file), str(text), f"private_key: {text}: not a PEM private key"


def _key_is_the_certificate(tmp: Path, files: TlsFiles) -> tuple[str, str, str]:
    problem = (
        f"private_key: {files.cert_file}: not a PEM private key "
        "(it holds a certificate: is it the certificate file?)"
    )
    return str(files.cert_file), str(files.cert_file), problem


def _certificate_is_not_a_certificate(tmp: Path, files: TlsFiles) -> tuple[str, str, str]:
    problem = f"certificate: {files.key_file}: not a PEM certificate"
    return str(files.key_file), str(files.key_file), problem


def _key_of_another_certificate(tmp: Path, files: TlsFiles) -> tuple[str, str, str]:
    other = tmp / "other.key"
    trustme.CA().issue_cert("localhost").private_key_pem.write_to_path(str(other))
    problem = f"private_key: {other}: does not belong to the certificate {files.cert_file}"
    return str(files.cert_file), str(other), problem


def _damaged_key(tmp: Path, files: TlsFiles) -> tuple[str, str, str]:
    damaged = tmp / "damaged.key"
    lines = files.key_file.read_bytes().splitlines(keepends=True)
    damaged.write_bytes(lines[0] + b"bm90IGEga2V5\n" + lines[-1])
    problem = f"private_key: {damaged}: not a private key OpenSSL can read (damaged or unsupported)"
    return str(files.cert_file), str(damaged), problem


def _encrypted_key(tmp: Path, files: TlsFiles) -> tuple[str, str, str]:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(files.key_file.read_bytes(), password=None)
    encrypted = tmp / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    problem = f"private_key: {encrypted}: the key is encrypted; give it without a passphrase"
    return str(files.cert_file), str(encrypted), problem


CASES = [
    _missing_certificate,
    _missing_key,
    _unreadable_key,
    _key_is_a_directory,
    _key_is_not_a_key,
    _key_is_the_certificate,
    _certificate_is_not_a_certificate,
    _key_of_another_certificate,
    _damaged_key,
    _encrypted_key,
]


@pytest.fixture
def case_files(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    tls_files: TlsFiles,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[str, str]:
    """The configuration file of the case and the one line it must give."""
    case: Case = request.param
    certificate, key, problem = case(tmp_path, tls_files)
    if case is _unreadable_key and os.geteuid() == 0:
        # Root reads any file whatever its mode: refuse it the way the kernel would.
        read_bytes = Path.read_bytes

        def refused(path: Path) -> bytes:
            if path == tls_files.key_file:
                raise PermissionError(13, "Permission denied", str(path))
            return read_bytes(path)

        monkeypatch.setattr(Path, "read_bytes", refused)
    config = _config(tmp_path, certificate, key)
    return config, f"{config}: listeners[1].{problem}\n"


@pytest.mark.parametrize("case_files", CASES, indirect=True, ids=lambda case: case.__name__[1:])
@pytest.mark.parametrize(
    "argv",
    [["--check-config"], ["--config"], ["--loop", "asyncio", "--config"]],
    ids=["check", "start-trio", "start-asyncio"],
)
def test_tls_file_problems_are_one_plain_line_and_exit_2(
    case_files: tuple[str, str], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, expected = case_files
    assert main([*argv, config]) == 2
    out, err = capsys.readouterr()
    assert err == expected
    assert out == ""


def test_good_files_load(tmp_path: Path, tls_files: TlsFiles) -> None:
    text = Path(_config(tmp_path, str(tls_files.cert_file), str(tls_files.key_file)))
    config = parse_config(text.read_text(), source=str(text))
    assert config.source == str(text)
    context = server_context(config, 1)
    assert context.minimum_version.name == "TLSv1_2"
