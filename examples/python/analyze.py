"""Step 2 of the example pipeline: load the samples (an input of this run) and save a summary."""

from pathlib import Path

import lamin_integrations as ln

ln.track(params={"method": "median"})
samples = ln.Artifact.get(key="example/samples.csv").load()  # load() links it as this run's input
summary = samples["value"].describe().to_frame("value").reset_index()
out = Path("work/summary.csv")
summary.to_csv(out, index=False)
ln.Artifact(out, key="example/summary.csv", description="summary statistics").save()
print(f"median = {samples['value'].median():.3f}")
ln.finish()
