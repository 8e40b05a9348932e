"""Bundled shows, settings and humour patterns."""
