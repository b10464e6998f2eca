"""The HTTP API: `service.py` (state folder, submit, views, the dispatcher's thread) and `routes.py`
(FastAPI). Never import torch or Qt here."""
