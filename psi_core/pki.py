"""A development PKI for the two services' mTLS, and the helpers that read it back.

``init_pki`` writes one CA and four leaf certificates (EC P-256, ECDSA-SHA256):

==================  =============  ====================================================
file stem           extended use   used by
==================  =============  ====================================================
``ca``              (CA)           both services, as the only trusted root
``custodian-server`` serverAuth    the custodian's gRPC server
``agency-client``   clientAuth     the agency when it calls the custodian
``agency-server``   serverAuth     the agency's own API, called by case systems
``case-client``     clientAuth     a case-management system calling the agency
==================  =============  ====================================================

Each stem has ``<stem>.pem`` (certificate) and, except that the CA's key is ``ca.key``,
``<stem>.key`` (unencrypted PKCS#8 PEM, because gRPC cannot read encrypted keys). Key
files are created with mode 0600 from the start and never exist with wider permissions.

The agency's identity is carried twice in ``agency-client.pem``: as the subject common name
and as a URI subject-alternative name ``psi://agency/<agency_id>``. The custodian reads it
back with :func:`peer_identity_from_cert_pem` and compares it with the authorization's
agency id.

This is a development PKI: no revocation, no intermediate CA, and the CA key sits next to
the certificates it signed. Production deployments bring their own certificates in the
same file layout.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from psi_core.errors import (
    AuthenticationError,
    InvalidInputError,
    PreconditionError,
)

__all__ = [
    "AGENCY_URI_PREFIX",
    "ROLES",
    "PkiPaths",
    "TlsMaterial",
    "init_pki",
    "load_tls_material",
    "peer_identity_from_cert_pem",
    "validate_party_id",
]

AGENCY_URI_PREFIX = "psi://agency/"
CUSTODIAN_URI_PREFIX = "psi://custodian/"
ROLES: tuple[str, ...] = ("custodian-server", "agency-client", "agency-server", "case-client")
DEFAULT_VALID_DAYS = 365

_PARTY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_CASE_CLIENT_CN = "case-client"
_INIT_HINT = "run `psi pki init` to create a development PKI there, or copy your own files in"


def validate_party_id(kind: str, value: object) -> str:
    """Return ``value`` if it is a usable party id, else raise :class:`InvalidInputError`.

    A party id (custodian, agency, authority issuer) is 1 to 64 characters of ASCII
    letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit, so that it
    fits unchanged in a certificate name, a URI and a log line.
    """
    if not isinstance(value, str) or _PARTY_ID.fullmatch(value) is None:
        raise InvalidInputError(
            f"{kind} must be 1 to 64 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class PkiPaths:
    """Where :func:`init_pki` wrote each file."""

    root: Path
    ca_cert: Path
    ca_key: Path
    custodian_server_cert: Path
    custodian_server_key: Path
    agency_client_cert: Path
    agency_client_key: Path
    agency_server_cert: Path
    agency_server_key: Path
    case_client_cert: Path
    case_client_key: Path

    @classmethod
    def in_dir(cls, root: str | os.PathLike[str]) -> PkiPaths:
        """The standard layout under ``root`` (nothing is read or written)."""
        r = Path(root)
        return cls(
            root=r,
            ca_cert=r / "ca.pem",
            ca_key=r / "ca.key",
            custodian_server_cert=r / "custodian-server.pem",
            custodian_server_key=r / "custodian-server.key",
            agency_client_cert=r / "agency-client.pem",
            agency_client_key=r / "agency-client.key",
            agency_server_cert=r / "agency-server.pem",
            agency_server_key=r / "agency-server.key",
            case_client_cert=r / "case-client.pem",
            case_client_key=r / "case-client.key",
        )

    def files(self) -> tuple[Path, ...]:
        """Every file of the PKI, certificates and keys."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.name != "root")

    def key_files(self) -> tuple[Path, ...]:
        """The private-key files (each mode 0600)."""
        return tuple(p for p in self.files() if p.suffix == ".key")

    def for_role(self, role: str) -> tuple[Path, Path]:
        """``(certificate, private key)`` of a role in :data:`ROLES`.

        Raises :class:`InvalidInputError` for any other role.
        """
        _check_role(role)
        return self.root / f"{role}.pem", self.root / f"{role}.key"


