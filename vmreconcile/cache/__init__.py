"""What plan may remember between runs: decoded live files and checked configuration parts.

Every entry is keyed by what it was made from (a file's identity and timestamps, a piece of
YAML's bytes) and is used only when that key still matches; anything that does not match, or
a cache that fails any check, is read again as if there were no cache. Deleting the cache
directory at any time is safe. ``store.py``: the root-only directory and its files;
``livestate.py``: tables and maildirs; the configuration's parts are ``desired/incremental.py``'s.
docs/plan-apply.md ("The plan cache") says why each key is sound.
"""
