"""The programs' command lines reach their settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from syncer import main as syncer_main
from syncer.settings import Settings
from tispacectl.cli import app


@pytest.mark.parametrize(("flag", "signs"), [((), True), (("--no-sign-tokens",), False)])
def test_the_syncer_signs_pod_tokens_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flag: tuple[str, ...], signs: bool
) -> None:
    got: list[Settings] = []

    def run(settings: Settings, **kw: Any) -> None:
        got.append(settings)

    monkeypatch.setattr(syncer_main, "main", run)
    config = tmp_path / "super.kubeconfig"
    result = CliRunner().invoke(app, ["syncer", f"--super-kubeconfig={config}", *flag])
    assert result.exit_code == 0, result.output
    [settings] = got
    assert settings.options.sign_tokens is signs and settings.super_kubeconfig == config.resolve()
