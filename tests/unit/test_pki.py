"""Tests of the development PKI (psi_core.policy.identity)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    DNSName,
    IPAddress,
    PolicyBuilder,
    Store,
    VerificationError,
)

from psi_core.errors import AuthenticationError, InvalidInputError, PreconditionError
from psi_core.policy import ROLES, PkiPaths, load_tls_material, peer_identity_from_cert_pem
from psi_tools.dev_pki import init_pki

SERVER_ROLES = ("custodian-server", "agency-server")
CLIENT_ROLES = ("agency-client", "case-client")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiPaths:
    return init_pki(tmp_path_factory.mktemp("pki") / "tls", agency_id="ice-ero")


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _store(pki: PkiPaths) -> Store:
    return Store([_cert(pki.ca_cert)])


def _policy(pki: PkiPaths) -> PolicyBuilder:
    return PolicyBuilder().store(_store(pki)).time(dt.datetime.now(dt.UTC))


def _issue(
    pki: PkiPaths,
    *,
    names: list[x509.NameAttribute],
    sans: list[x509.GeneralName] | None,
) -> bytes:
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(names))
        .issuer_name(_cert(pki.ca_cert).subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_every_leaf_is_signed_by_the_ca(pki: PkiPaths) -> None:
    """Each leaf certificate's signature verifies with the CA's public key."""
    ca = _cert(pki.ca_cert)
    for role in ROLES:
        _cert(pki.for_role(role)[0]).verify_directly_issued_by(ca)


def test_ca_is_a_self_signed_ca_that_can_only_sign_certificates(pki: PkiPaths) -> None:
    """The CA is self-signed, a CA with path length 0, and may only sign certificates and CRLs."""
    ca = _cert(pki.ca_cert)
    ca.verify_directly_issued_by(ca)
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    assert bc.value.ca
    assert bc.value.path_length == 0
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign
    assert ku.crl_sign
    assert not ku.digital_signature


@pytest.mark.parametrize("role", SERVER_ROLES)
@pytest.mark.parametrize(
    "host",
    [
        DNSName("localhost"),
        IPAddress(ipaddress.ip_address("127.0.0.1")),
        IPAddress(ipaddress.ip_address("::1")),
    ],
)
def test_server_certificates_verify_for_every_default_host(
    pki: PkiPaths, role: str, host: DNSName | IPAddress
) -> None:
    """Both server certificates pass RFC 5280 server verification for each default SAN."""
    _policy(pki).build_server_verifier(host).verify(_cert(pki.for_role(role)[0]), [])


@pytest.mark.parametrize("role", CLIENT_ROLES)
def test_client_certificates_verify_as_clients(pki: PkiPaths, role: str) -> None:
    """Both client certificates pass RFC 5280 client verification against the CA."""
    _policy(pki).build_client_verifier().verify(_cert(pki.for_role(role)[0]), [])


@pytest.mark.parametrize(
    ("role", "usage"),
    [
        ("custodian-server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("agency-server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("agency-client", ExtendedKeyUsageOID.CLIENT_AUTH),
        ("case-client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ],
)
def test_leaf_key_usage_is_exactly_its_role(pki: PkiPaths, role: str, usage: object) -> None:
    """A leaf is not a CA, signs only, and has exactly its one extended key usage."""
    cert = _cert(pki.for_role(role)[0])
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature
    assert not ku.key_cert_sign
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [usage]


def test_server_sans_are_dns_names_and_ip_addresses(pki: PkiPaths) -> None:
    """Host names become DNS SANs and literal addresses become IP SANs."""
    san = _cert(pki.custodian_server_cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert san.value.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.value.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }


def test_custom_hosts_are_used(tmp_path: Path) -> None:
    """Hosts passed to init_pki appear, and only they, in the server SANs."""
    paths = init_pki(tmp_path / "tls", hosts=("psi.example.org", "10.0.0.7"))
    san = _cert(paths.agency_server_cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert san.value.get_values_for_type(x509.DNSName) == ["psi.example.org"]
    assert san.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]


def test_agency_client_carries_identity_as_cn_and_uri(pki: PkiPaths) -> None:
    """The agency client certificate has CN=agency id and the URI SAN psi://agency/<id>."""
    cert = _cert(pki.agency_client_cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ice-ero"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["psi://agency/ice-ero"]


def test_keys_are_p256_and_match_their_certificates(pki: PkiPaths) -> None:
    """Every private key is EC P-256 and belongs to the certificate beside it."""
    for role in ("ca", *ROLES):
        cert = _cert(pki.root / f"{role}.pem")
        key = serialization.load_pem_private_key(
            (pki.root / f"{role}.key").read_bytes(), password=None
        )
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert isinstance(key.curve, ec.SECP256R1)
        assert key.public_key() == cert.public_key()


def test_private_keys_are_mode_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    """Key files are 0600 and certificates 0644 even when the umask would allow more."""
    old = os.umask(0)
    try:
        paths = init_pki(tmp_path / "tls")
    finally:
        os.umask(old)
    for key in paths.key_files():
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE(paths.ca_cert.stat().st_mode) == 0o644
    assert len(paths.key_files()) == 7


def test_identity_prefers_the_uri_san(pki: PkiPaths) -> None:
    """The identity is read from psi://agency/<id> even when the CN says something else."""
    pem = _issue(
        pki,
        names=[x509.NameAttribute(NameOID.COMMON_NAME, "someone-else")],
        sans=[x509.UniformResourceIdentifier("psi://agency/dhs-uscis")],
    )
    assert peer_identity_from_cert_pem(pem) == "dhs-uscis"
    assert peer_identity_from_cert_pem(pki.agency_client_cert.read_bytes()) == "ice-ero"


def test_identity_falls_back_to_the_common_name(pki: PkiPaths) -> None:
    """A certificate without a psi://agency URI is identified by its CN."""
    pem = _issue(
        pki,
        names=[x509.NameAttribute(NameOID.COMMON_NAME, "cbp")],
        sans=[x509.UniformResourceIdentifier("https://cbp.example")],
    )
    assert peer_identity_from_cert_pem(pem) == "cbp"
    assert peer_identity_from_cert_pem(pem.decode("ascii")) == "cbp"


def test_force_replaces_an_existing_pki(tmp_path: Path) -> None:
    """With force=True a second init writes a new CA, and the keys stay 0600."""
    first = init_pki(tmp_path / "tls")
    old_ca = first.ca_cert.read_bytes()
    second = init_pki(tmp_path / "tls", force=True)
    assert second.ca_cert.read_bytes() != old_ca
    _cert(second.custodian_server_cert).verify_directly_issued_by(_cert(second.ca_cert))
    assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in second.key_files())


