"""`python -m services.monitor`: runs the monitor until SIGTERM."""

from services.monitor.server import create_monitor_server
from shared.server import run

if __name__ == "__main__":
    run("monitor", create_monitor_server)
