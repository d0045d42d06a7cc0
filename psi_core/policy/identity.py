"""Party identities and the TLS material of the two services' mTLS.

The file layout (``psi_tools.dev_pki.init_pki`` writes a development one; production
deployments bring their own certificates in the same layout): one CA and six leaves:

==================  =============  ====================================================
file stem           extended use   used by
==================  =============  ====================================================
``ca``              (CA)           both services, as the only trusted root
``custodian-server`` serverAuth    the custodian's gRPC server
``agency-client``   clientAuth     the agency when it calls the custodian
``agency-server``   serverAuth     the agency's own API, called by case systems
``case-client``     clientAuth     a case-management system calling the agency
``dask-client``     clientAuth     ``psi-custodian build-index`` calling a tls:// Dask
                                   scheduler and its workers
``dask-node``       server- and    a Dask scheduler and its workers (each is server and
                    clientAuth     client of the others)
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

import ipaddress
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

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
    "is_loopback",
    "load_tls_material",
    "peer_identity_from_cert_pem",
    "validate_party_id",
]

AGENCY_URI_PREFIX = "psi://agency/"
CUSTODIAN_URI_PREFIX = "psi://custodian/"
ROLES: tuple[str, ...] = (
    "custodian-server",
    "agency-client",
    "agency-server",
    "case-client",
    "dask-client",
    "dask-node",
)

_PARTY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_INIT_HINT = "run `psi pki init` to create a development PKI there, or copy your own files in"


def is_loopback(address: str) -> bool:
    """True when ``address`` ("host:port", "[v6]:port", optionally "scheme://" first)
    names a loopback host: the only place where plaintext is accepted."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    dask_client_cert: Path
    dask_client_key: Path
    dask_node_cert: Path
    dask_node_key: Path

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
            dask_client_cert=r / "dask-client.pem",
            dask_client_key=r / "dask-client.key",
            dask_node_cert=r / "dask-node.pem",
            dask_node_key=r / "dask-node.key",
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
