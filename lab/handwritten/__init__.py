"""The same view written twice by hand, once per layer: the lab's "two codebases".

``pageviews_speed.py`` (plain Python, how a speed layer would apply it) and
``pageviews_batch.py`` (Spark, how a batch job would compute it) implement
``pageviews_by_url_hourly`` independently of the one definition in
``examples/pageviews/views``. They read in parallel on purpose; ``lab.drift`` compares
what they compute over the same ingest range. See docs/lab/02-two-codebases.md.
"""
