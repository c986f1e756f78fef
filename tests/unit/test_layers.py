"""The programs depend on the shared core and never on each other; the core on none of them."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = {"vc_manager", "syncer", "vn_agent"}
# The CLI is the one composition point that may start any program.
ALLOWED = {("tispace", "cli.py"): PROGRAMS}


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(PROGRAMS | {"tispace"}))
def test_layering(package: str) -> None:
    forbidden = PROGRAMS - {package}
    for path in (ROOT / package).rglob("*.py"):
        allowed = ALLOWED.get((package, path.name), set())
        bad = (imports(path) & forbidden) - allowed
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
