"""HDFS's own RPC protocol (Hadoop IPC, ClientNamenodeProtocol) against a
Granary namenode, through the unmodified `hdfs-native` client from PyPI.

Run by crates/granary-testkit/tests/suite/hdfs_compat.rs, which starts the
cluster and sets GRANARY_NN_RPC (host:port), GRANARY_CLI (the granary
binary) and HADOOP_USER_NAME (the superuser).
"""

import os
import subprocess
import sys

import pytest
from hdfs_native import Client, WriteOptions

NN = os.environ["GRANARY_NN_RPC"]
CLI = os.environ["GRANARY_CLI"]
URL = f"hdfs://{NN}"


def granary(*args, user="hdfs"):
    env = dict(os.environ, GRANARY_NAMENODE=NN, GRANARY_USER=user)
    out = subprocess.run([CLI, *args], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def fs():
    return Client(URL)


def test_directories_list_rename_and_delete(fs):
    fs.mkdirs("/native/a/b", create_parent=True)
    st = fs.get_file_info("/native/a/b")
    assert st.isdir and st.owner == "hdfs" and st.permission == 0o755
    assert [s.path for s in fs.list_status("/native/a")] == ["/native/a/b"]
    fs.rename("/native/a/b", "/native/a/c")
    assert [s.path for s in fs.list_status("/native/a")] == ["/native/a/c"]
    # What the granary CLI sees is the same namespace.
    assert "/native/a/c" in granary("fs", "ls", "/native/a")
    assert fs.delete("/native", recursive=True)
    with pytest.raises(FileNotFoundError):
        fs.get_file_info("/native")
    assert not fs.delete("/native", recursive=True), "nothing left to delete"


def test_listing_pages_through_a_large_directory(fs):
    # More entries than one getListing answer (1000): the client pages.
    fs.mkdirs("/pages", create_parent=True)
    names = [f"d{i:04d}" for i in range(1203)]
    for n in names:
        fs.mkdirs(f"/pages/{n}")
    assert sorted(s.path for s in fs.list_status("/pages")) == [f"/pages/{n}" for n in names]
    s = fs.get_content_summary("/pages")
    assert (s.directory_count, s.file_count, s.length) == (1204, 0, 0)
    assert fs.delete("/pages", recursive=True)


def test_files_made_by_granary_look_the_same(fs, tmp_path):
    local = tmp_path / "f.bin"
    local.write_bytes(os.urandom(300_000))
    granary("fs", "mkdir", "-p", "/seen")
    granary("fs", "put", str(local), "/seen/f.bin")
    st = fs.get_file_info("/seen/f.bin")
    assert (st.isdir, st.length, st.replication) == (False, 300_000, 3)
    assert st.blocksize > 0 and st.owner == "hdfs"
    [entry] = list(fs.list_status("/seen"))
    assert (entry.path, entry.length) == ("/seen/f.bin", 300_000)
    # A file lists as itself, as in HDFS.
    [entry] = list(fs.list_status("/seen/f.bin"))
    assert entry.length == 300_000 and not entry.isdir
    # A path through a file is not there (HDFS's reads say so).
    with pytest.raises(FileNotFoundError):
        fs.get_file_info("/seen/f.bin/below")
    with pytest.raises(FileNotFoundError):
        list(fs.list_status("/seen/f.bin/below"))
    with fs.read("/seen/f.bin") as r:
        assert r.read() == local.read_bytes()


def test_reads_over_data_transfer_protocol(fs, tmp_path):
    # Several 1 MiB blocks, 3 replicas each, written by Granary's CLI and
    # read by hdfs-native over HDFS's DataTransferProtocol: whole, and in
    # ranges that start and end inside checksum chunks and blocks.
    data = os.urandom(5 * (1 << 20) + 12_345)
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    granary("fs", "mkdir", "-p", "/dtp")
    granary("fs", "put", str(local), "/dtp/big.bin")
    with fs.read("/dtp/big.bin") as r:
        assert r.size == len(data)
        assert r.read() == data
        for off, n in [(0, 1), (511, 2), (1_048_570, 20), (3_000_001, 1_500_000), (len(data) - 7, 7)]:
            assert r.read_range(off, n) == data[off:off + n], (off, n)


def test_attributes(fs):
    fs.mkdirs("/attrs/d", create_parent=True)
    fs.set_permission("/attrs/d", 0o700)
    fs.set_owner("/attrs/d", owner="alice", group="staff")
    fs.set_times("/attrs/d", 1_600_000_000_000, 1_600_000_000_500)
    st = fs.get_file_info("/attrs/d")
    assert (st.permission, st.owner, st.group) == (0o700, "alice", "staff")
    assert st.modification_time == 1_600_000_000_000
    assert fs.delete("/attrs", recursive=True)


def test_errors_name_the_java_exception(fs):
    with pytest.raises(FileNotFoundError):
        fs.rename("/no/such/thing", "/elsewhere")
    fs.mkdirs("/exists/x", create_parent=True)
    fs.mkdirs("/exists/y")
    with pytest.raises(RuntimeError, match="PathIsNotEmptyDirectoryException"):
        fs.delete("/exists", recursive=False)
    # rename2 does not move into an existing directory, as in HDFS.
    with pytest.raises(FileExistsError):
        fs.rename("/exists/x", "/exists/y")
    assert fs.get_file_info("/exists/x").isdir
    assert fs.delete("/exists", recursive=True)


def test_another_user_is_who_the_connection_says():
    # HADOOP_USER_NAME names the user of a SIMPLE connection: alice may not
    # write to /, and the refusal names her.
    code = (
        "import sys\n"
        "from hdfs_native import Client\n"
        f"c = Client({URL!r})\n"
        "try:\n"
        "    c.mkdirs('/by-alice')\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
        "    sys.exit(3)\n"
    )
    env = dict(os.environ, HADOOP_USER_NAME="alice")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "AccessControlException" in out.stdout and "user=alice" in out.stdout, out.stdout
    with pytest.raises(FileNotFoundError):
        Client(URL).get_file_info("/by-alice")


def test_writes_over_data_transfer_protocol(fs, tmp_path):
    # hdfs-native writes several 1 MiB blocks with 3 replicas through
    # create, addBlock, WRITE_BLOCK pipelines and complete; Granary's CLI
    # and hdfs-native read back the same bytes.
    data = os.urandom(6 * (1 << 20) + 4_321)
    fs.mkdirs("/written", create_parent=True)
    with fs.create("/written/w.bin") as w:
        for i in range(0, len(data), 700_001):
            w.write(data[i:i + 700_001])
    st = fs.get_file_info("/written/w.bin")
    assert (st.length, st.replication, st.blocksize) == (len(data), 3, 1 << 20)
    with fs.read("/written/w.bin") as r:
        assert r.read() == data
    back = tmp_path / "back.bin"
    granary("fs", "get", "/written/w.bin", str(back))
    assert back.read_bytes() == data
    # An empty file and a file overwritten.
    with fs.create("/written/empty"):
        pass
    assert fs.get_file_info("/written/empty").length == 0
    with pytest.raises(FileExistsError):
        fs.create("/written/empty").close()
    with fs.create("/written/empty", WriteOptions(overwrite=True)) as w:
        w.write(b"now with bytes")
    with fs.read("/written/empty") as r:
        assert r.read() == b"now with bytes"
    # Appends go into a new block, as Granary's own do.
    with fs.append("/written/empty") as w:
        w.write(b", and more")
    with fs.read("/written/empty") as r:
        assert r.read() == b"now with bytes, and more"


def test_a_64_mib_file_of_several_blocks(fs):
    # The case: 64 MiB in 16 MiB blocks, 3 replicas, written and
    # read back byte for byte by hdfs-native.
    data = os.urandom(64 << 20)
    opts = WriteOptions(block_size=16 << 20, replication=3)
    with fs.create("/big64.bin", opts) as w:
        w.write(data)
    st = fs.get_file_info("/big64.bin")
    assert (st.length, st.blocksize, st.replication) == (64 << 20, 16 << 20, 3)
    with fs.read("/big64.bin") as r:
        assert r.read() == data
    fs.rename("/big64.bin", "/big64-renamed.bin")
    assert fs.delete("/big64-renamed.bin")
