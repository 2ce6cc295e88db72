"""edge-router: an edge router for AWS Lambda function URLs and a local ASGI server.

The data plane (`edge_router._proxy`) is a lean ASGI pipeline; the control plane
(`edge_router._control`, FastAPI) is imported only when a control endpoint is first hit.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
