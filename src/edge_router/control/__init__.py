"""The control plane (FastAPI): health, discovery, config and admin endpoints, over the small
`ControlHost` protocol of what it needs (`common.py`), one `APIRouter` module per concern
(`app.py` lists them); imported only when a control path is first requested, and never by the
data plane."""
