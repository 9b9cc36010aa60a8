#!/usr/bin/env python3
"""docs/design.md cannot drift from include/tandem/op_list.h: every op of the
X-macro lists must appear in the "Op coverage" table, and the table's
elementwise rows must not name ops that the lists do not have.

  test_docs_ops.py SOURCE_DIR
"""
import re
import sys

src = sys.argv[1]
with open(f"{src}/include/tandem/op_list.h") as f:
    op_list = re.sub(r"//[^\n]*", "", f.read())  # the header's comments show X(...) too
# X(function_name, EnumName) entries of every list.
ops = re.findall(r"\bX\((\w+),\s*\w+\)", op_list)
assert len(ops) >= 20, f"parsed only {ops} from op_list.h"

with open(f"{src}/docs/design.md") as f:
    design = f.read()
m = re.search(r"^## Op coverage\n(.*?)(?=^## )", design, re.S | re.M)
assert m, "docs/design.md has no '## Op coverage' section"
rows = [r for r in m.group(1).splitlines() if r.startswith("|") and not r.startswith("|---")]
# family | ops | dtypes | CPU | CUDA
table = {}
for r in rows[1:]:
    cells = [c.strip() for c in r.strip("|").split("|")]
    # The op names: not what follows "->" (the result type) or sits in parentheses.
    names = re.sub(r"\([^)]*\)", " ", cells[1].split("->")[0])
    table[cells[0]] = set(re.findall(r"[a-z_0-9]+", names))
named = set().union(*table.values())
missing = [op for op in ops if op not in named]
assert not missing, f"ops of op_list.h missing from design.md's op table: {missing}"

# The rows that come from the lists name only listed ops.
listed = set(ops)
for family in ("unary", "compare", "reduce"):
    assert family in table, f"no '{family}' row in the op table"
    extra = {w for w in table[family] if w not in listed and not w.isdigit()}
    extra -= {"var"}  # the reduce row also names var, a composed op
    assert not extra, f"the '{family}' row names ops op_list.h does not have: {sorted(extra)}"
print(f"docs_ops: {len(ops)} ops of op_list.h in design.md's table")
