from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.errors import ConfigError
from agent.store import StoreSettings


def test_defaults_are_unbounded(tmp_path: Path) -> None:
    opts = StoreSettings(path=tmp_path / "s.db")
    assert (opts.max_rows, opts.max_age_s, opts.max_bytes) == (None, None, None)
    assert opts.synchronous == "NORMAL"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_rows", 0),
        ("max_rows", -5),
        ("max_rows", True),
        ("max_rows", 1.5),
        ("max_age_s", 0),
        ("max_age_s", float("nan")),
        ("max_age_s", "1h"),
        ("max_bytes", 1024),
        ("synchronous", "OFF"),
        ("retention_interval_s", -1),
        ("busy_timeout_s", float("inf")),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, key: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        StoreSettings(path=tmp_path / "s.db", **{key: value})
    assert info.value.key == f"store.{key}"
    assert f"{key}={value!r}" in str(info.value)


def test_from_mapping_converts_path_and_refuses_unknown_keys(tmp_path: Path) -> None:
    opts = StoreSettings.from_mapping({"path": str(tmp_path / "s.db"), "max_rows": 10})
    assert opts.path == tmp_path / "s.db"
    assert opts.max_rows == 10
    with pytest.raises(ConfigError) as info:
        StoreSettings.from_mapping({"path": "x.db", "max_row": 10})
    assert info.value.key == "store.max_row"
    with pytest.raises(ConfigError) as info:
        StoreSettings.from_mapping({"max_rows": 10})
    assert info.value.key == "store.path"


def test_from_mapping_names_every_wrong_key_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        StoreSettings.from_mapping(
            {"max_rows": 0, "max_age_s": "1h", "synchronous": "OFF", "max_byts": 1, "pth": "x"}
        )
    text = str(info.value)
    assert [line.split(":")[0] for line in text.splitlines()] == [
        "store.max_byts",
        "store.pth",
        "store.path",
        "store.max_rows",
        "store.max_age_s",
        "store.synchronous",
    ]
    assert "did you mean 'max_bytes'" in text and "did you mean 'path'" in text
    assert "Received: max_rows=0" in text and "Received: synchronous='OFF'" in text
