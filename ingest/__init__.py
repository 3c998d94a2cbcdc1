"""Ingestion: the producers (HTTP, generator, files), edge validation and dead letters.

Everything that enters the Lambda architecture enters here, through one idempotent
acks=all producer into the Kafka log; bad input is rejected with a reason or routed to
the dead-letter topic.
"""
