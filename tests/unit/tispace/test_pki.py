import datetime

import pytest
from cryptography import x509
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
