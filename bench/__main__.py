"""`make bench`: run every bench/bench_*.py module's ``main()`` in turn and print its side-by-side table.

Benchmarks are never timed tests in the suite; each prints ratios against its anchor (stock KubeSpawner,
ldapauthenticator, stock idle-culler, bare JSON decode).
"""

import importlib
import pkgutil
import sys
from pathlib import Path

here = Path(__file__).parent
sys.path.insert(0, str(here.parent))
selected = sys.argv[1:]
for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda i: i.name):
    if not info.name.startswith("bench_"):
        continue
    if selected and info.name not in selected and info.name.removeprefix("bench_") not in selected:
        continue
    print(f"\n=== {info.name} ===", flush=True)
    importlib.import_module(f"bench.{info.name}").main()
