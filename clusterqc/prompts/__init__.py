"""Shipped prompt templates; `seed.txt` is the original luvdatacomp prompt, verbatim."""
