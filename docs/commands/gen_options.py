#!/usr/bin/env python3
"""Regenerates the option lists of docs/commands/*.md from the binary's --help.

A page holds a generated list between the lines
    <!-- generated from `modelfs CMD --help` -->
    <!-- end of generated list -->
and this script replaces what is between them with the "Options:" block of `modelfs CMD --help`
(the format of tools/options.cc FormatOptionTable) as a Markdown list. tests/tools/docs_test.cc
fails when a page and the help disagree; run this to fix the generated part:

    python3 docs/commands/gen_options.py BUILD/bin/modelfs
"""
import os
import re
import subprocess
import sys

START = re.compile(r"<!-- generated from `modelfs ([a-z.]+) --help` -->\n")
END = "<!-- end of generated list -->"


def options_markdown(help_text):
    """The FormatOptionTable entries ("  FLAGS\n      help [default: X; env: Y]") as a list."""
    block = help_text.split("Options:\n", 1)[1]
    out = []
    lines = block.split("\n")
    i = 0
    while i < len(lines):
        head = lines[i]
        if not head.startswith("  ") or head.startswith("      ") or not head.strip():
            if out and not head.strip():
                break  # the blank line after the last entry
            i += 1
            continue
        desc = lines[i + 1].strip() if i + 1 < len(lines) else ""
        i += 2
        extra = []
        m = re.search(r" \[([^\]]*)\]$", desc)
        if m:
            desc = desc[: m.start()]
            for part in m.group(1).split("; "):
                key, _, value = part.partition(": ")
                if key == "default" and value:
                    extra.append("Default: `%s`." % value)
                elif key == "env":
                    extra.append("Environment: `%s`." % value)
        names = ", ".join("`%s`" % n for n in head.strip().split(", "))
        out.append("- %s: %s%s" % (names, desc, "".join(" " + e for e in extra)))
    return "\n".join(out) + "\n"


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "modelfs"
    here = os.path.dirname(os.path.abspath(__file__))
    for name in sorted(os.listdir(here)):
        if not name.endswith(".md"):
            continue
        path = os.path.join(here, name)
        text = open(path, encoding="utf-8").read()
        m = START.search(text)
        if not m:
            continue
        end = text.index(END, m.end())
        help_text = subprocess.run([binary, m.group(1), "--help"], check=True,
                                   capture_output=True, text=True).stdout
        new = text[: m.end()] + options_markdown(help_text) + text[end:]
        if new != text:
            open(path, "w", encoding="utf-8").write(new)
            print("updated", name)


if __name__ == "__main__":
    main()
