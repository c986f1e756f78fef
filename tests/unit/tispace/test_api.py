from pathlib import Path

import yaml

from tispace import api, rbac

CONFIG = Path(__file__).resolve().parents[3] / "config" / "crd"


def test_committed_crds_match_the_code() -> None:
    for name, crd in api.crds().items():
        assert (CONFIG / name).read_text() == api.dump(crd), (
            "regenerate with `python -m tispace.api config/crd`"
        )


def test_virtualcluster_columns_and_status() -> None:
    crd = api.crds()["virtualclusters.yaml"]
    version = crd["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]][:3] == ["Phase", "Version", "Owner"]
    assert version["subresources"] == {"status": {}}
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == [p.value for p in api.Phase]


def test_samples_use_only_fields_the_schema_knows() -> None:
    samples = Path(__file__).resolve().parents[3] / "config" / "samples"
    schemas = {"VirtualCluster": api.VIRTUALCLUSTER_SPEC, "ClusterVersion": api.CLUSTERVERSION_SPEC}
    for f in samples.glob("*.yaml"):
        doc = yaml.safe_load(f.read_text())
        spec_schema = schemas[doc["kind"]]
        assert set(doc["spec"]) <= set(spec_schema["properties"]), f
        assert set(spec_schema.get("required", [])) <= set(doc["spec"]), f


def test_committed_rbac_matches_the_code() -> None:
    rbac_dir = CONFIG.parent / "rbac"
    expected = rbac.files()
    assert sorted(p.name for p in rbac_dir.glob("*.yaml")) == sorted(expected)
    for name, text in expected.items():
        assert (rbac_dir / name).read_text() == text, "regenerate with `python -m tispace.rbac config/rbac`"


def test_every_program_has_its_own_service_account_and_no_wildcards() -> None:
    objs = rbac.all_objects()
    accounts = {o["metadata"]["name"] for o in objs if o["kind"] == "ServiceAccount"}
    assert accounts == {p.name for p in rbac.PROGRAMS}
    for o in objs:
        for r in o.get("rules", []):
            assert "*" not in r["verbs"] and "*" not in r["resources"] and "*" not in r["apiGroups"]