@pytest.mark.parametrize("role", ROLES)
def test_load_tls_material_returns_the_role_files(pki: PkiPaths, role: str) -> None:
    """load_tls_material returns the CA, the role's certificate and its key, byte for byte."""
    material = load_tls_material(pki.root, role)
    cert_path, key_path = pki.for_role(role)
    assert material.root_ca == pki.ca_cert.read_bytes()
    assert material.cert_chain == cert_path.read_bytes()
    assert material.private_key == key_path.read_bytes()
    assert "PRIVATE KEY" not in repr(material)


# Negative cases


def test_refuses_to_overwrite_an_existing_pki(tmp_path: Path) -> None:
    """A second init without force raises PreconditionError and leaves every file unchanged."""
    paths = init_pki(tmp_path / "tls")
    before = {p: p.read_bytes() for p in paths.files()}
    with pytest.raises(PreconditionError, match="refusing to overwrite"):
        init_pki(tmp_path / "tls")
    assert {p: p.read_bytes() for p in paths.files()} == before


def test_refuses_when_a_single_pki_file_exists(tmp_path: Path) -> None:
    """One leftover key file is enough to refuse, so no half-replaced PKI can be made."""
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "agency-client.key").write_bytes(b"keep me")
    with pytest.raises(PreconditionError, match=r"agency-client\.key"):
        init_pki(tmp_path / "tls")
    assert (tmp_path / "tls" / "agency-client.key").read_bytes() == b"keep me"
    assert not (tmp_path / "tls" / "ca.pem").exists()


@pytest.mark.parametrize("role", SERVER_ROLES)
def test_server_certificates_do_not_verify_for_other_hosts(pki: PkiPaths, role: str) -> None:
    """A server certificate is rejected for a host name that is not in its SANs."""
    verifier = _policy(pki).build_server_verifier(DNSName("evil.example"))
    with pytest.raises(VerificationError):
        verifier.verify(_cert(pki.for_role(role)[0]), [])


@pytest.mark.parametrize("role", CLIENT_ROLES)
def test_client_certificates_cannot_act_as_servers(pki: PkiPaths, role: str) -> None:
    """A clientAuth-only certificate fails server verification."""
    verifier = _policy(pki).build_server_verifier(DNSName("localhost"))
    with pytest.raises(VerificationError):
        verifier.verify(_cert(pki.for_role(role)[0]), [])


