"""Where lrsearch keeps a study: storage URLs, study and attribute names, typed records.

Everything the pipeline writes and the report, export and CLI read goes through here: one
schema (:mod:`~lrsearch.store.names`, :mod:`~lrsearch.store.records`), one way to open a
storage (:func:`open_storage`) and to read a study back (:func:`load_stored`). It imports no
torch and nothing of the pipeline or the report.
"""

from __future__ import annotations

from lrsearch.store import names, records, storage, stored
from lrsearch.store.names import *  # noqa: F403  (re-exported: every stored name)
from lrsearch.store.records import *  # noqa: F403  (re-exported: every record type)
from lrsearch.store.storage import *  # noqa: F403  (re-exported: opening a storage)
from lrsearch.store.stored import *  # noqa: F403  (re-exported: the readers)

__all__ = [
    *names.__all__,
    *records.__all__,
    *storage.__all__,
    *stored.__all__,
]
