"""Hadoop's own Java client, through the JVM pyspark starts (py4j), writing
one file with hflush/hsync, step by step as its driver says on stdin:
crates/granary-testkit/tests/suite/hdfs_compat.rs kills a datanode of the
pipeline between the steps. Not a pytest file.

argv: namenode rpc address, path, seed, a local file to which every byte
written is also appended. Prints lines the driver reads:
`pipeline ADDR,ADDR,...`, `flushed N`, `closed N`.
"""

import sys

from pyspark.java_gateway import launch_gateway


def chunk(seed, n, part):
    return bytes(((i * 2654435761 + seed * 7919 + part * 104729) >> 11) & 0xFF for i in range(n))


def pipeline(out):
    nodes = out.getWrappedStream().getPipeline()
    return ",".join(sorted(d.getXferAddr() for d in nodes))


def main():
    nn, path, seed, copy = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    gw = launch_gateway()
    jvm = gw.jvm
    conf = jvm.org.apache.hadoop.conf.Configuration()
    url = f"hdfs://{nn}"
    conf.set("fs.defaultFS", url)
    conf.set("dfs.replication", "3")
    conf.set("dfs.blocksize", str(32 << 20))
    fs = jvm.org.apache.hadoop.fs.FileSystem.get(jvm.java.net.URI(url), conf)
    out = fs.create(jvm.org.apache.hadoop.fs.Path(path), True)
    sync_flags = jvm.java.util.EnumSet.of(
        jvm.org.apache.hadoop.hdfs.client.HdfsDataOutputStream.SyncFlag.UPDATE_LENGTH
    )
    size = 1 << 20
    written = 0
    for part in range(3):
        data = chunk(seed, size + part * 4099, part)
        out.write(bytearray(data))
        with open(copy, "ab") as f:
            f.write(data)
        written += len(data)
        # hflush, then hsync naming the length: the namenode's fsync.
        out.hflush()
        out.hsync(sync_flags)
        print(f"pipeline {pipeline(out)}", flush=True)
        print(f"flushed {written}", flush=True)
        if part < 2:
            # The driver kills a datanode (or not) and says go.
            if sys.stdin.readline().strip() != "go":
                sys.exit("driver went away")
    out.close()
    print(f"closed {written}", flush=True)
    gw.shutdown()


if __name__ == "__main__":
    main()
