"""Step 1 of the example pipeline: prepare samples and register them as an artifact."""

import random
from pathlib import Path

import pandas as pd

import lamin_integrations as ln

ln.track(params={"seed": 42, "n": 100})
random.seed(42)
samples = pd.DataFrame({"sample": [f"s{i}" for i in range(100)], "value": [random.gauss(0, 1) for _ in range(100)]})
out = Path("work/samples.csv")
out.parent.mkdir(exist_ok=True)
samples.to_csv(out, index=False)
ln.Artifact(out, key="example/samples.csv", description="prepared samples").save()
print(f"prepared {len(samples)} samples")
ln.finish()
