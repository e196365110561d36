"""The documentation in `docs/` stays in step with itself and with the code.

- every relative link (and `#anchor`) in `docs/*.md` and the README resolves;
- every `docs/<page>.md#anchor` cited in a source file (comments, scripts) names a page and a
  heading that exist;
- no source file still cites the old out-of-repo contract as "SPEC §N" (`scripts/respec.sh`
  rewrites those into links to `docs/`);
- the endpoint table of `docs/http-api.md` and the bridge's routes agree both ways, and the error
  codes the bridge can send are documented there;
- the Redis key names the broker writes are documented in `docs/redis.md`.

These read files only: no broker is started.
"""

import os
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

# Directories that hold no documentation or sources of ours.
SKIP_DIRS = {".git", "target", "node_modules", "__pycache__", ".tools", "results", "data"}
SOURCE_SUFFIXES = {".rs", ".py", ".sh", ".toml", ".js", ".html", ".css", ".md", ".yml", ".yaml"}

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
FENCE = re.compile(r"^\s*(```|~~~)")
CITED = re.compile(r"\bdocs/([A-Za-z0-9_\-/]+\.md)(?:#([A-Za-z0-9_\-]+))?")
METHOD_PATH = re.compile(r"`(GET|POST|PUT|DELETE|PATCH) (/[^`\s?]*)[^`]*`")
ROUTE_CALL = re.compile(r"\.route\(\s*\"([^\"]+)\"\s*,")
METHOD_CALL = re.compile(r"\b(get|post|put|delete|patch)\(")


def doc_pages():
    return sorted(DOCS.glob("*.md"))


def markdown_files():
    return doc_pages() + [ROOT / "README.md"]


def source_files():
    """Every file of ours that may cite docs: sources, scripts, configs, markdown outside docs/."""
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith("target")]
        for name in filenames:
            path = pathlib.Path(dirpath) / name
            if path.suffix in SOURCE_SUFFIXES:
                yield path


def strip_code(text):
    """The text with fenced code blocks and inline code spans blanked (links in code are not links)."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            out.append("")
            continue
        out.append("" if fenced else re.sub(r"`[^`]*`", "``", line))
    return "\n".join(out)


def slug(heading):
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path):
    """Every anchor a markdown file defines, duplicates numbered as GitHub does."""
    found, seen, fenced = set(), {}, False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        found.update(HTML_ANCHOR.findall(line))
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def rel(path):
    return path.relative_to(ROOT).as_posix()


def test_docs_exist():
    names = {p.name for p in doc_pages()}
    for page in ("README.md", "mqtt.md", "topics-and-payloads.md", "http-api.md", "redis.md",
                 "security.md", "configuration.md", "bench.md"):
        assert page in names, f"docs/{page} is missing"


@pytest.mark.parametrize("md", markdown_files(), ids=rel)
def test_relative_links_resolve(md):
    problems = []
    for target in LINK.findall(strip_code(md.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.\-]*:", target):  # http:, https:, mailto: ...
            continue
        path_part, _, anchor = target.partition("#")
        dest = md if not path_part else (md.parent / path_part).resolve()
        if not dest.exists():
            problems.append(f"{target}: no such file {dest}")
            continue
        if anchor:
            if dest.suffix != ".md":
                problems.append(f"{target}: an anchor into a file that is not markdown")
            elif anchor not in anchors(dest):
                problems.append(f"{target}: no heading with anchor #{anchor} in {rel(dest)}")
    assert not problems, f"broken links in {rel(md)}:\n" + "\n".join(problems)


def test_docs_links_cited_in_sources_exist():
    problems = []
    cache = {}
    for path in source_files():
        if path.is_relative_to(DOCS):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            for page, anchor in CITED.findall(line):
                dest = DOCS / page
                where = f"{rel(path)}:{lineno}: docs/{page}"
                if not dest.is_file():
                    problems.append(f"{where}: no such page")
                    continue
                if anchor:
                    if dest not in cache:
                        cache[dest] = anchors(dest)
                    if anchor not in cache[dest]:
                        problems.append(f"{where}#{anchor}: no such heading")
    assert not problems, "citations of docs/ that do not resolve:\n" + "\n".join(problems)


def test_no_spec_section_citations_left():
    """The contract lives in docs/ now; "SPEC §N" points to a file a clone does not have."""
    me = pathlib.Path(__file__).resolve()
    script = ROOT / "scripts" / "respec.sh"
    left = []
    for path in source_files():
        if path.resolve() in (me, script.resolve()):
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if "SPEC §" in line:
                left.append(f"{rel(path)}:{lineno}: {line.strip()}")
    assert not left, "run scripts/respec.sh to turn these into docs/ links:\n" + "\n".join(left)


def bridge_routes():
    """(METHOD, path) for every route the bridge's axum routers declare."""
    routes = set()
    for path in (ROOT / "bridge" / "src").rglob("*.rs"):
        text = path.read_text(encoding="utf-8")
        calls = list(ROUTE_CALL.finditer(text))
        for i, call in enumerate(calls):
            end = calls[i + 1].start() if i + 1 < len(calls) else len(text)
            handler = text[call.end():end]
            # The handler expression ends at the first `)` closing the `.route(` call; reading
            # up to the next `.route`/`.fallback`/`.layer` is enough for method chains.
            handler = re.split(r"\.(?:route|fallback|layer|with_state|nest|merge)\(", handler)[0]
            for method in METHOD_CALL.findall(handler):
                routes.add((method.upper(), call.group(1)))
    return routes


