from pathlib import Path

import pytest
import yaml

from tispace import kubeconfig, pki


def test_round_trip(tmp_path: Path) -> None:
    ca = pki.new_ca("ca")
    user = pki.issue(ca, "admin", client=True)
    path = kubeconfig.write(
        tmp_path / "k",
        kubeconfig.build(name="t", server="https://127.0.0.1:1/", ca_pem=ca.cert_pem, user=user),
    )
    assert path.stat().st_mode & 0o777 == 0o600
    creds = kubeconfig.load(path)
    assert creds == kubeconfig.Credentials(
        server="https://127.0.0.1:1", ca_pem=ca.cert_pem, cert_pem=user.cert_pem, key_pem=user.key_pem
    )


def test_file_references_resolve_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_bytes(b"CA")
    cfg = {
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://h", "certificate-authority": "ca.crt"}}],
        "users": [{"name": "u", "user": {"token": "tok"}}],
    }
    (tmp_path / "kc").write_text(yaml.safe_dump(cfg))
    creds = kubeconfig.load(tmp_path / "kc")
    assert (creds.ca_pem, creds.token, creds.cert_pem) == (b"CA", "tok", b"")


def test_missing_context_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no current context"):
        kubeconfig.credentials({"current-context": "x", "contexts": []})


def test_a_token_user_round_trips(tmp_path: Path) -> None:
    ca = pki.new_ca("ca")
    path = kubeconfig.write(
        tmp_path / "k", kubeconfig.build(name="t", server="https://h:1", ca_pem=ca.cert_pem, user="tok")
    )
    creds = kubeconfig.load(path)
    assert (creds.token, creds.cert_pem, creds.ca_pem) == ("tok", b"", ca.cert_pem)


def test_a_token_file_is_read_afresh_each_time(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("first\n")
    cfg = {
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://h"}}],
        "users": [{"name": "u", "user": {"tokenFile": "token"}}],
    }
    (tmp_path / "kc").write_text(yaml.safe_dump(cfg))
    creds = kubeconfig.load(tmp_path / "kc")
    assert creds.bearer() == "first"
    (tmp_path / "token").write_text("rotated")
    assert creds.bearer() == "rotated"
