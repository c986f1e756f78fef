import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tispace import pki


@pytest.fixture(scope="module")
def ca() -> pki.CertKey:
    return pki.new_ca("test-ca", days=30)


def test_ca_is_a_ca(ca: pki.CertKey) -> None:
    bc = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is True
    assert ca.cert.subject == ca.cert.issuer


def test_server_cert_has_all_sans_and_chains(ca: pki.CertKey) -> None:
    hosts = pki.apiserver_hosts(
        service_ip="10.96.0.1", cluster_domain="cluster.local", extra=("api.example",)
    )
    leaf = pki.issue(ca, "kube-apiserver", hosts=hosts, server=True)
    san = leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(san.get_values_for_type(x509.DNSName)) | {
        str(i) for i in san.get_values_for_type(x509.IPAddress)
    }
    assert names == set(hosts)
    eku = leaf.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert pki.signed_by(leaf.cert_pem, ca.cert_pem)


def test_client_cert_carries_groups(ca: pki.CertKey) -> None:
    leaf = pki.issue(ca, "alice", orgs=("system:masters", "dev"), client=True, days=7)
    orgs = [a.value for a in leaf.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters", "dev"]
    assert leaf.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    left = leaf.cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=6) < left <= datetime.timedelta(days=7)


def test_leaf_never_outlives_its_ca(ca: pki.CertKey) -> None:
    leaf = pki.issue(ca, "long", client=True, days=10_000)
    assert leaf.cert.not_valid_after_utc <= ca.cert.not_valid_after_utc


def test_other_ca_is_rejected(ca: pki.CertKey) -> None:
    other = pki.new_ca("other")
    leaf = pki.issue(other, "mallory", client=True)
    assert not pki.signed_by(leaf.cert_pem, ca.cert_pem)


def test_leaf_needs_a_usage(ca: pki.CertKey) -> None:
    with pytest.raises(ValueError, match="server or client"):
        pki.issue(ca, "nothing")


def test_keypair_is_pem() -> None:
    priv, pub = pki.new_keypair()
    assert priv.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub.startswith(b"-----BEGIN PUBLIC KEY-----")


def test_leaves_sign_with_ecdsa_p256_under_an_rsa_ca(ca: pki.CertKey) -> None:
    """Leaves and the service-account key sign (cheap with ECDSA); a CA's signature is verified on
    every certificate-authenticated request (cheap with RSA)."""
    assert isinstance(ca.cert.public_key(), rsa.RSAPublicKey)
    leaf = pki.issue(ca, "kube-apiserver", hosts=("127.0.0.1",), server=True)
    key = leaf.cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    usage = leaf.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment and not usage.key_cert_sign
    priv, _ = pki.new_keypair()
    assert isinstance(serialization.load_pem_private_key(priv, None), ec.EllipticCurvePrivateKey)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    pki.load_into(ctx, leaf.cert_pem, leaf.key_pem)


def _self_signed(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> pki.CertKey:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "own-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    )
    pkcs8 = serialization.PrivateFormat.PKCS8
    pem = key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())
    return pki.CertKey(cert.public_bytes(serialization.Encoding.PEM), pem)


def test_an_admins_ecdsa_ca_issues_too() -> None:
    own = _self_signed(ec.generate_private_key(ec.SECP256R1()))
    leaf = pki.issue(own, "alice", client=True)
    assert pki.signed_by(leaf.cert_pem, own.cert_pem)


def test_a_ca_with_another_kind_of_key_is_refused() -> None:
    odd = _self_signed(ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(ValueError, match="CN=own-ca holds a"):
        pki.issue(odd, "bob", client=True)


def test_a_ca_only_handshakes_verify_has_an_ecdsa_key() -> None:
    """A webhook's serving CA is made at every syncer start: ECDSA, made in a millisecond."""
    ca = pki.new_ca("webhook-ca", verified_per_request=False)
    assert isinstance(ca.cert.public_key(), ec.EllipticCurvePublicKey)
    leaf = pki.issue(ca, "webhook", hosts=("127.0.0.1",), server=True)
    leaf.cert.verify_directly_issued_by(ca.cert)
