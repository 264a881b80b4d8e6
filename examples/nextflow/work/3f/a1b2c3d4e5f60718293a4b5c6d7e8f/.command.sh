#!/bin/bash -ue
fastqc --threads 2 *.fastq > *_fastqc.txt
