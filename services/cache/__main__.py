"""`python -m services.cache`: runs the cache service until SIGTERM."""

from services.cache.server import create_cache_server
from shared.server import run

if __name__ == "__main__":
    run("cache", create_cache_server)
