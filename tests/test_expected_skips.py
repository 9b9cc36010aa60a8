#!/usr/bin/env python3
"""ctest expected_skips: the one list of expected skips (tests/expected_skips.h)
and the places that skip agree.

  test_expected_skips.py SOURCE_DIR

- every entry names a WHEN of tt::SkipWhen (tests/test_skip.h) and a reason;
- every entry but the NoCuda wildcard names a test that exists and whose body
  has a TANDEM_SKIP_IF for that WHEN; every TANDEM_SKIP_IF has such an entry
  (NoCuda sites, in tests or fixtures, are covered by the wildcard);
- nothing skips another way: GTEST_SKIP only inside test_skip.h's macro, no
  ctest SKIP_RETURN_CODE / SKIP_REGULAR_EXPRESSION, no `exit 77` in a test
  script;
- the GPU check's report (tools/gpu/steps.py) allows exactly the CudaPresent
  entries.
At run time the macro itself fails a skip that the list does not hold.
"""
import os
import re
import sys

ENTRY = re.compile(r'^TANDEM_EXPECTED_SKIP\("([^"]+)", *(\w+), *"([^"]+)"\)\s*$')
TEST_DEF = re.compile(r'^(?:TEST|TEST_F|TEST_P|TYPED_TEST)\((\w+),\s*(\w+)\)')
SKIP_SITE = re.compile(r'TANDEM_SKIP_IF\(\s*(\w+)\s*,')


def glob_re(pattern):
    return re.compile("^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$")


