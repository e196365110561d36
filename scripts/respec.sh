#!/usr/bin/env bash
# Rewrites citations of the old, out-of-repo contract ("SPEC §N", "SPEC §N.M", and further "§N"
# on the same line, as in "SPEC §2, §3, §9") into links to the pages of docs/:
#   in source files:   SPEC §8      ->  docs/redis.md
#   in markdown files: SPEC §8      ->  [Redis](docs/redis.md)   (path relative to the file)
#
#   bash scripts/respec.sh            # rewrite in place, print what changed
#   bash scripts/respec.sh --check    # change nothing; exit 1 if anything is left to rewrite
#
# A rewritten comment line (`//`, `///`, `//!`, `#`, or a Python docstring line) that ends up over
# 100 columns is re-wrapped together with the rest of its paragraph; code lines are left long.
#
# Idempotent: a rewritten line no longer contains "SPEC §", so a second run changes nothing, and a
# tree where some references are already rewritten (e.g. after merging branches) is fine. Section
# numbers it does not know are left as they are and reported (exit 1). "§" that belongs to another
# document ("MQTT 5 §3.1.2") is never touched: only lines that cite SPEC are rewritten, and only
# the part from "SPEC §" on. tests/python/test_docs.py fails while any "SPEC §" is left, and checks
# that every docs/ link this writes resolves.
set -euo pipefail
cd "$(dirname "$0")/.."

exec python3 - "$@" <<'PY'
import os
import pathlib
import re
import subprocess
import sys

# Section of the old contract -> (page in docs/, anchor, title for markdown link text).
SECTIONS = {
    "1": ("configuration.md", "commands", "Commands"),
    "2": ("configuration.md", "settings", "Settings"),
    "3": ("mqtt.md", "", "MQTT"),
    "4": ("topics-and-payloads.md", "location-updates", "Location updates"),
    "5": ("pipeline.md", "", "Processing pipeline"),
    "5.1": ("pipeline.md", "validate", "Validate"),
    "5.2": ("pipeline.md", "de-duplicate", "De-duplicate"),
    "5.3": ("pipeline.md", "jitter-filter", "Jitter filter"),
    "5.4": ("pipeline.md", "smooth", "Smooth"),
    "5.5": ("pipeline.md", "match-the-route", "Match the route"),
    "5.6": ("pipeline.md", "events", "Events"),
    "6": ("topics-and-payloads.md", "outputs", "Outputs"),
    "7": ("http-api.md", "", "HTTP API"),
    "8": ("redis.md", "", "Redis"),
    "9": ("security.md", "", "Security"),
    "10": ("bench.md", "", "Bench"),
    "11": ("roadmap.md", "cluster", "Cluster"),
    "12": ("ingest-http.md", "", "Ingest over HTTP"),
    "13": ("gtfs-realtime.md", "", "GTFS-Realtime"),
    "14": ("history.md", "", "History"),
    "15": ("bench.md", "workloads", "Workloads"),
}

