"""GC content of one sample, run by Snakemake's `script:` directive.

`ln.track()` here makes this script's run a child of its Snakemake job's run.
"""

import lamin_integrations as ln

ln.track()
with open(snakemake.input[0]) as fasta:  # noqa: F821
    sequence = "".join(line.strip() for line in fasta if not line.startswith(">"))
gc = sum(base in "GC" for base in sequence) / max(len(sequence), 1)
with open(snakemake.output[0], "w") as out:  # noqa: F821
    out.write(f"{snakemake.wildcards.sample}\t{gc:.3f}\n")  # noqa: F821
ln.finish()
