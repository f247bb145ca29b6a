"""Typed queries over the lake, answered cache-first with provenance.

Imports neither ``dash`` nor ``auth``; nothing here runs at import time.
"""
