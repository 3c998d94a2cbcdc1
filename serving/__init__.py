"""The serving layer: exact merged answers (batch view @ cut ⊕ realtime since cut), SQL,
metrics and a dashboard, in one FastAPI app made by ``serving.app.create_app``.

Nothing is imported here, so that ``lambdalab`` commands stay quick to start.
"""
