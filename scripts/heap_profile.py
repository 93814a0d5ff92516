#!/usr/bin/env python3
"""What the operator's heap holds, by owner, from a heaptrack recording.

    heaptrack_print -f FILE --print-leaks 1 --merge-backtraces 0 -n 1000000 | scripts/heap_profile.py

`make bench-heap` records the idle benchmark's operator under heaptrack (Debian's `heaptrack`
package) and ends it with SIGKILL while idle, so that what heaptrack calls "leaked" is exactly
what the idle operator holds. Each allocation is charged to the first frame, from the
allocation up, that names an owner below; the table prints bytes and allocations per owner.
"""

import re
import sys

# (owner, pattern in a frame), most specific first: the first frame that matches any of them,
# walking from the allocation towards main, names the owner.
OWNERS = [
    ("event recorder", r"controller::events|kube_runtime::events"),
    ("controller queue (scheduler)", r"kube_runtime::scheduler"),
    ("object caches (reflector stores)", r"kube_runtime::reflector|kube_runtime::utils::OnComplete|"
                                         r"kube_runtime\.\.utils\.\.OnComplete"),
    ("controller runner (reconciliations in flight)", r"kube_runtime\.\.controller\.\.runner|"
                                                      r"kube_runtime::controller"),
    ("watches (kube client streams)", r"kube_runtime::watcher|kube_client::client::Client::request_events"),
    ("kube client (HTTP, TLS)", r"kube_client|hyper|rustls|tower"),
    ("AWS SDK (clients, credentials)", r"aws_sdk_|aws_config|aws_smithy|aws_credential"),
    ("metrics", r"prometheus|controller::metrics"),
    ("logs (tracing)", r"tracing"),
    ("grants (core and ledger)", r"aws_access_operator::(grant|controller::(grant|ledger))"),
    ("sync inventory and caches", r"aws_access_operator::(sync|controller::(connector|configmaps|session|runtime))"),
    ("operator, other", r"aws_access_operator::"),
    ("tokio runtime", r"tokio::"),
]

SIZE = re.compile(r"^([0-9.]+)([KMG]?) leaked over ([0-9]+) calls from")
UNIT = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}


def classify(frames):
    for frame in frames:
        for owner, pattern in OWNERS:
            if re.search(pattern, frame):
                return owner
    return "other (runtime, allocator)"


def main():
    totals, calls, blocks = {}, {}, []
    current = None
    for line in sys.stdin:
        found = SIZE.match(line.strip())
        if found:
            current = [float(found.group(1)) * UNIT[found.group(2)], int(found.group(3)), []]
            blocks.append(current)
        elif current is not None and line.startswith("  ") and not line.strip().startswith(("in ", "at ")):
            current[2].append(line.strip())
    for size, count, frames in blocks:
        owner = classify(frames)
        totals[owner] = totals.get(owner, 0) + size
        calls[owner] = calls.get(owner, 0) + count
    grand = sum(totals.values())
    print(f"{'owner':48} {'bytes':>10} {'allocations':>12}")
    for owner, size in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"{owner:48} {size / 1e6:9.2f}M {calls[owner]:12d}")
    print(f"{'total':48} {grand / 1e6:9.2f}M {sum(calls.values()):12d}")


if __name__ == "__main__":
    main()
