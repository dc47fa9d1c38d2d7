#!/usr/bin/env python3
"""hdfs:// against Granary's own client, in one run: put and get of the same
file through the `granary` CLI (Granary's protocol) and through the
unmodified `hdfs-native` client from PyPI (HDFS's RPC and
DataTransferProtocol), alternating, ROUNDS times; prints each time, the
medians and hdfs-native / granary. Run by scripts/bench.sh against its
cluster; the numbers go to docs/performance.md.

  bench_hdfs.py --namenode 127.0.0.1:28020 --cli target/release/granary \
      --user bench --size-mib 1024 --rounds 3 --work /var/tmp/dir
"""

import argparse
import os
import statistics
import subprocess
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--namenode", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--user", default="bench")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    os.environ["HADOOP_USER_NAME"] = a.user
    from hdfs_native import Client

    size = a.size_mib << 20
    local = os.path.join(a.work, "bench-hdfs.bin")
    with open(local, "wb") as f:
        for _ in range(a.size_mib):
            f.write(os.urandom(1 << 20))
    env = dict(os.environ, GRANARY_NAMENODE=a.namenode, GRANARY_USER=a.user)
    fs = Client(f"hdfs://{a.namenode}")
    fs.mkdirs("/bench-hdfs", create_parent=True)
    step = 8 << 20
    t = {"granary put": [], "granary get": [], "hdfs-native put": [], "hdfs-native get": []}

    def mib_s(seconds):
        return size / (1 << 20) / seconds

    for i in range(a.rounds):
        g, h, back = f"/bench-hdfs/g{i}", f"/bench-hdfs/h{i}", os.path.join(a.work, "back.bin")
        s = time.monotonic()
        subprocess.run([a.cli, "fs", "put", local, g], env=env, check=True)
        t["granary put"].append(mib_s(time.monotonic() - s))
        s = time.monotonic()
        subprocess.run([a.cli, "fs", "get", g, back], env=env, check=True)
        t["granary get"].append(mib_s(time.monotonic() - s))
        os.remove(back)
        s = time.monotonic()
        with open(local, "rb") as src, fs.create(h) as w:
            while chunk := src.read(step):
                w.write(chunk)
        t["hdfs-native put"].append(mib_s(time.monotonic() - s))
        s = time.monotonic()
        got = 0
        with fs.read(h) as r, open(back, "wb") as out:
            while chunk := r.read(step):
                out.write(chunk)
                got += len(chunk)
        t["hdfs-native get"].append(mib_s(time.monotonic() - s))
        assert got == size, (got, size)
        os.remove(back)
        fs.delete(g)
        fs.delete(h)
        print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.1f} MiB/s" for k, v in t.items()), flush=True)
    med = {k: statistics.median(v) for k, v in t.items()}
    print(
        f"hdfs size={a.size_mib}MiB rounds={a.rounds} "
        + " ".join(f"{k.replace(' ', '_')}={v:.1f}" for k, v in med.items())
        + f" put_ratio={med['hdfs-native put'] / med['granary put']:.2f}"
        + f" get_ratio={med['hdfs-native get'] / med['granary get']:.2f}"
    )
    os.remove(local)


if __name__ == "__main__":
    main()
