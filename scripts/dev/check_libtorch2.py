#!/usr/bin/env python3
"""Configures the project against another libtorch and compile-checks every translation unit
(optional developer script; never run by the build or the tests).

This machine has Debian 12's libtorch 1.13; users also build against 2.x (a PyTorch wheel, a
libtorch zip), most of them a CUDA build. Debian ships such trees: trixie's libtorch-dev 2.6,
sid's newest (2.14 when written, whose headers require C++20), and contrib's libtorch-cuda-dev 2.6
(CUDA 12, with c10d's ProcessGroupNCCL). This script downloads one with apt into a cache folder (a
private sources list; nothing is installed), unpacks it, configures a build folder of its own
against it with CMake (Torch_DIR; the CUDA tree's libraries, which are not downloaded, stand in as
an empty stub), and runs each compile command of that folder's compile_commands.json with
-fsyntax-only, the precompiled header replaced by src/omni/torch_pch.h. So CMakeLists.txt's own
choices are checked too: the C++ standard the headers demand, OMNI_NCCL's detection (nccl.h from
NCCL_HOME, CUDA_HOME or /usr/local/cuda) and process_group.cpp's NCCL branch.

It prints the files that fail, with their first errors. With --link it also downloads the
libraries (libtorch-cuda-2.6 is 480 MB) and builds the library and the CLI at -O0 in a second
folder, linked against them: every libtorch symbol omni uses must resolve there. The libraries'
own dependencies (the CUDA runtime, a newer glibc) are not fetched, so the link ignores what is
undefined inside them. Not covered: running.

Usage:
  python3 scripts/dev/check_libtorch2.py [--suite trixie|sid] [--cuda] [--link] [--cache DIR] [-j N] [--only PATH_PART]
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
MULTIARCH = "usr/lib/x86_64-linux-gnu"


def apt(cache: pathlib.Path, suite: str, *args: str) -> None:
    """apt-get with a private sources list, lists and cache under `cache` (nothing installed)."""
    for d in ("lists/partial", "cache/archives/partial", "debs"):
        (cache / d).mkdir(parents=True, exist_ok=True)
    sources = cache / "sources.list"
    sources.write_text(f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                       f"http://deb.debian.org/debian {suite} main contrib\n")
    opts = [f"-o=Dir::Etc::SourceList={sources}", "-o=Dir::Etc::SourceParts=/dev/null",
            f"-o=Dir::State::Lists={cache / 'lists'}", f"-o=Dir::Cache={cache / 'cache'}",
            "-o=APT::Get::List-Cleanup=0"]
    if args[0] == "update":
        subprocess.run(["apt-get", *opts, *args], check=True, stdout=subprocess.DEVNULL)
    else:
        subprocess.run(["apt-get", *opts, *args], check=True, cwd=cache / "debs")


def unpack(cache: pathlib.Path, root: pathlib.Path, pattern: str) -> None:
    for deb in sorted((cache / "debs").glob(pattern)):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)


def fetch_tree(cache: pathlib.Path, suite: str, cuda: bool) -> pathlib.Path:
    """The unpacked libtorch-dev (or libtorch-cuda-dev) and libgloo-dev of a Debian suite."""
    root = cache / "root"
    if (root / "usr/include/torch/csrc/api/include/torch/version.h").is_file():
        return root
    root.mkdir(parents=True, exist_ok=True)
    apt(cache, suite, "update")
    apt(cache, suite, "download", "libtorch-cuda-dev" if cuda else "libtorch-dev", "libgloo-dev")
    unpack(cache, root, "*-dev_*.deb")
    return root


def fetch_libraries(cache: pathlib.Path, suite: str, root: pathlib.Path) -> None:
    """The shared objects the -dev package's symlinks point to (its first libtorch dependency)."""
    dev = next((cache / "debs").glob("libtorch*-dev_*.deb"))
    depends = subprocess.run(["dpkg-deb", "-f", str(dev), "Depends"], capture_output=True, text=True,
                             check=True).stdout
    lib = next(d.split()[0] for d in depends.split(",") if d.strip().startswith("libtorch"))
    if not any((cache / "debs").glob(f"{lib}_*.deb")):
        apt(cache, suite, "update")
        apt(cache, suite, "download", lib)
    unpack(cache, root, f"{lib}_*.deb")


