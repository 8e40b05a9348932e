"""`python -m services.script`: runs the script service until SIGTERM."""

from services.script.server import create_script_server
from shared.server import run

if __name__ == "__main__":
    run("script", create_script_server)
