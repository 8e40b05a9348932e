"""`python -m services.monitor`: runs the monitor until SIGTERM."""

import sys

from services.monitor.alerts import ThresholdError, Thresholds
from services.monitor.server import create_monitor_server
from shared.config import ConfigError, Settings
from shared.server import run


def check_configuration() -> None:
    """Stops with a message naming the variable when the alert thresholds cannot be used."""
    try:
        Thresholds().updated(dict(Settings.from_env().monitor_thresholds))
    except ConfigError as error:
        sys.exit(f"monitor: configuration: {error}")
    except ThresholdError as error:
        sys.exit(f"monitor: configuration: DOPPEL_MONITOR_THRESHOLDS: {error}")


if __name__ == "__main__":
    check_configuration()
    run("monitor", create_monitor_server)
