"""Intake's rules, without I/O: names, VCF headers, nucleotide-sequence files."""
