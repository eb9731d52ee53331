"""Ring all-reduce on paper (the α-β model) for GPT-2 124M's gradients, checked against MPI on this machine.

    python benchmarks/allreduce_model.py                  # the table on paper
    python benchmarks/allreduce_model.py --measure        # also: fit α and β to 2 ranks here (runs mpiexec -n 2)

The model. p ranks each hold n bytes of gradient. A ring all-reduce cuts them into p chunks and runs
2(p - 1) steps, each sending one chunk of n/p bytes to the next rank in the ring while receiving one from the
previous: p - 1 steps of reduce-scatter (after which each rank holds one chunk summed over all ranks), then
p - 1 of all-gather (which passes the summed chunks around). A step costs α (latency) + (n/p)/β (bytes over
bandwidth), so

    T_ring(p, n) = 2(p - 1) α + 2 (p - 1)/p · n/β

The bandwidth term approaches 2n/β: independent of p, which is why the ring is the bandwidth-optimal
all-reduce; the latency term grows with p, which is why NCCL switches to trees across many nodes. β is the
slowest link of the ring: NVLink inside one 8-GPU node, InfiniBand as soon as the ring leaves it.

Figures (public specifications): NVLink 4 on an H100 SXM, 18 links of 25 GB/s each way, 450 GB/s each way;
InfiniBand NDR, 400 Gb/s per port, 50 GB/s each way, one port per GPU as in a DGX H100. α is not a
specification: 1 µs for NVLink and 5 µs for InfiniBand (per step, NCCL's software included) are assumptions,
and the table shows how much of T they make.

The check here: 2 ranks on one machine through MPICH (shared memory), where T(2, n) = 2α + n/β. --measure
times MPI Allreduce (float32 sum, in place, as minilm.training.distributed does) over a range of n, fits
α and β by least squares up to 16 MB, and reports the fit's error at each n, and minilm's CPU-preset gradient
(805,248 parameters) against the fit.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

import numpy as np

GPT2_PARAMS = 124_439_808  # GPT-2 124M with its tied head (minilm's import of the Hugging Face weights)
FIT_UP_TO = 16 << 20  # bytes: the largest all-reduce the fit uses (measure's comment says why)
CPU_PRESET_PARAMS = 805_248  # the CPU preset's GPT (L 4, C 128, V 65, no Linear biases): GPT.num_params()
LINKS = {  # name: (β in bytes/s each way, assumed α in s, the ranks it serves)
    "NVLink 4 (one node)": (450e9, 1e-6, (2, 4, 8)),
    "InfiniBand NDR (across nodes)": (50e9, 5e-6, (8, 16, 64, 256, 1024)),
}


def ring_seconds(p, n_bytes, alpha, beta):
    """T_ring(p, n) = 2(p - 1) α + 2 (p - 1)/p · n/β (module docstring)."""
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * n_bytes / beta


def paper_table(bytes_per_value=4):
    n = GPT2_PARAMS * bytes_per_value
    print(f"GPT-2 124M, {GPT2_PARAMS:,} gradients x {bytes_per_value} B = {n / 1e6:,.1f} MB per rank per step\n")
    print("| link | β each way | α (assumed) | p | latency term | bandwidth term | T ring | share of T that is α |")
    print("|---|---|---|---|---|---|---|---|")
    for link, (beta, alpha, ranks) in LINKS.items():
        for p in ranks:
            latency, total = 2 * (p - 1) * alpha, ring_seconds(p, n, alpha, beta)
            print(f"| {link} | {beta / 1e9:.0f} GB/s | {alpha * 1e6:.0f} µs | {p} | {latency * 1e3:.3f} ms | "
                  f"{(total - latency) * 1e3:.2f} ms | **{total * 1e3:.2f} ms** | {latency / total:.1%} |")


def measure_worker(sizes, repeats):
    """Rank r's side of --measure: the median of ``repeats`` in-place float32 Allreduces of each size."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    results = []
    for n_values in sizes:
        buffer = np.ones(n_values, dtype=np.float32)
        times = []
        for _ in range(repeats + 3):  # 3 warm-ups: first-touch pages, MPICH's shared-memory setup
            comm.Barrier()
            started = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
            times.append(time.perf_counter() - started)
        results.append((n_values * 4, float(np.median(times[3:]))))
    if comm.Get_rank() == 0:
        for n_bytes, seconds in results:
            print(f"{n_bytes} {seconds!r}", flush=True)


def measure(repeats):
    sizes = [2 ** k for k in range(10, 25, 2)] + [CPU_PRESET_PARAMS]  # 4 KB ... 64 MB, and the preset's gradient
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit('--measure needs mpiexec: pip install "minilm[distributed]"')
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([mpiexec, "-n", "2", sys.executable, __file__, "--worker", "--repeats", str(repeats),
                           "--sizes", ",".join(map(str, sizes))], capture_output=True, text=True, env=env, check=True)
    rows = [tuple(float(v) for v in line.split()) for line in done.stdout.split("\n") if line.strip()]
    # fitted on the sizes whose buffers stay in a server's last-level cache (≤ 16 MB a rank): beyond it the
    # copies run at DRAM's speed, another β, and one line through both fits neither (64 MB is shown, not fitted)
    fitted = [(n, t) for n, t in rows if n != CPU_PRESET_PARAMS * 4 and n <= FIT_UP_TO]
    n, t = np.array(fitted).T
    # T(2, n) = 2α + n/β, linear in n: least squares on the relative error, so 4 KB counts as much as 64 MB
    design = np.stack([2 * np.ones_like(n), n], axis=1) / t[:, None]
    (alpha, inv_beta), *_ = np.linalg.lstsq(design, np.ones_like(t), rcond=None)
    print(f"\n2 ranks on this machine (MPICH, shared memory), median of {repeats} float32 Allreduces per size:")
    print(f"fit: α = {alpha * 1e6:.1f} µs, β = {1 / inv_beta / 1e9:.2f} GB/s\n")
    print("| n | measured | α-β model | model / measured |")
    print("|---|---|---|---|")
    for n_bytes, seconds in rows:
        model = ring_seconds(2, n_bytes, alpha, 1 / inv_beta)
        preset = " (the CPU preset's gradient)" if n_bytes == CPU_PRESET_PARAMS * 4 else ""
        label = f"{n_bytes / 1e6:,.3f} MB{preset}"
        fitted_here = "" if n_bytes <= FIT_UP_TO else " (not fitted)"
        print(f"| {label}{fitted_here} | {seconds * 1e3:.3f} ms | {model * 1e3:.3f} ms | {model / seconds:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true", help="fit α and β to 2 MPI ranks on this machine")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return measure_worker([int(s) for s in args.sizes.split(",")], args.repeats)
    paper_table()
    if args.measure:
        measure(args.repeats)


if __name__ == "__main__":
    main()
