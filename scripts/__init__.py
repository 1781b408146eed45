"""Experiment, figure and demo scripts (not installed): run as ``python scripts/NAME.py`` from anywhere.

A package so that scripts and tests import each other's helpers as ``scripts.NAME`` (each script puts the
repository root on ``sys.path`` first); nothing under the product packages imports from here.
"""
