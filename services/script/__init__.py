"""The script service."""
