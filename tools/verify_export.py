#!/usr/bin/env python3
"""Check a griddispatch audit export (JSONL) without the system: Python 3.8+ standard library.

    python3 verify_export.py EXPORT.jsonl [--expect-head PARTITION:POSITION:CHAIN ...]

Exit code 0 when everything checks, 1 when something does not (the first problem is named
with its line number), 2 when the file is not an export.

What is checked (algorithms: docs/auditing.md, identical to the system's code):

1. every event's ``hash`` is recomputed from its content::

       sha256(canonical({"prev": prev_hash, "case": case_id, "v": version,
                         "type": type, "at": at, "data": payload}))

   where canonical(x) = json.dumps(x, sort_keys=True, separators=(",", ":"),
   ensure_ascii=False, allow_nan=False) encoded as UTF-8;
2. per case, versions are consecutive and each ``prev_hash`` is the previous event's ``hash``
   (a "case" or "all" export must start every case at version 1; a filtered export may start
   later, it is then checked from its first event on);
3. the running chain: each sealed event's ``chain`` equals
   ``sha256(canonical({"prev": chain_prev, "partition": p, "position": n, "case": case_id,
   "v": version, "hash": hash}))``; consecutive exported events of a partition must link
   (``chain_prev`` = the previous line's ``chain``) in an "all" export, which must also start
   from the genesis value "" and end at the trailer's head;
4. the trailer's event count; and each ``--expect-head`` (a head you obtained independently,
   e.g. from ``gridctl audit verify`` earlier or from the NATS ``Grid-Log-Chain`` header) is
   present in the export.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

FORMAT = "griddispatch-audit-export/1"


def canonical(obj: object) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def event_hash(e: dict) -> str:
    return hashlib.sha256(canonical({
        "prev": e["prev_hash"], "case": e["case_id"], "v": e["version"],
        "type": e["type"], "at": e["at"], "data": e["payload"],
    })).hexdigest()


def chain_link(prev: str, e: dict) -> str:
    return hashlib.sha256(canonical({
        "prev": prev, "partition": e["partition"], "position": e["position"],
        "case": e["case_id"], "v": e["version"], "hash": e["hash"],
    })).hexdigest()


def verify(path: str, expect_heads: list[str]) -> tuple[bool, list[str], dict]:
    problems: list[str] = []
    header: dict = {}
    trailer: dict | None = None
    events = 0
    cases: dict[str, tuple[int, str]] = {}
    last_chain: dict[str, tuple[int, str]] = {}
    chains: dict[tuple[str, int], str] = {}
    unsealed = 0

    def fail(line_no: int, text: str) -> None:
        problems.append(f"line {line_no}: {text}")

    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                fail(line_no, f"not JSON ({exc})")
                continue
            kind = rec.get("kind")
            if line_no == 1:
                if kind != "header" or rec.get("format") != FORMAT:
                    return False, [f"line 1: not a {FORMAT} file"], {}
                header = rec
                continue
            if trailer is not None:
                fail(line_no, "content after the trailer")
                continue
            if kind == "trailer":
                trailer = rec
                continue
            if kind != "event":
                fail(line_no, f"unknown line kind {kind!r}")
                continue
            events += 1
            where = (f"partition {rec.get('partition')} position {rec.get('position')} "
                     f"case {rec.get('case_no') or rec.get('case_id')} "
                     f"version {rec.get('version')}")
            try:
                recomputed = event_hash(rec)
            except (KeyError, TypeError, ValueError) as exc:
                fail(line_no, f"{where}: malformed event ({exc})")
                continue
            if recomputed != rec["hash"]:
                fail(line_no, f"{where}: ALTERED — content does not match its hash")
            case_id, version = rec["case_id"], rec["version"]
            if case_id in cases:
                last_version, last_hash = cases[case_id]
                if version != last_version + 1:
                    fail(line_no, f"{where}: REMOVED or REORDERED — follows version "
                                  f"{last_version} of the case")
                elif rec["prev_hash"] != last_hash:
                    fail(line_no, f"{where}: prev_hash is not the previous event's hash")
            elif header.get("scope") in ("all", "case") and version != 1:
                fail(line_no, f"{where}: REMOVED — the case's first {version - 1} event(s) "
                              "are missing")
            elif version == 1 and rec["prev_hash"] != "":
                fail(line_no, f"{where}: first event must have prev_hash \"\"")
            cases[case_id] = (version, rec["hash"])
            partition, position = rec["partition"], rec["position"]
            if rec.get("chain") is None:
                unsealed += 1
                continue
            if chain_link(rec.get("chain_prev") or "", rec) != rec["chain"]:
                fail(line_no, f"{where}: running chain value does not follow from chain_prev")
            previous = last_chain.get(partition)
            if previous is not None and position <= previous[0]:
                fail(line_no, f"{where}: REORDERED — positions must increase")
            if header.get("scope") == "all":
                expected_prev = previous[1] if previous is not None else ""
                if rec.get("chain_prev") != expected_prev:
                    fail(line_no, f"{where}: REMOVED or INSERTED — chain_prev does not link "
                                  "to the previous event of the partition")
            last_chain[partition] = (position, rec["chain"])
            chains[(partition, position)] = rec["chain"]
    if trailer is None:
        problems.append("no trailer: the export is truncated")
    else:
        if trailer.get("events") != events:
            problems.append(f"trailer says {trailer.get('events')} events, file has {events}")
        if header.get("scope") == "all":
            for partition, head in (trailer.get("heads") or {}).items():
                got = last_chain.get(partition)
                if got is None or list(got) != [head.get("position"), head.get("chain")]:
                    problems.append(f"partition {partition}: last sealed event {got} is not the "
                                    f"trailer's head {head} (events cut off)")
    for spec in expect_heads:
        try:
            partition, position_text, chain = spec.split(":", 2)
            key = (partition, int(position_text))
        except ValueError:
            problems.append(f"bad --expect-head {spec!r} (PARTITION:POSITION:CHAIN)")
            continue
        if chains.get(key) != chain:
            problems.append(f"expected head {spec} not found in the export "
                            f"(export has {chains.get(key)!r} at that position)")
    summary = {"events": events, "cases": len(cases), "unsealed": unsealed,
               "scope": header.get("scope"), "heads": {p: {"position": v[0], "chain": v[1]}
                                                       for p, v in last_chain.items()}}
    return not problems, problems, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a griddispatch audit export (JSONL).")
    parser.add_argument("file")
    parser.add_argument("--expect-head", action="append", default=[],
                        metavar="PARTITION:POSITION:CHAIN")
    args = parser.parse_args(argv)
    try:
        ok, problems, summary = verify(args.file, args.expect_head)
    except OSError as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    if not summary:
        print(problems[0], file=sys.stderr)
        return 2
    print(f"{summary['events']} events of {summary['cases']} cases, scope "
          f"{summary['scope']}, {summary['unsealed']} unsealed")
    for partition, head in sorted(summary["heads"].items()):
        print(f"  head {partition}:{head['position']}:{head['chain']}")
    if ok:
        print("OK: every hash, case chain and running-chain link checks")
        return 0
    print(f"FAILED: {len(problems)} problem(s); first: {problems[0]}")
    for text in problems[1:10]:
        print(f"  {text}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
