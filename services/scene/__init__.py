"""The scene service."""
