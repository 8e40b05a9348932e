"""`python -m services.scene`: runs the scene service until SIGTERM."""

from services.scene.server import create_scene_server
from shared.server import run

if __name__ == "__main__":
    run("scene", create_scene_server)
