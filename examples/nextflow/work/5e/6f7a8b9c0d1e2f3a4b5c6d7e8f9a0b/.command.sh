#!/bin/bash -ue
bwa mem -t 8 ref.fa reads.fastq > out.bam
