"""docs/notify.md documents every setting of hearing back and every column of the import."""

from __future__ import annotations

from pathlib import Path

from veille.notify.settings import NotifySettings

DOC = (Path(__file__).parents[2] / "docs" / "notify.md").read_text(encoding="utf-8")


def test_every_setting_is_documented() -> None:
    missing = [f"VEILLE_NOTIFY_{name.upper()}" for name in NotifySettings.model_fields
               if f"`VEILLE_NOTIFY_{name.upper()}`" not in DOC]
    assert not missing


def test_the_import_columns_are_documented() -> None:
    from veille.producers.files import CSV_COLUMNS

    assert all(f"`{c}`" in DOC for c in CSV_COLUMNS if c.startswith("notify_"))
