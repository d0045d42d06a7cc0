"""The encrypted index: its on-disk format, its build from records, its verified download,
and the epoch key it is built under.
"""

from __future__ import annotations

from psi_core.index.build import (
    Executor,
    build_index,
    dask_cluster,
    dask_local,
    encrypt_shard,
    iter_index_keys,
    process_pool,
    shard_keys,
)
from psi_core.index.download import (
    PARTIAL_SUFFIX,
    IndexDownload,
)
from psi_core.index.encrypted import (
    INDEX_FILE,
    EncryptedIndex,
    IndexManifest,
    read_manifest,
    write_index,
)
from psi_core.index.epoch import (
    EpochKey,
    create_epoch,
    load_epoch,
)

__all__ = [
    "INDEX_FILE",
    "PARTIAL_SUFFIX",
    "EncryptedIndex",
    "EpochKey",
    "Executor",
    "IndexDownload",
    "IndexManifest",
    "build_index",
    "create_epoch",
    "dask_cluster",
    "dask_local",
    "encrypt_shard",
    "iter_index_keys",
    "load_epoch",
    "process_pool",
    "read_manifest",
    "shard_keys",
    "write_index",
]
