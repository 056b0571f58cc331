"""`python -m demo` (what `make demo` runs): the main job on its embedded defaults, for real, on the CPU."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from demo.run import main

parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
parser.add_argument("--dir", type=Path, default=Path(".trainbot-demo"), help="where the demo keeps its files")
sys.exit(main(parser.parse_args().dir.absolute()))