def link_check(root: pathlib.Path, build: pathlib.Path, jobs: int) -> bool:
    """The library and the CLI built at -O0 against `root`'s libtorch and linked with it."""
    args = ["cmake", "-S", str(ROOT), "-B", str(build), f"-DTorch_DIR={root / MULTIARCH / 'cmake/Torch'}",
            f"-DCMAKE_PREFIX_PATH={root / 'usr'}", "-DOMNI_BUILD_TESTS=OFF", "-DOMNI_BUILD_BENCH=OFF",
            "-DCMAKE_CXX_FLAGS_RELEASE=-O0 -DNDEBUG",
            "-DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined -Wl,--unresolved-symbols=ignore-in-shared-libs"]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"FAIL configure for the link: {r.stderr.strip()[-2000:]}")
        return False
    r = subprocess.run(["cmake", "--build", str(build), "-j", str(jobs), "--target", "omni_cli"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print("FAIL build / link\n  " + "\n  ".join([l for l in r.stdout.splitlines() + r.stderr.splitlines()
                                                     if "error" in l or "undefined" in l][:10]))
        return False
    needed = [l.split("[")[1].rstrip("]") for l in subprocess.run(["readelf", "-d", str(build / "omni")],
              capture_output=True, text=True).stdout.splitlines() if "NEEDED" in l and "torch" in l]
    print(f"linked: build/omni needs {', '.join(needed)}")
    return True


def configure(root: pathlib.Path, build: pathlib.Path, cuda: bool) -> None:
    args = ["cmake", "-S", str(ROOT), "-B", str(build), f"-DTorch_DIR={root / MULTIARCH / 'cmake/Torch'}"]
    if cuda:
        # TorchConfig.cmake find_library()s libc10_cuda, which is in the (unfetched) libtorch-cuda-2.6.
        stub = build / "libc10_cuda.so"
        build.mkdir(parents=True, exist_ok=True)
        (build / "stub.c").write_text("void omni_stub(void) {}\n")
        subprocess.run(["cc", "-shared", "-o", str(stub), str(build / "stub.c")], check=True)
        args.append(f"-DC10_CUDA_LIBRARY={stub}")
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: cmake against {root}: {r.stderr.strip() or r.stdout[-2000:]}")
    for line in r.stdout.splitlines():
        if line.startswith("-- omni:"):
            print(line)


def syntax_only(command: str) -> list:
    """The compile command, syntax only (no object file, the PCH's header as plain text)."""
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
        out.append(a)
    return out[:1] + ["-O0", "-fsyntax-only"] + out[1:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="trixie", help="the Debian suite whose libtorch to use (trixie: 2.6, sid: newest)")
    ap.add_argument("--cuda", action="store_true", help="contrib's libtorch-cuda-dev (with NCCL) instead of libtorch-dev")
    ap.add_argument("--link", action="store_true", help="also build and link the CLI against the libraries")
    ap.add_argument("--cache", default="", help="where the packages and the build folder are kept "
                                                "(default /tmp/omni_libtorch-SUITE[-cuda])")
    ap.add_argument("-j", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--only", default="", help="check only the files whose path contains this")
    a = ap.parse_args()
    cache = pathlib.Path(a.cache or f"/tmp/omni_libtorch-{a.suite}{'-cuda' if a.cuda else ''}")
    root = fetch_tree(cache, a.suite, a.cuda)
    version = ".".join(l.split()[-1] for h in ("torch/csrc/api/include/torch/version.h", "torch/headeronly/version.h")
                       if (root / "usr/include" / h).is_file()
                       for l in (root / "usr/include" / h).read_text().splitlines()
                       if l.startswith("#define TORCH_VERSION_M"))
    print(f"libtorch {version}{' (CUDA)' if a.cuda else ''} from Debian {a.suite}: {root}")
    build = cache / "build"
    configure(root, build, a.cuda)
    units = [e for e in json.loads((build / "compile_commands.json").read_text()) if a.only in e["file"]]

    def check(e):
        r = subprocess.run(syntax_only(e["command"]), cwd=e["directory"], capture_output=True, text=True)
        return e["file"], r.returncode, r.stderr

    failed = 0
    with concurrent.futures.ThreadPoolExecutor(a.j) as pool:
        for f, rc, err in pool.map(check, units):
            if rc != 0:
                failed += 1
                first = [l for l in err.splitlines() if "error" in l][:5]
                print(f"FAIL {os.path.relpath(f, ROOT)}\n  " + "\n  ".join(first), flush=True)
    print(f"{len(units) - failed} of {len(units)} translation units compile against libtorch {version}")
    if a.link:
        fetch_libraries(cache, a.suite, root)
        if not link_check(root, cache / "build-link", a.j):
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
