"""The manager's verdict on a tenant's PKI secrets: usable, missing, unreadable or expired."""

import base64
import datetime

import pytest

from tispace import tenantpki
from vc_manager.manager import TenantError, check_pki
from vc_manager.tenant import Tenant

NOW = datetime.datetime(2026, 11, 23, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def secrets() -> dict[str, dict]:
    tpki = tenantpki.generate(tenant="t-abcdef-dev", hosts=("127.0.0.1",), days=10)
    return {name: {"data": data} for name, data in tenantpki.secret_data(tpki).items()}


TENANT = Tenant(name="dev", namespace="t", uid="u-1", spec={}, version={})


def _verdict(found: dict[str, dict], at: datetime.datetime = NOW) -> TenantError:
    with pytest.raises(TenantError) as err:
        check_pki(TENANT, found, at)
    return err.value


def test_complete_and_valid_secrets_give_the_pki(secrets: dict[str, dict]) -> None:
    tpki = check_pki(TENANT, secrets, datetime.datetime.now(datetime.UTC))
    assert tpki == tenantpki.from_secrets(secrets)


@pytest.mark.parametrize("gone", sorted(set(tenantpki.SECRET_NAMES) - {tenantpki.ADMIN_KUBECONFIG}))
def test_each_missing_secret_is_named(secrets: dict[str, dict], gone: str) -> None:
    e = _verdict({k: v for k, v in secrets.items() if k != gone})
    assert e.reason == "PKIIncomplete" and gone in e.message and TENANT.root in e.message


def test_admin_kubeconfig_is_not_part_of_the_pki(secrets: dict[str, dict]) -> None:
    assert tenantpki.ADMIN_KUBECONFIG not in secrets
    check_pki(TENANT, secrets, datetime.datetime.now(datetime.UTC))


def test_expired_certificates_say_when(secrets: dict[str, dict]) -> None:
    e = _verdict(secrets, at=datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=11))
    assert e.reason == "PKIExpired" and "expired at" in e.message and e.retry


def test_garbage_in_a_secret_is_reported_not_raised(secrets: dict[str, dict]) -> None:
    broken = dict(secrets)
    broken[tenantpki.APISERVER] = {"data": {"tls.crt": base64.b64encode(b"junk").decode(), "tls.key": ""}}
    e = _verdict(broken)
    assert e.reason == "PKIInvalid" and TENANT.root in e.message


def test_a_secret_without_its_keys_is_reported(secrets: dict[str, dict]) -> None:
    broken = dict(secrets)
    broken[tenantpki.SERVICE_ACCOUNT] = {"data": {}}
    assert _verdict(broken).reason == "PKIInvalid"
