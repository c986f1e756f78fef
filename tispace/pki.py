"""Certificates and keys for local control planes and tenants.

Everything a Kubernetes control plane needs (CAs, serving and client certificates, the
service-account key pair) is made here with `cryptography`, so no `openssl` binary or
shell-out is involved and the tests can inspect every field.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertKey:
    """A PEM certificate with its PEM private key."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
"""What a CA may hold: RSA (_new_ca_key) or ECDSA (a CA brought by an admin, or one only TLS handshakes
verify: new_ca's verified_per_request=False)."""


def _new_key() -> ec.EllipticCurvePrivateKey:
    """Leaf and service-account keys are ECDSA P-256 (kubeadm's encryptionAlgorithm ECDSA-P256): they
    sign, and an ECDSA signature costs about 1/40 of an RSA-2048 one. A tenant API server signs a
    token per pod (RSA signing was a tenth of its CPU through 400 pods, in a CPU profile; tokens
    are verified once per 10 s, cached) and a handshake per connection, as the syncer does."""
    return ec.generate_private_key(ec.SECP256R1())


def _new_ca_key() -> rsa.RSAPrivateKey:
    """CA keys stay RSA-2048: a CA signs a few certificates, but an API server verifies its signature
    on every request it authenticates by client certificate, and RSA verifies 3x cheaper than
    ECDSA (with ECDSA CAs that verification was 12% of a tenant API server's CPU, in a profile)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: SigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    # Backdate a little so freshly issued certs are valid on a clock that lags by seconds.
    return now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """Signing for every certificate (an ECDSA key enciphers nothing); certificate and CRL signing for
    CAs only."""
    return x509.KeyUsage(
        digital_signature=True,
        key_encipherment=False,
        key_cert_sign=ca,
        crl_sign=ca,
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def new_ca(common_name: str, days: int = 3650, *, verified_per_request: bool = True) -> CertKey:
    """A self-signed CA allowed to sign leaf certificates only. `verified_per_request=False`: a CA
    only a TLS handshake verifies (a webhook's serving CA) gets an ECDSA key, made in a millisecond
    where an RSA one takes 0.1-0.3 s (time a restarted syncer spent before serving its tenants)."""
    key = _new_ca_key() if verified_per_request else _new_key()
    not_before, not_after = _validity(days)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertKey(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(
    ca: CertKey,
    common_name: str,
    *,
    orgs: tuple[str, ...] = (),
    hosts: tuple[str, ...] = (),
    server: bool = False,
    client: bool = False,
    days: int = 365,
) -> CertKey:
    """A leaf certificate signed by `ca`; `hosts` become DNS or IP SANs."""
    if not (server or client):
        raise ValueError("a leaf certificate must be for server or client use")
    key = _new_key()
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, SigningKey):
        raise ValueError(f"the CA {ca.cert.subject.rfc4514_string()} holds a {type(ca_key).__name__}")
    not_before, not_after = _validity(days)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, orgs))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(min(not_after, ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return CertKey(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def new_keypair() -> tuple[bytes, bytes]:
    """(private PEM, public PEM): the service-account token signing pair."""
    key = _new_key()
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _key_pem(key), pub


def apiserver_hosts(*, service_ip: str, cluster_domain: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every name a pod or a developer may use to reach an API server."""
    return (
        "127.0.0.1",
        "localhost",
        service_ip,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{cluster_domain}",
        *extra,
    )


def signed_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    """True when `cert_pem` was issued by the CA in `ca_pem` (signature checked)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca = x509.load_pem_x509_certificate(ca_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def load_into(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """Load a certificate chain and key held in memory into an SSL context.

    The ssl module reads them from files only: they exist for microseconds in a private
    temporary directory, the key created with mode 0600.
    """
    with tempfile.TemporaryDirectory() as d:
        cert, key = Path(d, "c.pem"), Path(d, "k.pem")
        fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, key_pem)
        os.close(fd)
        cert.write_bytes(cert_pem)
        ctx.load_cert_chain(cert, key)
