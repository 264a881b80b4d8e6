#!/bin/bash -ue
multiqc .
