"""The Engine: the one object the CLI, the REST service and the tests build to use faceindex.

`core` holds its construction, store lifecycle, collections, ingest and maintenance; `search` its reads that
compare faces. Import from here: `from faceindex.engine import Engine`.
"""

from faceindex.engine.core import Engine
from faceindex.engine.search import ComparedFace, ImageSource, VerifyResult

__all__ = ["ComparedFace", "Engine", "ImageSource", "VerifyResult"]
