"""Ingestion: the producers (HTTP, generator, files) and validation at the edge."""

from lambdalab.exports import lazy

__all__, __getattr__ = lazy(
    __name__,
    {
        "EventProducer": "ingest.producer",
        "check": "ingest.validation",
        "parse_body": "ingest.validation",
        "GeneratorConfig": "ingest.generator",
        "generate": "ingest.generator",
        "ingest_file": "ingest.files",
    },
)
