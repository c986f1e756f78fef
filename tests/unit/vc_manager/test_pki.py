"""The manager's verdict on a tenant's PKI secrets: usable, missing, unreadable or expired, or cut
short by a manager killed while writing them."""

import base64
import datetime

import pytest

from tispace import tenantpki
from vc_manager.manager import PKI_NAMES, TenantError, check_pki, cut_short
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


@pytest.mark.parametrize("written", range(1, len(PKI_NAMES)))
def test_a_first_write_cut_short_is_made_anew_but_never_a_served_tenants(
    secrets: dict[str, dict], written: int
) -> None:
    """The secrets are written one by one: a manager killed after `written` of them left those."""
    left = {n: secrets[n] for n in PKI_NAMES[:written]}
    assert sorted(cut_short(left, served=False)) == sorted(left)
    assert cut_short(left, served=True) == []  # a loss to restore: check_pki names what is missing
    assert _verdict(left).reason == "PKIIncomplete"


def test_no_secrets_or_a_whole_set_is_nothing_cut_short(secrets: dict[str, dict]) -> None:
    for served in (False, True):
        assert cut_short({}, served) == []
        assert cut_short(secrets, served) == []
        assert cut_short({tenantpki.ADMIN_KUBECONFIG: {}}, served) == []