# Where a file's subject has a more precise home than the section's page: (file, section) -> target.
PRECISE = {
    ("broker/src/cli/failure.rs", "2"): ("configuration.md", "exit-codes", "Exit codes"),
    ("broker/src/limits.rs", "9"): ("security.md", "abuse-limits", "Abuse limits"),
    ("tests/python/test_security_limits.py", "9"): ("security.md", "abuse-limits", "Abuse limits"),
    ("tests/tests/limits_storm.rs", "9"): ("security.md", "abuse-limits", "Abuse limits"),
    ("tests/python/test_limits.py", "9"): ("security.md", "abuse-limits", "Abuse limits"),
    ("tests/python/test_limits.py", "3"): ("mqtt.md", "limits", "Limits"),
    ("broker/src/auth/permissions.rs", "9"): ("security.md", "roles", "Roles"),
    ("broker/src/auth/role.rs", "9"): ("security.md", "roles", "Roles"),
    ("broker/src/auth/identity.rs", "9"): ("security.md", "roles", "Roles"),
    ("broker/src/http.rs", "9"): ("security.md", "roles", "Roles"),
    ("tests/python/test_security_acl.py", "9"): ("security.md", "roles", "Roles"),
    ("tests/python/test_acl.py", "9"): ("security.md", "acl-file", "ACL file"),
    ("broker/src/auth/acl.rs", "9"): ("security.md", "acl-file", "ACL file"),
    ("broker/src/auth/authenticator.rs", "9"): ("security.md", "authentication", "Authentication"),
    ("broker/src/connection/mod.rs", "9"): ("security.md", "authentication", "Authentication"),
    ("tests/python/test_security_tls.py", "9"): ("security.md", "tls", "TLS"),
    ("bridge/src/auth.rs", "9"): ("http-api.md", "authentication", "Authentication"),
    ("bridge/src/port.rs", "9"): ("http-api.md", "authentication", "Authentication"),
    ("bridge/tests/auth.rs", "9"): ("http-api.md", "authentication", "Authentication"),
    ("broker/src/persist/keys.rs", "8"): ("redis.md", "keys", "Keys"),
    ("broker/src/persist/writer.rs", "8"): ("redis.md", "write-behind", "Write-behind"),
    ("bridge/src/app.rs", "7"): ("http-api.md", "endpoints", "Endpoints"),
    ("bridge/src/rest.rs", "7"): ("http-api.md", "rest", "REST"),
    ("bridge/src/error.rs", "7"): ("http-api.md", "errors", "Errors"),
    ("bridge/src/ws.rs", "7"): ("http-api.md", "websocket-protocol", "WebSocket protocol"),
    ("bridge/src/protocol.rs", "7"): ("http-api.md", "websocket-protocol", "WebSocket protocol"),
    ("bridge/src/client.rs", "7"): ("http-api.md", "messages", "Messages"),
    ("bridge/src/session.rs", "7"): ("http-api.md", "requests", "Requests"),
    ("bridge/src/hub.rs", "7"): ("http-api.md", "connection-limits", "Connection limits"),
    ("tests/python/test_bridge_e2e.py", "7"): ("http-api.md", "connection-limits", "Connection limits"),
    ("tests/python/test_listeners.py", "3"): ("mqtt.md", "versions-and-listeners", "Versions and listeners"),
    ("tests/python/test_listeners.py", "7"): ("http-api.md", "endpoints", "Endpoints"),
    ("tests/python/test_connect.py", "3"): ("mqtt.md", "connecting", "Connecting"),
    ("tests/python/test_session.py", "3"): ("mqtt.md", "sessions-and-queues", "Sessions and queues"),
    ("tests/python/test_v5_properties.py", "3"): ("mqtt.md", "feature-list", "Feature list"),
    ("tests/tests/keepalive_session.rs", "3"): ("mqtt.md", "keep-alive", "Keep-alive"),
    ("tests/tests/slow_consumer.rs", "3"): ("mqtt.md", "sessions-and-queues", "Sessions and queues"),
    ("tests/tests/malformed.rs", "3"): ("mqtt.md", "reason-codes", "Reason codes"),
    ("broker/src/ingest/topics.rs", "4"): ("topics-and-payloads.md", "", "Topics and payloads"),
    ("bridge/src/fleet.rs", "6"): ("topics-and-payloads.md", "processed-state", "Processed state"),
}

SUFFIXES = {".rs", ".py", ".sh", ".toml", ".js", ".html", ".css", ".md", ".yml", ".yaml", ".txt"}
SKIP = {"scripts/respec.sh", "tests/python/test_docs.py"}
# The section, and the word after it: "SPEC §9 limits" -> "docs/security.md#abuse-limits" drops
# a word the anchor already says.
FIRST = re.compile(r"SPEC §(\d+(?:\.\d+)?)( [A-Za-z]+)?")
# A further section on a cited line; "MQTT 5 §3.3" and the like belong to another document.
FURTHER = re.compile(r"(?<!MQTT 5 )(?<!MQTT 5\.0 )(?<!MQTT 3\.1\.1 )§(\d+(?:\.\d+)?)( [A-Za-z]+)?")


def files():
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], check=True,
                             capture_output=True, text=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        out = [str(p) for p in pathlib.Path(".").rglob("*") if p.is_file()]
    for name in sorted(set(out)):
        p = pathlib.PurePosixPath(name)
        if (p.suffix in SUFFIXES and name not in SKIP and p.parts[0] != "docs"
                and not p.parts[0].startswith("target") and os.path.isfile(name)):
            yield name


def target(path, section):
    key = PRECISE.get((path, section)) or SECTIONS.get(section)
    if key is None and "." in section:  # §9.1 -> §9's page
        key = PRECISE.get((path, section.split(".")[0])) or SECTIONS.get(section.split(".")[0])
    return key


def link(path, section):
    key = target(path, section)
    if key is None:
        return None
    page, anchor, title = key
    ref = page + ("#" + anchor if anchor else "")
    if path.endswith(".md"):
        rel = os.path.relpath(os.path.join("docs", ref.split("#")[0]), os.path.dirname(path) or ".")
        return f"[{title}]({rel}{'#' + anchor if anchor else ''})"
    return "docs/" + ref


