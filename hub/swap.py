"""All-or-nothing replacement of a destination folder's Parquet files.

A run writes every part to ``config/staging/<key>/`` first (invisible to lake readers). The swap then makes
the new files visible and the previous run's files disappear:

* local folder without sub-folders: one ``renameat2(RENAME_EXCHANGE)`` swaps the staging folder and the
  destination folder, so readers see the old run or the new run, never both and never a mix;
* otherwise (blob stores, nested scope folders): old files are deleted, then new files moved in, so rows
  are never counted twice; the swap is recorded first and a crash mid-way is rolled forward on restart.

``swap`` is idempotent: calling it again after a crash at any point finishes the same swap.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import posixpath
import shutil

from hub.faults import checkpoint
from hub.store import Store, utf8

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
MARKER_PREFIX = ".hub-swap-"


def _exchange(a: str, b: str) -> bool:
    """Atomically exchange two local paths; False where the OS or filesystem cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def commit_staged(store: Store, key: str, staging: str, destination: str, names: list[str]) -> list[str]:
    """Swap a run's staged files into ``destination`` (marker first, so a crash mid-way is finished later)."""
    store.check_fence()
    token = hashlib.sha1(key.encode()).hexdigest()
    if store.exists(staging):
        place_marker(store, staging, token)
    return swap(store, staging, destination, names, token)


def place_marker(store: Store, staging: str, token: str) -> None:
    """Mark a staging folder so a restarted swap can tell whether the exchange already happened."""
    if store.is_local:  # empty: created whole, without a temporary file a kill could leave to be swapped into the lake
        path = store.full(f"{staging}/{MARKER_PREFIX}{token}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "ab"):
            pass


def swap(store: Store, staging: str, destination: str, new_files: list[str], token: str) -> list[str]:
    """Make ``new_files`` (names staged in ``staging``) the only Parquet files in ``destination``.

    Returns the relative paths of the previous run's files that were removed.
    """
    marker = f"{MARKER_PREFIX}{token}"
    new = set(new_files)
    old = [p for p in store.parquet_files(destination) if posixpath.basename(p) not in new]
    if store.is_local and _swap_local(store, staging, destination, marker):
        return old  # the previous files went away with the staging folder
    for path in old:  # old first: a reader may briefly see fewer rows, never the same rows twice
        store.delete(path)
    checkpoint("mid-swap")
    for name in new_files:
        if store.exists(f"{staging}/{name}"):
            store.move(f"{staging}/{name}", f"{destination}/{name}")
    store.delete_tree(staging)
    return old


def _swap_local(store: Store, staging: str, destination: str, marker: str) -> bool:
    dest, stage = store.full(destination), store.full(staging)
    if os.path.exists(os.path.join(dest, marker)):  # exchanged before a crash: finish the clean-up
        _finish(store, staging, os.path.join(dest, marker))
        return True
    if not os.path.exists(os.path.join(stage, marker)):
        return False
    if os.path.isdir(dest) and any(e.is_dir() for e in os.scandir(dest)):
        os.remove(os.path.join(stage, marker))  # nested scope folders must stay: use the file-by-file path
        return False
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if os.path.isdir(dest):
        for entry in os.scandir(dest):  # other files of the folder (a custom-data manifest; a name that is not UTF-8,
            # never read, which the next ingestion moves out of the lake) stay in place
            if (entry.is_file() and (not entry.name.endswith(".parquet") or not utf8(entry.name))
                    and not os.path.exists(os.path.join(stage, entry.name))):
                shutil.copy2(entry.path, os.path.join(stage, entry.name))
        if not _exchange(stage, dest):
            os.remove(os.path.join(stage, marker))
            return False
    else:
        os.rename(stage, dest)
    checkpoint("mid-swap")
    _finish(store, staging, os.path.join(dest, marker))
    return True


def _finish(store: Store, staging: str, marker_path: str) -> None:
    # The staging folder now holds the previous run: remove it before the marker, so a crash in between
    # still finds the marker and never mistakes the old files for staged ones.
    store.delete_tree(staging)
    os.remove(marker_path)
