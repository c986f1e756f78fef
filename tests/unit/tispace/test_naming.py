import pytest
from hypothesis import given
from hypothesis import strategies as st

from tispace import naming
from tispace.naming import RootNamespace, TenantNamespace

label = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
short = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?\Z")


def test_a_virtualclusters_root_is_named_by_its_namespace_name_and_uid() -> None:
    vc = {"metadata": {"namespace": "team", "name": "dev", "uid": "0b5e-uid"}}
    assert naming.vc_root(vc) == naming.root_namespace("team", "dev", "0b5e-uid")


def test_root_namespace_shape() -> None:
    root = naming.root_namespace("team", "dev", "0b5e-uid")
    ns, digest, name = root.split("-", 2)
    assert (ns, name) == ("team", "dev")
    assert len(digest) == 6 and int(digest, 16) >= 0
    assert naming.is_dns1123_label(root)


def test_recreated_vc_gets_a_new_root() -> None:
    assert naming.root_namespace("team", "dev", "uid-1") != naming.root_namespace("team", "dev", "uid-2")


def test_root_too_long_is_refused_with_advice() -> None:
    with pytest.raises(naming.InvalidName, match="at most 55 characters"):
        naming.root_namespace("n" * 30, "v" * 30, "uid")


@given(short, short, st.uuids())
def test_root_is_always_a_valid_label(ns: str, name: str, uid: object) -> None:
    assert naming.is_dns1123_label(naming.root_namespace(ns, name, str(uid)))


def test_super_namespace_short_form() -> None:
    assert (
        naming.super_namespace(RootNamespace("a-123456-b"), TenantNamespace("default"))
        == "a-123456-b-default"
    )


def test_super_namespace_hashed_form() -> None:
    root = RootNamespace("team-abcdef-" + "x" * 30)
    got = naming.super_namespace(root, TenantNamespace("y" * 40))
    assert len(got) == 63
    assert naming.is_dns1123_label(got)
    assert got.startswith(root)


@given(short, label)
def test_super_namespace_is_a_valid_label(root: str, ns: str) -> None:
    got = naming.super_namespace(RootNamespace(root), TenantNamespace(ns))
    assert naming.is_dns1123_label(got)
    assert got == naming.super_namespace(RootNamespace(root), TenantNamespace(ns))  # stable


@given(st.tuples(short, label), st.tuples(short, label))
def test_super_namespace_is_injective(a: tuple[str, str], b: tuple[str, str]) -> None:
    """Different (root, namespace) pairs never share a super namespace when roots are real roots."""
    ra = naming.root_namespace("ns", a[0], "uid-" + a[0])
    rb = naming.root_namespace("ns", b[0], "uid-" + b[0])
    if (ra, a[1]) != (rb, b[1]):
        assert naming.super_namespace(ra, TenantNamespace(a[1])) != naming.super_namespace(
            rb, TenantNamespace(b[1])
        )


def test_long_names_sharing_a_prefix_stay_distinct() -> None:
    root = RootNamespace("team-abcdef-dev")
    a = naming.super_namespace(root, TenantNamespace("p" * 60 + "a"))
    b = naming.super_namespace(root, TenantNamespace("p" * 60 + "b"))
    assert a != b


def _tenant_pod() -> dict:
    return {"metadata": {"name": "web-0", "namespace": "default", "uid": "u1"}}


def test_owner_annotations_and_reverse_lookup() -> None:
    root = RootNamespace("team-abcdef-dev")
    ann = naming.owner_annotations(root=root, vc_name="dev", vc_namespace="team", tenant_obj=_tenant_pod())
    super_obj = {"metadata": {"labels": {naming.MANAGED_BY: "tispace"}, "annotations": ann}}
    assert naming.tenant_key(super_obj) == (root, "default", "web-0")
    assert ann[naming.ANN_UID] == "u1"
    assert ann[naming.ANN_VC_NAME] == "dev" and ann[naming.ANN_VC_NAMESPACE] == "team"


@pytest.mark.parametrize(
    "meta",
    [
        {},
        {
            "labels": {naming.MANAGED_BY: "someone-else"},
            "annotations": {naming.ANN_CLUSTER: "r", naming.ANN_UID: "u"},
        },
        {"labels": {naming.MANAGED_BY: "tispace"}, "annotations": {naming.ANN_CLUSTER: "r"}},
        {
            "labels": {naming.MANAGED_BY: "tispace"},
            "annotations": {naming.ANN_UID: "u", naming.ANN_NAME: "n"},
        },
    ],
)
def test_objects_without_every_mark_are_not_ours(meta: dict) -> None:
    assert naming.tenant_key({"metadata": meta}) is None


def test_filter_meta() -> None:
    values = {"app": "web", "secret.corp/x": "1", "secret.corp/ok": "2", "tenancy.x-k8s.io/uid": "forged"}
    got = naming.filter_meta(values, opaque=("secret.corp/",), transparent=("secret.corp/ok",))
    assert got == {"app": "web", "secret.corp/ok": "2"}
    assert naming.filter_meta(None, opaque=()) == {}
