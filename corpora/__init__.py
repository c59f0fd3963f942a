"""The shared core: the data model and the file formats every package uses."""

from replaydiff.corpora.endpoints import endpoint_of, path_template
from replaydiff.corpora.errors import CorpusError, CorpusNotFound, CorpusTruncated, NotACorpus, UnsupportedFormat
from replaydiff.corpora.files import (
    CORPUS_FORMAT,
    RESULTS_FORMAT,
    UPSTREAM_FORMAT,
    CorpusReader,
    CorpusWriter,
    ResultsReader,
    ResultsWriter,
    UpstreamLogReader,
    UpstreamLogWriter,
)
from replaydiff.corpora.model import (
    DIVERGENCE_KINDS,
    HOP_BY_HOP,
    Attempt,
    Divergence,
    Exchange,
    Headers,
    ReplayRecord,
    Request,
    Response,
    UpstreamCall,
    header_value,
)

__all__ = [
    "CORPUS_FORMAT",
    "DIVERGENCE_KINDS",
    "HOP_BY_HOP",
    "RESULTS_FORMAT",
    "UPSTREAM_FORMAT",
    "Attempt",
    "CorpusError",
    "CorpusNotFound",
    "CorpusReader",
    "CorpusTruncated",
    "CorpusWriter",
    "Divergence",
    "Exchange",
    "Headers",
    "NotACorpus",
    "ReplayRecord",
    "Request",
    "Response",
    "ResultsReader",
    "ResultsWriter",
    "UnsupportedFormat",
    "UpstreamCall",
    "UpstreamLogReader",
    "UpstreamLogWriter",
    "endpoint_of",
    "header_value",
    "path_template",
]