def test_http_api_endpoints_are_routed_and_routes_documented():
    routes = bridge_routes()
    assert ("GET", "/api/v1/vehicles") in routes, "could not read the bridge's route table"
    api = (DOCS / "http-api.md").read_text(encoding="utf-8")
    documented = set(METHOD_PATH.findall(api))
    missing = sorted(f"{m} {p}" for m, p in documented if (m, p) not in routes)
    assert not missing, "docs/http-api.md lists endpoints the bridge does not route:\n" + "\n".join(missing)
    all_docs = "\n".join(p.read_text(encoding="utf-8") for p in doc_pages())
    undocumented = sorted(f"{m} {p}" for m, p in routes if p not in all_docs)
    assert not undocumented, "routes no page of docs/ mentions:\n" + "\n".join(undocumented)


def test_bridge_error_codes_documented():
    api = (DOCS / "http-api.md").read_text(encoding="utf-8")
    codes = set()
    for path in (ROOT / "bridge" / "src").rglob("*.rs"):
        text = path.read_text(encoding="utf-8")
        codes.update(re.findall(r"ProtoError::new\(\s*\"([A-Z_]+)\"", text))
        codes.update(re.findall(r"StatusCode::[A-Z_]+,\s*\"([A-Z_]+)\"\)", text))
    assert {"BAD_JSON", "NOT_FOUND"} <= codes, "could not read the bridge's error codes"
    missing = sorted(c for c in codes if f"`{c}`" not in api)
    assert not missing, "error codes docs/http-api.md does not list: " + ", ".join(missing)


def test_redis_keys_documented():
    redis_doc = (DOCS / "redis.md").read_text(encoding="utf-8")
    sources = [ROOT / "broker" / "src" / "persist" / "keys.rs"]
    sources += sorted((ROOT / "broker" / "src" / "cluster").glob("*.rs"))
    lines = [l for p in sources for l in p.read_text(encoding="utf-8").splitlines()]
    code = "\n".join(l for l in lines if not l.lstrip().startswith("//"))
    names = set(re.findall(r"\"(fleetmq:[a-z]+)", code))
    assert {"fleetmq:vehicle", "fleetmq:geo", "fleetmq:sos", "fleetmq:node"} <= names, \
        "could not read keys.rs and cluster/"
    missing = sorted(n for n in names if n not in redis_doc)
    assert not missing, "Redis keys docs/redis.md does not describe: " + ", ".join(missing)
