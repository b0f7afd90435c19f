"""Print the oldest release line of every base dependency pyproject.toml declares (``X>=A.B`` -> ``X==A.B.*``).

CI installs these into a separate environment and runs a smoke set there: every floor in
pyproject.toml is a promise that the oldest declared version runs the product.
"""

import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
for requirement in project["dependencies"]:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\]]+)\s*>=\s*([0-9.]+)\s*", requirement.split(";")[0])
    if not match:
        sys.exit(f"floor_requirements: cannot read a floor from {requirement!r}; declare it as NAME>=VERSION")
    print(f"{match[1]}=={match[2]}.*")
