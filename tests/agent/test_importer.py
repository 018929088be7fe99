"""orchard-agent import-csv: recorded rows into the board's store; a bad file changes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent import exit_codes
from agent.importer import ImportError_, read_samples
from agent.store import open_store
from agent.store.options import StoreSettings

BIN = Path(sys.executable).parent


def test_rows_without_ts_are_stamped_step_apart_ending_before_now(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("temp_c,co2_ppm,label\n21.5,400,empty\n22,900,occupied\n22.5,950,\n")
    samples = read_samples(path, step_s=60.0, clock=lambda: 10_000.0)
    assert [s.ts for s in samples] == [9_820.0, 9_880.0, 9_940.0]
    assert samples[1].values == {"temp_c": 22.0, "co2_ppm": 900.0}
    assert [s.label for s in samples] == ["empty", "occupied", None]


def test_a_ts_column_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("ts,temp_c\n1700000000,21\n1700000060.5,22\n")
    assert [s.ts for s in read_samples(path)] == [1_700_000_000.0, 1_700_000_060.5]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (
            "temp_c\n21\nwarm\n",
            "line 3: expected temp_c to be a finite number. Received: temp_c='warm'",
        ),
        ("temp_c,co2_ppm\n21,400\n22\n", "line 3: expected 2 cells. Received: 1"),
        ("temp_c\nnan\n", "line 2: expected temp_c to be a finite number. Received: temp_c='nan'"),
        (
            "ts,temp_c\nyesterday,21\n",
            "expected ts to be a finite number. Received: ts='yesterday'",
        ),
        ("label\nempty\n", "expected at least one feature column"),
        ("", "expected a CSV with a header row"),
    ],
)
def test_a_bad_file_is_refused_naming_line_column_and_value(
    tmp_path: Path, content: str, words: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ImportError_) as info:
        read_samples(path)
    assert words in str(info.value)


def test_the_command_writes_the_store_and_a_bad_file_changes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'device_id = "pi-1"\nstate_dir = "{tmp_path}"\n[sensors.room]\ndriver = "system"\n'
    )
    good = tmp_path / "good.csv"
    good.write_text("temp_c,label\n21,empty\n22,occupied\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("temp_c\n23\noops\n")
    agent = str(BIN / "orchard-agent")

    ok = subprocess.run(
        [agent, "import-csv", str(good), "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "imported 2 rows" in ok.stdout
    refused = subprocess.run(
        [agent, "import-csv", str(bad), "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == exit_codes.DATA_ERROR
    assert "line 3: expected temp_c to be a finite number" in refused.stderr

    store = open_store(StoreSettings(path=tmp_path / "store.db"))
    try:
        assert store.stats().rows == 2  # the bad file wrote nothing
    finally:
        store.close()