@pytest.mark.parametrize("role", SERVER_ROLES)
def test_server_certificates_cannot_act_as_clients(pki: PkiPaths, role: str) -> None:
    """A serverAuth-only certificate fails client verification."""
    with pytest.raises(VerificationError):
        _policy(pki).build_client_verifier().verify(_cert(pki.for_role(role)[0]), [])


def test_certificates_of_another_pki_do_not_chain(pki: PkiPaths, tmp_path: Path) -> None:
    """A certificate from a second, independent PKI fails verification against the first CA."""
    other = init_pki(tmp_path / "other")
    with pytest.raises(VerificationError):
        _policy(pki).build_client_verifier().verify(_cert(other.agency_client_cert), [])
    with pytest.raises(InvalidSignature):
        _cert(other.agency_client_cert).verify_directly_issued_by(_cert(pki.ca_cert))


@pytest.mark.parametrize("pem", [b"", b"not a certificate", b"-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_identity_rejects_unparsable_pem(pem: bytes) -> None:
    """Bytes that are not a PEM certificate raise AuthenticationError."""
    with pytest.raises(AuthenticationError, match="could not be parsed"):
        peer_identity_from_cert_pem(pem)


def test_identity_rejects_two_agency_uris(pki: PkiPaths) -> None:
    """A certificate naming two different agencies raises AuthenticationError."""
    pem = _issue(
        pki,
        names=[x509.NameAttribute(NameOID.COMMON_NAME, "a")],
        sans=[
            x509.UniformResourceIdentifier("psi://agency/a"),
            x509.UniformResourceIdentifier("psi://agency/b"),
        ],
    )
    with pytest.raises(AuthenticationError, match="more than one agency"):
        peer_identity_from_cert_pem(pem)


def test_identity_rejects_a_certificate_without_identity(pki: PkiPaths) -> None:
    """No psi://agency URI and no CN raises AuthenticationError."""
    pem = _issue(
        pki,
        names=[x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nobody")],
        sans=None,
    )
    with pytest.raises(AuthenticationError, match="no agency identity"):
        peer_identity_from_cert_pem(pem)


@pytest.mark.parametrize(
    ("cn", "uri"),
    [("bad agency/id", None), ("ok", "psi://agency/"), ("ok", "psi://agency/../x y")],
)
def test_identity_rejects_malformed_ids(pki: PkiPaths, cn: str, uri: str | None) -> None:
    """An identity that is not a valid party id raises AuthenticationError."""
    sans = [x509.UniformResourceIdentifier(uri)] if uri else None
    pem = _issue(pki, names=[x509.NameAttribute(NameOID.COMMON_NAME, cn)], sans=sans)
    with pytest.raises(AuthenticationError, match="not a valid agency id"):
        peer_identity_from_cert_pem(pem)


@pytest.mark.parametrize("missing", ["ca.pem", "agency-client.pem", "agency-client.key"])
def test_load_tls_material_names_the_missing_file(tmp_path: Path, missing: str) -> None:
    """A missing file raises PreconditionError naming the file and `psi pki init`."""
    paths = init_pki(tmp_path / "tls")
    (paths.root / missing).unlink()
    with pytest.raises(PreconditionError) as info:
        load_tls_material(paths.root, "agency-client")
    assert missing in str(info.value)
    assert "psi pki init" in str(info.value)


def test_load_tls_material_rejects_a_corrupt_key(tmp_path: Path) -> None:
    """A key file that is not a PEM private key raises PreconditionError naming it."""
    paths = init_pki(tmp_path / "tls")
    paths.case_client_key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnope\n")
    with pytest.raises(PreconditionError, match=r"case-client\.key"):
        load_tls_material(paths.root, "case-client")


@pytest.mark.parametrize("role", ["ca", "custodian-client", "", "../ca"])
def test_load_tls_material_rejects_unknown_roles(pki: PkiPaths, role: str) -> None:
    """A role outside ROLES raises InvalidInputError listing the valid roles."""
    with pytest.raises(InvalidInputError, match="custodian-server"):
        load_tls_material(pki.root, role)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"agency_id": ""},
        {"agency_id": "agency/x"},
        {"custodian_id": "-leading-dash"},
        {"hosts": ()},
        {"hosts": ("bad host",)},
        {"hosts": ("bücher.example",)},
        {"valid_days": 0},
        {"valid_days": 100_000},
    ],
)
def test_init_rejects_bad_arguments_before_writing(
    tmp_path: Path, kwargs: dict[str, object]
) -> None:
    """Bad ids, hosts or validity raise InvalidInputError and write nothing."""
    with pytest.raises(InvalidInputError):
        init_pki(tmp_path / "tls", **kwargs)
    assert not (tmp_path / "tls").exists()
