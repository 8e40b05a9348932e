"""What every Doppelganger Studio service uses: configuration, telemetry, server bootstrap, CLI."""

__version__ = "0.1.0"
