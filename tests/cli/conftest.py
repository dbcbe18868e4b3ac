"""Shared data for the CLI tests: two colour classes of squares whose area is the measure."""

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_data")
    rng = np.random.default_rng(0)
    rows = []
    for cls, colour in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
        for i in range(24):
            side = int(rng.integers(8, 60))
            img = rng.integers(0, 60, (64, 64, 3)).astype(np.uint8)
            img[:side, :side] = colour
            Image.fromarray(img).save(d / f"{cls}{i}.png")
            rows.append(
                {
                    "path": f"{cls}{i}.png",
                    "class": cls,
                    "group": f"g{i % 6}",
                    "area": side * side / 64**2,
                    "flat": 1.0,
                }
            )
    pd.DataFrame(rows).to_csv(d / "data.csv", index=False)
    return f"csv:{d / 'data.csv'}"


@pytest.fixture
def runner():
    return CliRunner()
