"""Step 1 of the example pipeline: prepare samples."""

import random

import lamin_integrations as ln

ln.track(params={"seed": 42})
random.seed(42)
samples = [random.gauss(0, 1) for _ in range(100)]
print(f"prepared {len(samples)} samples")
ln.finish()
