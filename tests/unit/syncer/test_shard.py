"""Consistent hashing of tenants over syncer replicas, and the Lease names it uses."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from syncer.engine import shard
from tispace import leases

TENANTS = [f"team-{i}/dev-{i % 7}" for i in range(600)]
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def assignment(members: list[str]) -> dict[str, str | None]:
    return {t: shard.owner(t, members) for t in TENANTS}


def test_every_tenant_has_one_owner_and_the_split_is_even() -> None:
    members = ["a", "b", "c"]
    owners = assignment(members)
    counts = {m: sum(1 for o in owners.values() if o == m) for m in members}
    assert sum(counts.values()) == len(TENANTS)
    assert all(150 <= n <= 250 for n in counts.values()), counts


def test_the_owner_does_not_depend_on_member_order() -> None:
    assert assignment(["a", "b", "c"]) == assignment(["c", "a", "b"])


def test_a_member_leaving_moves_only_its_own_tenants() -> None:
    before = assignment(["a", "b", "c"])
    after = assignment(["a", "c"])
    moved = {t for t in TENANTS if before[t] != after[t]}
    assert moved == {t for t in TENANTS if before[t] == "b"}
    assert all(after[t] in ("a", "c") for t in moved)


def test_a_member_joining_takes_tenants_only_for_itself() -> None:
    before = assignment(["a", "b"])
    after = assignment(["a", "b", "c"])
    moved = {t for t in TENANTS if before[t] != after[t]}
    assert moved and all(after[t] == "c" for t in moved)


def test_no_members_means_no_owner() -> None:
    assert shard.owner("team/dev", []) is None


@given(st.text(min_size=1, max_size=300))
def test_lease_names_are_valid_and_identities_are_dns_labels(text: str) -> None:
    ident = leases.dns_label(text)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", ident) and len(ident) <= 63
    name = shard.tenant_lease_name(text)
    assert DNS_SUBDOMAIN.match(name) and len(name) <= 253


def test_tenant_lease_names_differ_where_sanitising_would_merge_them() -> None:
    assert shard.tenant_lease_name("a/b-c") != shard.tenant_lease_name("a-b/c")


def test_a_lease_names_its_holder_and_whole_seconds() -> None:
    obj = leases.lease(
        "tenant-x", "replica-1", 6.4, {shard.LABEL_ROLE: "tenant"}, {shard.ANN_TENANT: "team/dev"}
    )
    assert obj["metadata"]["labels"][shard.LABEL_ROLE] == "tenant"
    assert obj["metadata"]["annotations"][shard.ANN_TENANT] == "team/dev"
    assert obj["spec"]["holderIdentity"] == "replica-1" and obj["spec"]["leaseDurationSeconds"] == 6
