#!/usr/bin/env python3
"""Launch resources of every CUDA kernel, from ptxas, without a GPU.

The emulator runs the kernels' arithmetic on the CPU but cannot see what only the hardware
enforces or punishes: registers x threads per block (a launch over 64K registers fails with
"too many resources requested"), local-memory spills (silently slow), shared memory over the
static 48 KB. This compiles each kernels/cuda/*.cu to sm_<arch> machine code with `ptxas -v`
(device code only, the build's flags) and checks every entry function:
  * no spill stores or loads (a loader change that spills shows here, not as a wrong result),
    and no stack frame at all (local memory: a register array indexed at run time, or a
    kernel-parameter array indexed at run time, which nvcc copies to the stack);
  * registers x .maxntid (its __launch_bounds__) <= 65536 and, for kernels with more than 64
    registers, a __launch_bounds__ at all: without one, nothing stops a 1024-thread launch;
  * static shared memory <= 48 KB (more needs dynamic shared memory and the opt-in attribute,
    which the emulator checks at launch);
  * no WMMA/ldmatrix fragment load from the generic address space (PTX `wmma.load` without
    `.shared`): nvcc emits those when it loses track of a shared-memory pointer (or, in 13.0,
    for any bf16 WMMA load), and they become per-element loads instead of LDSM. ALLOW_GENERIC
    lists the kernels where that is accepted, with the reason;
  * for an arch-specific target (90a), WGMMA_KERNELS contain `wgmma.mma_async` in their PTX
    (their wrappers compile to a trap in every other pass).
Prints one row per kernel (the ptxas record the notes refer to) and exits 1 on a violation.

usage: ptxas_check.py --nvcc NVCC --arch 90a --src DIR [--exact FILE.cu ...] [-I DIR ...] [--keep DIR]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

REGS_PER_SM = 65536
STATIC_SMEM = 48 * 1024
# kernel name prefix -> why its generic fragment loads are accepted
ALLOW_GENERIC = {
    "conv_tc_kernel<__nv_bfloat16": "v1, the small-GEMM baseline, stays on WMMA (bf16 WMMA loads are generic in nvcc 13.0)",
}
# kernels whose sm_90a PTX must contain wgmma.mma_async (conv.cu's v5)
WGMMA_KERNELS = ("conv_wg_v5_kernel",)


def demangle(names):
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True).stdout
        return out.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return list(names)


def short(name):
    """conv_tc_v2_kernel<__half, 128, true, ...> without the anonymous namespace and argument list."""
    name = re.sub(r"\(anonymous namespace\)::", "", name)
    name = re.sub(r"^void ", "", name)
    depth, out = 0, []
    for ch in name:  # drop the parameter list: the first '(' at template depth 0
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0:
            break
        out.append(ch)
    return "".join(out)


def parse_ptx(text):
    """entry name -> (maxntid product or 0 without .maxntid, generic fragment loads, wgmma.mma_async count)."""
    bounds, generic, wg, cur, body = {}, {}, {}, None, None
    for line in text.splitlines():
        m = re.match(r"\s*(?:\.visible\s+|\.weak\s+)?\.entry\s+(\S+?)\(", line)
        if m:
            cur = body = m.group(1)
            bounds[cur] = 0
            generic[cur] = 0
            wg[cur] = 0
            continue
        if cur is not None:
            m = re.match(r"\s*\.maxntid\s+(\d+),\s*(\d+),\s*(\d+)", line)
            if m:
                bounds[cur] = int(m.group(1)) * int(m.group(2)) * int(m.group(3))
            elif line.strip().startswith("{"):
                cur = None
        if body is not None and re.search(r"\b(wmma\.load|ldmatrix)\.", line) and ".shared" not in line:
            generic[body] += 1
        if body is not None and "wgmma.mma_async" in line:
            wg[body] += 1
    return {k: (bounds[k], generic[k], wg[k]) for k in bounds}


def parse_ptxas(log):
    """entry name -> dict(regs, spill_st, spill_ld, stack, smem)."""
    res, cur = {}, None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '([^']+)' for 'sm_\w+'", line)
        if m:
            cur = m.group(1)
            res[cur] = dict(regs=0, spill_st=0, spill_ld=0, stack=0, smem=0)
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            res[cur].update(stack=int(m.group(1)), spill_st=int(m.group(2)), spill_ld=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            res[cur]["regs"] = int(m.group(1))
            m2 = re.search(r"(\d+) bytes smem", line)
            res[cur]["smem"] = int(m2.group(1)) if m2 else 0
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nvcc", required=True)
    ap.add_argument("--arch", default="90")
    ap.add_argument("--src", required=True, help="folder with the .cu files")
    ap.add_argument("--exact", action="append", default=[], help="file compiled with --fmad=false (as in the build)")
    ap.add_argument("-I", dest="inc", action="append", default=[])
    ap.add_argument("--keep", help="keep the ptxas logs and PTX here")
    a = ap.parse_args()

    srcs = sorted(f for f in os.listdir(a.src) if f.endswith(".cu"))
    if not srcs:
        print(f"ptxas_check: no .cu files in {a.src}", file=sys.stderr)
        return 2
    exact = {os.path.basename(f) for f in a.exact}
    work = a.keep or tempfile.mkdtemp(prefix="ptxas_check.")
    os.makedirs(work, exist_ok=True)
    rows, bad = [], []
    for f in srcs:
        stem = f[:-3]
        kd = os.path.join(work, stem)
        os.makedirs(kd, exist_ok=True)
        cmd = [a.nvcc, "-cubin", "-O3", f"-arch=sm_{a.arch}", "-std=c++17", "-DCTXDIFF_HAVE_CUDA=1",
               "-prec-div=true", "-prec-sqrt=true", "-ftz=false", "-Xptxas", "-v", "--keep", "--keep-dir", kd,
               "-o", os.path.join(kd, stem + ".cubin")]
        if f in exact:
            cmd.append("--fmad=false")
        cmd += [f"-I{d}" for d in a.inc] + [os.path.join(a.src, f)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        with open(os.path.join(kd, "ptxas.log"), "w") as fh:
            fh.write(p.stdout + p.stderr)
        if p.returncode != 0:
            print(f"ptxas_check: {f}: nvcc failed ({p.returncode}):\n{p.stderr[-4000:]}", file=sys.stderr)
            return 1
        ptx = [x for x in os.listdir(kd) if x.endswith(".ptx")]
        bounds = {}
        for x in ptx:
            with open(os.path.join(kd, x)) as fh:
                bounds.update(parse_ptx(fh.read()))
        res = parse_ptxas(p.stdout + p.stderr)
        with open(os.path.join(a.src, f)) as fh:
            has_kernels = "__global__" in fh.read()
        if not res and has_kernels:
            print(f"ptxas_check: {f}: no entry functions in the ptxas output (flags changed?)", file=sys.stderr)
            return 1
        mangled = sorted(res)
        for mn, dn in zip(mangled, demangle(mangled)):
            r = res[mn]
            nt, gen, nwg = bounds.get(mn, (None, 0, 0))
            if nt is None:
                bad.append(f"{f}: {short(dn)}: entry not found in the PTX (cannot check its launch bounds)")
                nt = 0
            why = []
            if gen and not any(short(dn).startswith(k) for k in ALLOW_GENERIC):
                why.append(f"{gen} fragment loads from the generic address space (not LDSM)")
            # the wgmma kernel's instructions exist only in the arch-specific (sm_90a) pass; compiled
            # there without them it would trap at run time
            if a.arch.endswith("a") and any(short(dn).startswith(k) for k in WGMMA_KERNELS) and not nwg:
                why.append("no wgmma.mma_async in its sm_%s PTX (the wgmma code was compiled out)" % a.arch)
            if r["spill_st"] or r["spill_ld"]:
                why.append(f"spills {r['spill_st']} B stores / {r['spill_ld']} B loads")
            elif r["stack"]:
                why.append(f"{r['stack']} B stack frame (local memory)")
            if nt and r["regs"] * nt > REGS_PER_SM:
                why.append(f"{r['regs']} registers x {nt} threads > {REGS_PER_SM}")
            if not nt and r["regs"] > 64:
                why.append(f"{r['regs']} registers and no __launch_bounds__ (a 1024-thread launch would fail)")
            if r["smem"] > STATIC_SMEM:
                why.append(f"{r['smem']} B static shared memory > {STATIC_SMEM}")
            r["generic"] = gen
            rows.append((f, short(dn), r, nt, why))
            bad += [f"{f}: {short(dn)}: {w}" for w in why]

    w = max(len(n) for _, n, _, _, _ in rows)
    w = min(w, 80)
    print(f"{'file':<16} {'kernel':<{w}} {'regs':>4} {'bound':>5} {'smem':>6} {'stack':>5} {'spill':>5} {'gen':>3}  ok")
    for f, n, r, nt, why in rows:
        n = n if len(n) <= w else n[: w - 3] + "..."
        print(f"{f:<16} {n:<{w}} {r['regs']:>4} {nt or '-':>5} {r['smem']:>6} {r['stack']:>5} "
              f"{r['spill_st'] + r['spill_ld']:>5} {r['generic']:>3}  {'FAIL' if why else 'ok'}")
    print(f"\n{len(rows)} kernels in {len(srcs)} files (sm_{a.arch}); logs in {work}")
    if bad:
        print("\nviolations:", file=sys.stderr)
        for b in bad:
            print("  " + b, file=sys.stderr)
        return 1
    print("no spills or stack frames, registers x launch bounds within the SM's register file, static shared memory <= 48 KB, "
          "fragment loads from shared memory (gen: generic ones, accepted for " + ", ".join(ALLOW_GENERIC) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
