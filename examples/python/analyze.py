"""Step 2 of the example pipeline: analyse them."""

import statistics

import lamin_integrations as ln

ln.track(params={"method": "median"})
print(f"median = {statistics.median([0.1, 0.4, 0.9]):.2f}")
ln.finish()
