"""Snakemake adapter: the `lamin` logger plugin (`snakemake --logger lamin`).

This package module stays empty of imports: `parent.py` is loaded as a built-in plugin by
every tracked script, and must not pull in Snakemake or its plugin interface.
"""