@dataclass(frozen=True)
class TlsMaterial:
    """PEM bytes for one role, in the shape gRPC's credential constructors take.

    ``private_key`` is left out of ``repr`` so that the object can be logged.
    """

    root_ca: bytes
    cert_chain: bytes
    private_key: bytes = field(repr=False)


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidInputError(f"unknown TLS role {role!r}; expected one of {', '.join(ROLES)}")


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _subject_alt_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        if not isinstance(host, str) or not host or host != host.strip():
            raise InvalidInputError(f"host {host!r} is not a DNS name or IP address")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if _HOSTNAME.fullmatch(host) is None:
                raise InvalidInputError(
                    f"host {host!r} is not a DNS name or IP address "
                    "(write an internationalized name in its xn-- form)"
                ) from None
            names.append(x509.DNSName(host))
    if not names:
        raise InvalidInputError("at least one host name or IP address is needed for server SANs")
    return names


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "psi-matching development PKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    valid_days: int,
    *,
    certifies: bool,
) -> x509.CertificateBuilder:
    """What CA and leaf certificates share: names, key, serial, validity (from five minutes
    ago, for clock skew), and key usage: certificate and CRL signing for a CA
    (``certifies``), digital signatures otherwise."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(
            x509.KeyUsage(
                digital_signature=not certifies,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=certifies,
                crl_sign=certifies,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _build_ca(
    key: ec.EllipticCurvePrivateKey, now: dt.datetime, valid_days: int
) -> x509.Certificate:
    name = _name("psi-matching development CA")
    return (
        _certificate(name, name, key, now, valid_days, certifies=True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )


def _build_leaf(
    *,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    sans: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    now: dt.datetime,
    valid_days: int,
) -> x509.Certificate:
    subject = _name(common_name)
    return (
        _certificate(subject, ca_cert.subject, key, now, valid_days, certifies=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_file_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` via a temporary file created with ``mode``, then rename.

    The file never exists with wider permissions than ``mode`` (the umask may narrow it),
    and a reader never sees it half-written. An existing file at ``path`` is replaced.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def init_pki(
    out_dir: str | os.PathLike[str],
    *,
    hosts: Iterable[str] = ("localhost", "127.0.0.1", "::1"),
    custodian_id: str = "custodian",
    agency_id: str = "agency",
    valid_days: int = DEFAULT_VALID_DAYS,
    force: bool = False,
) -> PkiPaths:
    """Create a CA and the four leaf certificates under ``out_dir`` (see the module doc).

    ``hosts`` become the DNS-name and IP-address SANs of both server certificates.
    ``out_dir`` is created (mode 0700) if needed. Every key and certificate is generated
    before the first file is written.

    Raises :class:`InvalidInputError` for a bad id, host or ``valid_days``, and
    :class:`PreconditionError` if any PKI file already exists under ``out_dir`` and
    ``force`` is false.
    """
    validate_party_id("custodian id", custodian_id)
    validate_party_id("agency id", agency_id)
    if isinstance(valid_days, bool) or not isinstance(valid_days, int) or valid_days < 1:
        raise InvalidInputError("valid_days must be a positive whole number of days")
    if valid_days > 3650:
        raise InvalidInputError("valid_days is capped at 3650 (ten years) for a development PKI")
    server_sans = _subject_alt_names(hosts)

    paths = PkiPaths.in_dir(out_dir)
    existing = [p for p in paths.files() if p.exists()]
    if existing and not force:
        raise PreconditionError(
            f"{paths.root} already holds a PKI ({existing[0].name} exists); "
            "refusing to overwrite it (use --force to replace every certificate and key)"
        )
    if paths.root.exists() and not paths.root.is_dir():
        raise PreconditionError(f"{paths.root} exists and is not a directory")

    now = dt.datetime.now(dt.UTC)
    ca_key = _new_key()
    ca_cert = _build_ca(ca_key, now, valid_days)
    leaves: dict[str, tuple[str, list[x509.GeneralName], x509.ObjectIdentifier]] = {
        "custodian-server": (
            custodian_id,
            [*server_sans, x509.UniformResourceIdentifier(CUSTODIAN_URI_PREFIX + custodian_id)],
            ExtendedKeyUsageOID.SERVER_AUTH,
        ),
        "agency-client": (
            agency_id,
            [x509.UniformResourceIdentifier(AGENCY_URI_PREFIX + agency_id)],
            ExtendedKeyUsageOID.CLIENT_AUTH,
        ),
        "agency-server": (
            agency_id,
            [*server_sans, x509.UniformResourceIdentifier(AGENCY_URI_PREFIX + agency_id)],
            ExtendedKeyUsageOID.SERVER_AUTH,
        ),
        "case-client": (
            _CASE_CLIENT_CN,
            [x509.DNSName(_CASE_CLIENT_CN)],
            ExtendedKeyUsageOID.CLIENT_AUTH,
        ),
    }
    outputs: list[tuple[Path, bytes, int]] = [
        (paths.ca_cert, _cert_pem(ca_cert), 0o644),
        (paths.ca_key, _key_pem(ca_key), 0o600),
    ]
    for role, (cn, sans, usage) in leaves.items():
        key = _new_key()
        cert = _build_leaf(
            ca_cert=ca_cert,
            ca_key=ca_key,
            key=key,
            common_name=cn,
            sans=sans,
            usage=usage,
            now=now,
            valid_days=valid_days,
        )
        cert_path, key_path = paths.for_role(role)
        outputs.append((cert_path, _cert_pem(cert), 0o644))
        outputs.append((key_path, _key_pem(key), 0o600))

    paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path, data, mode in outputs:
        write_file_atomically(path, data, mode)
    return paths


def peer_identity_from_cert_pem(pem: bytes | str) -> str:
    """The agency id a client certificate proves.

    The URI SAN ``psi://agency/<id>`` is preferred; a certificate without one falls back to
    its subject common name. The certificate's chain is *not* checked here: call this only
    on a certificate the TLS layer has already verified against the trusted CA.

    Raises :class:`AuthenticationError` if the PEM cannot be parsed, if it names more than
    one agency, or if it carries no usable identity.
    """
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else bytes(pem)
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise AuthenticationError("the client certificate could not be parsed") from None

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    except ValueError:
        raise AuthenticationError(
            "the client certificate's subject alternative names could not be parsed"
        ) from None
    agencies = {u[len(AGENCY_URI_PREFIX) :] for u in uris if u.startswith(AGENCY_URI_PREFIX)}
    if len(agencies) > 1:
        raise AuthenticationError(
            "the client certificate names more than one agency; issue it with exactly one "
            f"{AGENCY_URI_PREFIX}<id> URI"
        )
    if agencies:
        candidate = agencies.pop()
        source = f"its {AGENCY_URI_PREFIX}<id> URI"
    else:
        try:
            cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        except ValueError:
            cns = []
        if len(cns) != 1:
            raise AuthenticationError(
                "the client certificate carries no agency identity: it has no "
                f"{AGENCY_URI_PREFIX}<id> URI and not exactly one common name"
            )
        candidate = cns[0].value if isinstance(cns[0].value, str) else ""
        source = "its common name"
    try:
        return validate_party_id("agency id", candidate)
    except InvalidInputError:
        raise AuthenticationError(
            f"the client certificate's agency identity ({source}) is not a valid agency id"
        ) from None


def load_tls_material(tls_dir: str | os.PathLike[str], role: str) -> TlsMaterial:
    """Read ``ca.pem``, ``<role>.pem`` and ``<role>.key`` from ``tls_dir``.

    Each file is parsed once so that a broken file is reported here, by name, rather than
    as an opaque handshake failure later.

    Raises :class:`InvalidInputError` for a role not in :data:`ROLES` and
    :class:`PreconditionError` naming the file when one is missing, unreadable or not PEM.
    """
    _check_role(role)
    paths = PkiPaths.in_dir(tls_dir)
    cert_path, key_path = paths.for_role(role)
    ca = _read_pem_file(paths.ca_cert, "CA certificate")
    chain = _read_pem_file(cert_path, f"{role} certificate")
    key = _read_pem_file(key_path, f"{role} private key")
    try:
        x509.load_pem_x509_certificates(ca)
    except ValueError:
        raise PreconditionError(f"{paths.ca_cert} is not a PEM certificate") from None
    try:
        x509.load_pem_x509_certificates(chain)
    except ValueError:
        raise PreconditionError(f"{cert_path} is not a PEM certificate") from None
    try:
        serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise PreconditionError(
            f"{key_path} is not an unencrypted PEM private key (gRPC cannot use encrypted keys)"
        ) from None
    except UnsupportedAlgorithm:
        raise PreconditionError(f"{key_path} holds a key type this build cannot use") from None
    return TlsMaterial(root_ca=ca, cert_chain=chain, private_key=key)


def _read_pem_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PreconditionError(
            f"{what} {path} is missing; {_INIT_HINT} (see `psi pki init --help`)"
        ) from None
    except IsADirectoryError:
        raise PreconditionError(f"{what} {path} is a directory, not a file") from None
    except PermissionError:
        raise PreconditionError(f"{what} {path} cannot be read by this user") from None
