"""The README documents what the code does: every error code, command and supported export."""

from __future__ import annotations

from pathlib import Path

from hub.cli import app
from hub.errors import CODES
from hub.export_schemas import _load, supported

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_error_code_is_in_the_readme_table() -> None:
    for code, (family, meaning, _) in CODES.items():
        assert f"| `{code}` | {family} | {meaning} |" in README, code


def test_every_command_is_documented() -> None:
    for command in app.registered_commands:
        assert f"`hub {command.name or command.callback.__name__}" in README


def test_every_supported_version_is_listed() -> None:
    for key in supported():
        schema = _load(key)
        assert schema.export_type in README and f"`{schema.data_version}`" in README, key


def test_quick_start() -> None:
    assert "make demo" in README and "make test" in README


def test_every_source_change_code_is_documented() -> None:
    from transforms import backfill
    from transforms.costs import MARKER_CODES, TAG_CODES, quality_codes

    for code in [c for c, _ in quality_codes()] + list(backfill.CODES) + [c for c, _ in MARKER_CODES] + list(TAG_CODES):
        assert f"`{code}`" in README, code


def test_fresh_clone_needs_nothing_outside_the_repository() -> None:
    """Tests and code read fixtures from tests/data/ (licences beside them), never from a folder beside the clone."""
    repo = Path(__file__).resolve().parents[1]
    for path in [*repo.glob("tests/*.py"), *repo.glob("hub/**/*.py"), *repo.glob("pipelines/**/*.py"),
                 *repo.glob("transforms/**/*.py"), *repo.glob("bench/*.py"), repo / "Makefile", repo / ".ci/run"]:
        text = path.read_text()
        assert "../" + "shared" not in text and "parents" + "[2]" not in text, path
    for folder in (repo / "tests/data").iterdir():
        if folder.is_dir():
            assert any(p.name.upper().startswith("LICENSE") for p in folder.iterdir()), folder


def test_no_module_uses_duckdbs_default_connection() -> None:
    """Review of stop 41: `hub allocate --preview` summed through `duckdb.sql`, the process's shared default connection
    (the machine's time zone, no memory or thread limits). Every module opens its own connection."""
    import ast

    found = []
    for folder in ("hub", "transforms", "pipelines"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                        and node.func.value.id == "duckdb" and node.func.attr in {"sql", "execute", "query", "query_df",
                                                                                   "read_csv", "read_parquet", "read_json",
                                                                                   "from_arrow", "table", "values"}):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found
