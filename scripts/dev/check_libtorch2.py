#!/usr/bin/env python3
"""Compile-checks every libtorch translation unit against libtorch 2.x headers (optional developer
script; never run by the build or the tests).

This machine has Debian 12's libtorch 1.13; users also build against 2.x (a PyTorch wheel, a
libtorch zip). Debian 13 (trixie) ships libtorch 2.6: this script downloads its libtorch-dev and
libgloo-dev packages with apt into a cache folder (a private sources list; nothing is installed),
unpacks them, and runs each libtorch compile command of build/compile_commands.json with
-fsyntax-only against the 2.6 headers instead of /usr/include's 1.13 ones (the precompiled header
replaced by src/omni/torch_pch.h). It prints the files that fail, with their first errors.

Not covered: linking (the 2.6 libraries are not used), the CUDA / NCCL branches (Debian's 2.6 is
a CPU build), versions other than 2.6.

Usage (after a configure of build/):
  python3 scripts/dev/check_libtorch2.py [--cache DIR] [-j N] [--only PATH_PART]
"""
import argparse
import concurrent.futures
import json
import os
import pathlib
import shlex
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SUITE = "trixie"
PACKAGES = ["libtorch-dev", "libgloo-dev"]


def fetch_headers(cache: pathlib.Path) -> pathlib.Path:
    root = cache / "root"
    if (root / "usr/include/torch/csrc/api/include/torch/version.h").is_file():
        return root
    for d in ("lists/partial", "cache/archives/partial", "debs", "root"):
        (cache / d).mkdir(parents=True, exist_ok=True)
    sources = cache / "sources.list"
    sources.write_text(f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                       f"http://deb.debian.org/debian {SUITE} main\n")
    opts = [f"-o=Dir::Etc::SourceList={sources}", "-o=Dir::Etc::SourceParts=/dev/null",
            f"-o=Dir::State::Lists={cache / 'lists'}", f"-o=Dir::Cache={cache / 'cache'}",
            "-o=APT::Get::List-Cleanup=0"]
    subprocess.run(["apt-get", *opts, "update"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", *opts, "download", *PACKAGES], check=True, cwd=cache / "debs")
    for deb in sorted((cache / "debs").glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def rewrite(command: str, include: pathlib.Path) -> list:
    """The compile command against the 2.x headers, syntax only."""
    args, out, skip = shlex.split(command), [], False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a == "-o":
            skip = True
            continue
        if a == "-include" and args[i + 1].endswith("cmake_pch.hxx"):
            out += ["-include", str(ROOT / "src/omni/torch_pch.h")]
            skip = True
            continue
        if a in ("-c", "-Winvalid-pch") or a.startswith("-O"):
            continue
        if a == "/usr/include/torch/csrc/api/include":
            a = str(include / "torch/csrc/api/include")
        out.append(a)
    # the 2.x tree before the system's /usr/include (where 1.13's headers are)
    return out[:1] + ["-isystem", str(include), "-O0", "-fsyntax-only"] + out[1:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/tmp/omni_libtorch2", help="where the packages are kept")
    ap.add_argument("--build", default=str(ROOT / "build"), help="a configured build folder")
    ap.add_argument("-j", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--only", default="", help="check only the files whose path contains this")
    a = ap.parse_args()
    db = pathlib.Path(a.build) / "compile_commands.json"
    if not db.is_file():
        print(f"error: {db}: no such file (configure the build first)", file=sys.stderr)
        return 2
    include = fetch_headers(pathlib.Path(a.cache)) / "usr/include"
    version = [l.split()[-1] for l in (include / "torch/csrc/api/include/torch/version.h").read_text().splitlines()
               if l.startswith("#define TORCH_VERSION_M")]
    print(f"libtorch {'.'.join(version)} headers from Debian {SUITE}: {include}")
    units = [e for e in json.loads(db.read_text())
             if "torch/csrc/api/include" in e["command"] and a.only in e["file"]]

    def check(e):
        r = subprocess.run(rewrite(e["command"], include), cwd=e["directory"], capture_output=True, text=True)
        return e["file"], r.returncode, r.stderr

    failed = 0
    with concurrent.futures.ThreadPoolExecutor(a.j) as pool:
        for f, rc, err in pool.map(check, units):
            if rc != 0:
                failed += 1
                first = [l for l in err.splitlines() if "error" in l][:5]
                print(f"FAIL {os.path.relpath(f, ROOT)}\n  " + "\n  ".join(first))
    print(f"{len(units) - failed} of {len(units)} translation units compile against libtorch {'.'.join(version)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
