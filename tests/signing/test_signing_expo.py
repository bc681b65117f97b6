"""Expo code signing: certificate rules and expo-signature headers."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from mpaas.signing import expo
from mpaas.signing.errors import InvalidCertificate
from mpaas.signing.expo import (
    create_expo_certificate,
    import_expo_certificate,
    load_expo_private_key,
    parse_signature_header,
    sign_expo_part,
    verify_expo_signature,
)

MANIFEST = b'{"id":"8f0e3f4e-0000-4000-8000-000000000000","runtimeVersion":"1","launchAsset":{}}'


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("expo")
    create_expo_certificate("bank", directory / "key.pem", directory / "cert.pem", valid_days=30)
    return directory / "key.pem", directory / "cert.pem"


def test_certificate_has_what_the_expo_client_requires(pair: tuple[Path, Path]) -> None:
    key_path, cert_path = pair
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical and key_usage.value.digital_signature
    assert (
        ExtendedKeyUsageOID.CODE_SIGNING
        in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    assert cert.issuer == cert.subject
    assert load_expo_private_key(key_path).key_size == 2048
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_signature_verifies_and_one_changed_byte_breaks_it(pair: tuple[Path, Path]) -> None:
    key_path, cert_path = pair
    header = sign_expo_part(MANIFEST, load_expo_private_key(key_path))
    assert header.startswith('sig="') and header.endswith('keyid="main", alg="rsa-v1_5-sha256"')
    cert = cert_path.read_bytes()
    assert verify_expo_signature(MANIFEST, header, cert)
    assert verify_expo_signature(MANIFEST, header, cert, keyid="main")
    assert not verify_expo_signature(MANIFEST, header, cert, keyid="root")
    tampered = bytearray(MANIFEST)
    tampered[10] ^= 0x01
    assert not verify_expo_signature(bytes(tampered), header, cert)
    assert not verify_expo_signature(MANIFEST, header.replace("rsa-v1_5-sha256", "rsa-pss-sha256"), cert)
    assert not verify_expo_signature(MANIFEST, "sig=not base64!", cert)
    assert not verify_expo_signature(
        MANIFEST, header, cert, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    )


def test_other_key_ids_and_the_fallback_serialiser(
    pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_path, cert_path = pair
    monkeypatch.setattr(expo, "http_sfv", None)
    header = sign_expo_part(MANIFEST, load_expo_private_key(key_path), keyid="root")
    assert parse_signature_header(header)["keyid"] == "root"
    assert verify_expo_signature(MANIFEST, header, cert_path.read_bytes(), keyid="root")


_sf_strings = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_.*-]{0,8}", fullmatch=True), _sf_strings, min_size=1, max_size=4
    )
)
def test_fallback_and_http_sfv_agree(fields: dict[str, str]) -> None:
    with_library = expo.serialize_signature_header(fields)
    assert expo._serialize_fallback(fields) == with_library
    assert expo._parse_fallback(with_library) == fields == expo.parse_signature_header(with_library)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40))
def test_fallback_parser_agrees_with_http_sfv_on_any_input(text: str) -> None:
    try:
        expected: dict[str, str] | None = expo.parse_signature_header(text)
    except ValueError:
        expected = None
    try:
        actual: dict[str, str] | None = expo._parse_fallback(text)
    except ValueError:
        actual = None
    if expected is not None and actual is not None:
        assert actual == expected
    # The fallback only ever accepts a subset of valid headers (no integers, lists...).
    if actual is not None:
        assert expected is not None


def _cert(key: rsa.RSAPrivateKey, *, code_signing: bool = True, digital_signature: bool = True) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.KeyUsage(digital_signature, False, False, False, False, False, False, False, False),
            critical=True,
        )
    )
    usages = [ExtendedKeyUsageOID.CODE_SIGNING if code_signing else ExtendedKeyUsageOID.SERVER_AUTH]
    builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_import_validates_certificate_and_key(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    import_expo_certificate(key_pem, _cert(key), tmp_path / "k.pem", tmp_path / "c.pem")
    assert verify_expo_signature(
        b"x", sign_expo_part(b"x", load_expo_private_key(tmp_path / "k.pem")), _cert(key)
    )

    with pytest.raises(InvalidCertificate, match="codeSigning"):
        import_expo_certificate(
            key_pem, _cert(key, code_signing=False), tmp_path / "k2.pem", tmp_path / "c2.pem"
        )
    with pytest.raises(InvalidCertificate, match="digitalSignature"):
        import_expo_certificate(
            key_pem, _cert(key, digital_signature=False), tmp_path / "k2.pem", tmp_path / "c2.pem"
        )
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InvalidCertificate, match="does not belong"):
        import_expo_certificate(key_pem, _cert(other), tmp_path / "k2.pem", tmp_path / "c2.pem")
    with pytest.raises(InvalidCertificate):
        import_expo_certificate(key_pem, b"not a cert", tmp_path / "k2.pem", tmp_path / "c2.pem")
    assert not (tmp_path / "k2.pem").exists()
