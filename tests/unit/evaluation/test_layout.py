"""The layout check itself: it must catch a cycle, an oversized module and an import against the layers, and
the real package must pass it (so the shape of `pipeline/` cannot drift unnoticed)."""

from __future__ import annotations

from pathlib import Path

from pipeline.evaluation import layout


def make_package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "pipeline"
    for name, text in {"__init__.py": "", **files}.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


def test_the_real_package_has_no_cycle_no_oversized_module_and_respects_the_layers() -> None:
    report = layout.check()
    assert report.ok, report


def test_a_cycle_is_found_even_through_a_function_level_import(tmp_path: Path) -> None:
    pkg = make_package(
        tmp_path,
        {
            "ingest/__init__.py": "",
            "ingest/feeds.py": "from pipeline.ingest import poller\n",
            "ingest/poller.py": "def f():\n    from pipeline.ingest.feeds import parse\n",
        },
    )
    assert layout.check(pkg).cycles == [["pipeline.ingest.feeds", "pipeline.ingest.poller"]]


def test_an_oversized_module_and_an_upward_import_are_reported(tmp_path: Path) -> None:
    pkg = make_package(
        tmp_path,
        {
            "models.py": "from pipeline.cli import commands\n",  # the bottom layer reaching for the top
            "cli/__init__.py": "",
            "cli/commands.py": "x = 1\n" * (layout.MAX_LINES + 1),
            "mystery.py": "",
        },
    )
    report = layout.check(pkg)
    assert report.too_long == [("pipeline.cli.commands", layout.MAX_LINES + 1)]
    assert report.against_layers == [("pipeline.models", "pipeline.cli.commands")]
    assert report.unranked == ["pipeline.mystery"] and not report.ok
