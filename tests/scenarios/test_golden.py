"""The full `simulate --output json` of every scenario equals its golden file (decisions, reasons and
messages), so a refactor that changes any decision fails here. Regenerate with golden/capture.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "golden"))
sys.path.insert(0, str(Path(__file__).parent))

from capture import HERE, output_of
from test_scenarios import CASE_FILES


def test_every_case_has_a_golden_file() -> None:
    missing = [p.stem for p in CASE_FILES if not (HERE / f"{p.stem}.json").exists()]
    assert not missing, f"no golden output for {missing}; run tests/scenarios/golden/capture.py"


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_output_matches_golden(path: Path) -> None:
    golden = HERE / f"{path.stem}.json"
    if not golden.exists():
        pytest.skip("no golden file (reported by test_every_case_has_a_golden_file)")
    assert output_of(path) == golden.read_text()
