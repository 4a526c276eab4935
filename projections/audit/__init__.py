"""Auditing (审计): the read side that reads the event store itself, read-only.

The adapters are thin: ``gateways/http/audit.py`` (the auditor API and page) and
``gateways/cli_audit.py`` (``gridctl audit``); the relay (``gateways/relay.py``) seals the
running log chain with :class:`.chain.ChainSealer`. Stored rows come through ``core.eventlog``.

* :mod:`.rows` — stored rows decoded without eventsourcing (fast, exact canonical values);
* :mod:`.history` — case histories, state at a time / version, diffs, activity;
* :mod:`.search` — finding cases (number, reporter, grid, day) with the queue as index;
* :mod:`.chain` — the running log chain over each partition (algorithm documented there),
  sealed by the relay into ``log_chain``;
* :mod:`.verify` — both chains recomputed over the store, first problem located;
* :mod:`.export` — JSONL / CSV exports (checked offline by ``tools/verify_export.py``);
* :mod:`.pool` — the API's small read-only connection pool (one per runtime);
* :mod:`.replay` — read models rebuilt in a scratch schema and compared (``replay --check``).

See docs/auditing.md.
"""