def parse_list(path):
    entries, errors = [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.startswith("TANDEM_EXPECTED_SKIP("):
                m = ENTRY.match(line)
                if not m:
                    errors.append(f"{path}:{n}: not one TANDEM_EXPECTED_SKIP(\"test\", WHEN, \"reason\") a line")
                else:
                    entries.append((m.group(1), m.group(2), m.group(3), n))
    return entries, errors


def skip_whens(test_skip_h):
    text = open(test_skip_h).read()
    body = re.search(r"enum class SkipWhen \{(.*?)\};", text, re.S).group(1)
    return set(re.findall(r"^\s*(\w+),", body, re.M))


def source_files(tests_dir):
    for root, _, files in os.walk(tests_dir):
        for name in sorted(files):
            if name.endswith((".cpp", ".h")):
                yield os.path.join(root, name)


def skip_sites(path):
    """(WHEN, 'Suite.Name' or None outside a test body, line) for each TANDEM_SKIP_IF
    (its arguments may run over several lines)."""
    lines = open(path, errors="replace").read().split("\n")
    owner, current = [], None  # the test each line belongs to
    for line in lines:
        m = TEST_DEF.match(line)
        if m:
            current = f"{m.group(1)}.{m.group(2)}"
        elif line.startswith("}"):
            current = None  # a function at namespace scope ends here
        owner.append(current)
    text = "\n".join(lines)
    sites = []
    for m in SKIP_SITE.finditer(text):
        n = text.count("\n", 0, m.start())
        when = m.group(1)
        if "#define" not in lines[n] and when != "WHEN":
            sites.append((when, owner[n], n + 1))
    return sites


def test_names(path):
    return {f"{m.group(1)}.{m.group(2)}" for m in
            (TEST_DEF.match(line) for line in open(path, errors="replace")) if m}


def matches(pattern, test):
    """A list pattern against a test as the sources name it (Suite.Name); a
    parameterised test's full name adds a prefix and a suffix."""
    rx = glob_re(pattern)
    return any(rx.match(name) for name in (test, f"Prefix/{test}/param"))


def main():
    root = sys.argv[1]
    tests_dir = os.path.join(root, "tests")
    list_path = os.path.join(tests_dir, "expected_skips.h")
    errors = []
    entries, errs = parse_list(list_path)
    errors += errs
    whens = skip_whens(os.path.join(tests_dir, "test_skip.h"))
    for pattern, when, reason, n in entries:
        if when not in whens:
            errors.append(f"expected_skips.h:{n}: {when} is not a tt::SkipWhen ({sorted(whens)})")
        if len(reason) < 10:
            errors.append(f"expected_skips.h:{n}: give a reason")
    if not any(p == "*" and w == "NoCuda" for p, w, _, _ in entries):
        errors.append("expected_skips.h has no (\"*\", NoCuda) entry for the CUDA tests")

    sites, names = [], set()
    for path in source_files(tests_dir):
        rel = os.path.relpath(path, root)
        text = open(path, errors="replace").read()
        if "GTEST_SKIP" in text and os.path.basename(path) != "test_skip.h":
            errors.append(f"{rel}: GTEST_SKIP outside tests/test_skip.h (use TANDEM_SKIP_IF)")
        names |= test_names(path)
        sites += [(when, test, f"{rel}:{n}") for when, test, n in skip_sites(path)]

    for when, test, where in sites:
        if when not in whens:
            errors.append(f"{where}: TANDEM_SKIP_IF({when}, ...): not a tt::SkipWhen")
        elif when == "NoCuda":
            continue  # the wildcard entry
        elif test is None:
            errors.append(f"{where}: a {when} skip outside a test body (only NoCuda may skip in a fixture)")
        elif not any(w == when and matches(p, test) for p, w, _, _ in entries):
            errors.append(f"{where}: {test} skips for {when} but tests/expected_skips.h has no entry")
    for pattern, when, _, n in entries:
        if pattern == "*":
            continue
        tests = [t for t in names if matches(pattern, t)]
        if not tests:
            errors.append(f"expected_skips.h:{n}: no test is named {pattern}")
        elif not any(w == when and t in tests for w, t, _ in sites):
            errors.append(f"expected_skips.h:{n}: {pattern} has no TANDEM_SKIP_IF({when}, ...)")

    # No other skip mechanism: ctest skip codes, shell exit 77.
    for dirpath, _, files in os.walk(root):
        if any(part in ("build", ".git") for part in os.path.relpath(dirpath, root).split(os.sep)):
            continue
        for name in files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if name == "CMakeLists.txt" or name.endswith(".cmake"):
                if re.search(r"SKIP_RETURN_CODE|SKIP_REGULAR_EXPRESSION", open(path).read()):
                    errors.append(f"{rel}: a ctest skip property (list the skip instead, or register "
                                  "the test only where it applies)")
            elif name.endswith(".sh") and rel.startswith("tests"):
                if re.search(r"^\s*exit 77\b", open(path).read(), re.M):
                    errors.append(f"{rel}: exit 77 (a ctest skip)")

    # The GPU report's allowed skips are the CudaPresent entries.
    sys.path.insert(0, os.path.join(root, "tools", "gpu"))
    import steps
    regex = steps.expected_gpu_skips(list_path)
    allowed = re.compile(regex) if regex else None
    for pattern, when, _, n in entries:
        if pattern == "*":
            continue
        for t in [t for t in names if matches(pattern, t)]:
            ok = bool(allowed and allowed.search(t))
            if ok != (when == "CudaPresent"):
                errors.append(f"tools/gpu/steps.py's allowed skips ({regex!r}) "
                              f"{'allow' if ok else 'do not allow'} {t} ({when})")
    if allowed and allowed.search("SomeSuite.SomeOtherTest"):
        errors.append(f"tools/gpu/steps.py allows every skip ({regex!r})")
    if not regex and any(w == "CudaPresent" for _, w, _, _ in entries):
        errors.append("tools/gpu/steps.py allows no skip, though the list has CudaPresent entries")

    for e in errors:
        print("FAIL:", e)
    print(f"expected_skips: {len(entries)} entries, {len(sites)} TANDEM_SKIP_IF sites, "
          f"{len(names)} tests: {'FAIL' if errors else 'PASS'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
