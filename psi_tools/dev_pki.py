"""A development PKI for the two services' mTLS, in the layout psi_core.policy.identity reads.

This is a development PKI: no revocation, no intermediate CA, and the CA key sits next to
the certificates it signed. Production deployments bring their own certificates in the
same file layout.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from psi_core.errors import (
    InvalidInputError,
    PreconditionError,
)
from psi_core.io import write_file_atomically
from psi_core.policy import AGENCY_URI_PREFIX, CUSTODIAN_URI_PREFIX, PkiPaths, validate_party_id

DEFAULT_VALID_DAYS = 365


_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


_CASE_CLIENT_CN = "case-client"
_DASK_CLIENT_CN = "dask-client"
_DASK_NODE_CN = "dask-node"


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
    usages: Sequence[x509.ObjectIdentifier],
    now: dt.datetime,
    valid_days: int,
) -> x509.Certificate:
    subject = _name(common_name)
    return (
        _certificate(subject, ca_cert.subject, key, now, valid_days, certifies=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
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


def init_pki(
    out_dir: str | os.PathLike[str],
    *,
    hosts: Iterable[str] = ("localhost", "127.0.0.1", "::1"),
    custodian_id: str = "custodian",
    agency_id: str = "agency",
    valid_days: int = DEFAULT_VALID_DAYS,
    force: bool = False,
) -> PkiPaths:
    """Create a CA and the six leaf certificates under ``out_dir`` (see the module doc of
    ``psi_core.policy.identity``): the four of the two services and the two of a Dask
    cluster that builds the index over TLS.

    ``hosts`` become the DNS-name and IP-address SANs of the server and Dask-node
    certificates.
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
    server, client = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    leaves: dict[str, tuple[str, list[x509.GeneralName], tuple[x509.ObjectIdentifier, ...]]] = {
        "custodian-server": (
            custodian_id,
            [*server_sans, x509.UniformResourceIdentifier(CUSTODIAN_URI_PREFIX + custodian_id)],
            (server,),
        ),
        "agency-client": (
            agency_id,
            [x509.UniformResourceIdentifier(AGENCY_URI_PREFIX + agency_id)],
            (client,),
        ),
        "agency-server": (
            agency_id,
            [*server_sans, x509.UniformResourceIdentifier(AGENCY_URI_PREFIX + agency_id)],
            (server,),
        ),
        "case-client": (_CASE_CLIENT_CN, [x509.DNSName(_CASE_CLIENT_CN)], (client,)),
        # Dask checks the chain to this CA, not host names; the SANs are for operators.
        "dask-client": (_DASK_CLIENT_CN, [x509.DNSName(_DASK_CLIENT_CN)], (client,)),
        "dask-node": (_DASK_NODE_CN, server_sans, (server, client)),
    }
    outputs: list[tuple[Path, bytes, int]] = [
        (paths.ca_cert, _cert_pem(ca_cert), 0o644),
        (paths.ca_key, _key_pem(ca_key), 0o600),
    ]
    for role, (cn, sans, usages) in leaves.items():
        key = _new_key()
        cert = _build_leaf(
            ca_cert=ca_cert,
            ca_key=ca_key,
            key=key,
            common_name=cn,
            sans=sans,
            usages=usages,
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
