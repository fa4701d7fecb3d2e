"""Browser tests reuse the server tests' helpers (tests/server/server_fixtures.py)."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))                      # the real ``server`` package (see tests/server/conftest.py)
sys.path.insert(0, str(ROOT / "tests" / "server"))
