"""Capture every scenario's full `kaisched simulate --output json` output as a golden file.

Run `python tests/scenarios/golden/capture.py` only when a decision is meant to change (say why in the
commit); tests/scenarios/test_golden.py fails whenever the output differs from these files.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "scenarios"))

from test_scenarios import CASE_FILES, load_case, run_cli, write_inputs  # noqa: E402

HERE = Path(__file__).parent


def output_of(path: Path) -> str:
    case = load_case(path)
    with tempfile.TemporaryDirectory() as tmp:
        rc, out = run_cli(write_inputs(case, Path(tmp)))
    try:
        parsed: object = json.loads(out)
    except json.JSONDecodeError:
        parsed = out  # a case whose input is rejected before simulating prints no JSON
    return json.dumps({"rc": rc, "output": parsed}, indent=1, sort_keys=True) + "\n"


def main() -> None:
    for path in CASE_FILES:
        (HERE / f"{path.stem}.json").write_text(output_of(path))
    print(f"captured {len(CASE_FILES)} golden outputs in {HERE}")


if __name__ == "__main__":
    main()
