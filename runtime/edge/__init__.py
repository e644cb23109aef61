"""The edge server: HTTP, CloudEvents and WebSocket access to a runtime's subjects.

`create_app(rt_or_edge, EdgeConfig(...))` is the ASGI app; `EdgeServer(app)` serves it with the
graceful shutdown order; `subjects serve module:rt` does both from the command line.
"""

from .app import create_app
from .config import EdgeConfig, InsecureBinding, Token, load_tokens, new_secret
from .errors import EdgeError
from .schemas import Edge
from .server import EdgeServer

__all__ = [
    "Edge",
    "EdgeConfig",
    "EdgeError",
    "EdgeServer",
    "InsecureBinding",
    "Token",
    "create_app",
    "load_tokens",
    "new_secret",
]
