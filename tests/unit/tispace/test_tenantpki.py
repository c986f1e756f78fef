import base64

import pytest

from tispace import kubeconfig, pki, tenantpki


@pytest.fixture(scope="module")
def tpki() -> tenantpki.TenantPKI:
    return tenantpki.generate(tenant="t-abcdef-dev", hosts=("127.0.0.1", "kubernetes"), days=10)


def test_round_trip_through_secrets(tpki: tenantpki.TenantPKI) -> None:
    secrets = {name: {"data": data} for name, data in tenantpki.secret_data(tpki).items()}
    assert tenantpki.from_secrets(secrets) == tpki
    assert set(secrets) == set(tenantpki.SECRET_NAMES) - {tenantpki.ADMIN_KUBECONFIG}


def test_missing_secret_names_itself(tpki: tenantpki.TenantPKI) -> None:
    secrets = {name: {"data": data} for name, data in tenantpki.secret_data(tpki).items()}
    del secrets[tenantpki.FRONT_PROXY_CA]
    with pytest.raises(KeyError, match="front-proxy-ca"):
        tenantpki.from_secrets(secrets)


def test_kubelet_client_and_users_chain_to_the_tenant_ca(tpki: tenantpki.TenantPKI) -> None:
    assert pki.signed_by(tpki.kubelet_client.cert_pem, tpki.root_ca.cert_pem)
    cfg = tenantpki.user_kubeconfig_from_ca(
        tpki.root_ca, server="https://x", user="alice", days=1, cluster="c"
    )
    creds = kubeconfig.credentials(cfg)
    assert pki.signed_by(creds.cert_pem, tpki.root_ca.cert_pem)
    assert creds.ca_pem == tpki.root_ca.cert_pem


def test_admin_kubeconfig_secret_round_trip(tpki: tenantpki.TenantPKI) -> None:
    cfg = tenantpki.admin_kubeconfig(tpki, server="https://127.0.0.1:1", days=1, cluster="dev")
    secret = {"data": tenantpki.admin_secret_data(cfg)}
    assert tenantpki.read_admin_kubeconfig(secret) == cfg
    assert base64.b64decode(secret["data"]["admin-kubeconfig"]).startswith(b"apiVersion")


def test_expiry_is_the_earliest_certificate(tpki: tenantpki.TenantPKI) -> None:
    assert tpki.expires() == min(
        c.cert.not_valid_after_utc
        for c in (tpki.root_ca, tpki.apiserver, tpki.kubelet_client, tpki.front_proxy_client)
    )


def test_ca_names_are_per_tenant(tpki: tenantpki.TenantPKI) -> None:
    subject = tpki.root_ca.cert.subject.rfc4514_string()
    assert "t-abcdef-dev" in subject
