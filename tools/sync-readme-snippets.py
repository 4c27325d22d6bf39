#!/usr/bin/env python3
"""Copies each sample region (`// README: NAME begin` .. `end`) into the README blocks that name it
(`<!-- README: NAME (PATH) -->` and the code fence after it), as ReadmeSnippetTests compares them."""
import re, sys, pathlib

root = pathlib.Path(__file__).resolve().parent.parent
block = re.compile(r"(<!-- README: (\S+) \(([^)]+)\) -->\n```\w+\n)(.*?)(\n```)", re.S)

def region(path, name):
    lines = (root / path).read_text().replace("\r\n", "\n").split("\n")
    b = next(i for i, l in enumerate(lines) if l.strip() == f"// README: {name} begin")
    e = next(i for i, l in enumerate(lines) if l.strip() == f"// README: {name} end")
    body = lines[b + 1:e]
    while body and not body[0].strip(): body.pop(0)
    while body and not body[-1].strip(): body.pop()
    indent = min(len(l) - len(l.lstrip()) for l in body if l.strip())
    return "\n".join("" if not l.strip() else l[indent:].rstrip() for l in body)

for doc in sys.argv[1:] or ["README.md", "docs/package-readme.md"]:
    p = root / doc
    text = p.read_text()
    new = block.sub(lambda m: m.group(1) + region(m.group(3), m.group(2)) + m.group(5), text)
    if new != text:
        p.write_text(new)
        print(f"{doc}: snippets copied again")