def rewrite_line(path, line, unknown):
    def one(m):
        new = link(path, m.group(1))
        if new is None:
            unknown.append(m.group(0))
            return m.group(0)
        after = m.group(2) or ""
        anchor = new.rstrip(")").rpartition("#")[2] if "#" in new else ""
        if after and anchor and after.strip().lower() == anchor.split("-")[-1]:
            after = ""
        return new + after

    start = line.find("SPEC §")
    if start < 0:
        return line
    head, tail = line[:start], line[start:]
    tail = FIRST.sub(one, tail)
    tail = FURTHER.sub(one, tail)
    return head + tail


WIDTH = 100
LIST_ITEM = re.compile(r"^([-*] |\d+\. )")


def docstring_lines(lines):
    """Indices of the lines of a Python file that lie in a triple-quoted string."""
    inside, found = False, set()
    for i, line in enumerate(lines):
        quotes = line.count('"""')
        if inside or quotes:
            found.add(i)
        if quotes % 2:
            inside = not inside
    return found


def split_prefix(path, line, in_docstring):
    """(prefix, content) of a comment or docstring line, or None for a code line."""
    markers = r"//[/!]?" if path.endswith(".rs") else r"#"
    m = re.match(r"^(\s*(?:" + markers + r")\s?)(\S.*)$", line)
    if m:
        return m.group(1), m.group(2)
    if in_docstring:
        m = re.match(r"^(\s*)(\S.*)$", line)
        if m:
            return m.group(1), m.group(2)
    return None


def words(text):
    """Words to wrap (a line break inside a `code span` reads as a space, so spans may break)."""
    return [w for w in text.split(" ") if w]


def reflow(path, old_lines, lines):
    """Re-wraps each rewritten comment/docstring line over WIDTH with the rest of its paragraph."""
    docs = docstring_lines(lines) if path.endswith(".py") else set()
    i = len(lines) - 1
    while i >= 0:
        line = lines[i]
        parts = None
        if line != old_lines[i] and len(line) > WIDTH:
            parts = split_prefix(path, line, i in docs)
        if parts is None:
            i -= 1
            continue
        prefix, content = parts
        marker = LIST_ITEM.match(content)
        first = prefix + (marker.group(1) if marker else "")
        cont = prefix + (" " * len(marker.group(1)) if marker else "")
        body = [content[len(marker.group(1)):] if marker else content]
        j = i + 1
        while j < len(lines) and lines[j].startswith(cont) and len(lines[j]) > len(cont):
            rest = lines[j][len(cont):]
            if (rest[0].isspace() or LIST_ITEM.match(rest) or rest.startswith(("#", "```", "|", ">"))
                    or rest.strip() == '"""' or (docs and (j in docs) != (i in docs))):
                break
            body.append(rest)
            j += 1
        out, cur, empty = [], first, True
        for w in words(" ".join(body)):
            if empty:
                cur, empty = cur + w, False
            elif len(cur) + 1 + len(w) <= WIDTH:
                cur += " " + w
            else:
                out.append(cur)
                cur = cont + w
        out.append(cur)
        lines[i:j] = out
        old_lines[i:j] = [None] * len(out)  # now different from the old text: not reflowed twice
        i -= 1
    return lines


def main(argv):
    check = "--check" in argv
    changed, unknown_all, left = [], [], 0
    for path in files():
        try:
            text = open(path, encoding="utf-8").read()
        except UnicodeDecodeError:
            continue
        if "SPEC §" not in text:
            continue
        lines = text.split("\n")
        unknown = []
        new_lines = [rewrite_line(path, l, unknown) if "SPEC §" in l else l for l in lines]
        n = sum(1 for a, b in zip(lines, new_lines) if a != b)
        if n:
            new_lines = reflow(path, lines, new_lines)
        left += n
        unknown_all += [f"{path}: {u}" for u in unknown]
        if n:
            changed.append(f"{path}: {n} line(s)")
            if not check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write("\n".join(new_lines))
    verb = "would rewrite" if check else "rewrote"
    for c in changed:
        print(f"respec: {verb} {c}")
    for u in unknown_all:
        print(f"respec: unknown section, left as is: {u}", file=sys.stderr)
    if not changed:
        print("respec: nothing to rewrite")
    if unknown_all or (check and left):
        return 1
    return 0


sys.exit(main(sys.argv[1:]))
PY
