"""WebHDFS against a running Granary cluster, through unmodified clients
from PyPI (HdfsCLI, fsspec, Dask) and raw HTTP for the protocol details.

Run by crates/granary-testkit/tests/webhdfs.rs, which starts the cluster and
sets GRANARY_NN_HTTP (host:port), GRANARY_NN_RPC and GRANARY_CLI.
"""

import http.client
import io
import json
import os
import random
import socket
import subprocess

import pytest
import requests

NN_HTTP = os.environ["GRANARY_NN_HTTP"]
NN_RPC = os.environ["GRANARY_NN_RPC"]
CLI = os.environ["GRANARY_CLI"]
# The namenode's superuser (ProcessCluster starts it with --superuser hdfs).
SUPER = os.environ.get("GRANARY_SUPERUSER", "hdfs")
HOST, PORT = NN_HTTP.rsplit(":", 1)
BASE = f"http://{NN_HTTP}/webhdfs/v1"
MIB = 1 << 20


def data(n, seed):
    return random.Random(seed).randbytes(n)


def granary(*args, stdin=None):
    """The granary CLI as the superuser: the reference every result is compared with."""
    env = dict(os.environ, GRANARY_USER=SUPER)
    out = subprocess.run(
        [CLI, "--namenode", NN_RPC, *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


def web(method, path, op, user=SUPER, allow_redirects=False, **params):
    params = {"op": op, "user.name": user, **params} if user else {"op": op, **params}
    data_ = params.pop("body", None)
    return requests.request(
        method,
        f"{BASE}{path}",
        params=params,
        data=data_,
        allow_redirects=allow_redirects,
        timeout=60,
    )


def remote(resp, status, exception):
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()["RemoteException"]
    assert body["exception"] == exception, body
    assert body["javaClassName"].endswith(exception), body
    assert body["message"], body
    return body["message"]


def web_put(path, payload, **params):
    """The two-step CREATE: namenode 307 to a datanode, data to the datanode."""
    r = web("PUT", path, "CREATE", **params)
    assert r.status_code == 307, r.text
    loc = r.headers["Location"]
    assert loc.startswith("http://") and "/webhdfs/v1" + path in loc, loc
    r2 = requests.put(loc, data=payload, timeout=120)
    assert r2.status_code == 201, r2.text
    assert r2.headers["Location"].startswith("hdfs://"), r2.headers
    return r2


@pytest.fixture(scope="session", autouse=True)
def empty_cluster():
    """Start from an empty namespace (reruns on a long-lived cluster too)."""
    for st in web("GET", "/", "LISTSTATUS").json()["FileStatuses"]["FileStatus"]:
        web("DELETE", "/" + st["pathSuffix"], "DELETE", recursive="true")


# --- HdfsCLI (the `hdfs` package) ---------------------------------------


def test_hdfscli_round_trip_list_status_rename_checksum_delete(tmp_path):
    from hdfs import InsecureClient
    from hdfs.util import HdfsError

    c = InsecureClient(f"http://{NN_HTTP}", user=SUPER)
    c.makedirs("/hdfscli/sub", permission="750")
    payload = data(3 * MIB + 12345, 1)
    c.write("/hdfscli/a.bin", data=payload, blocksize=MIB, replication=3)
    with c.read("/hdfscli/a.bin") as r:
        assert r.read() == payload
    with c.read("/hdfscli/a.bin", offset=MIB + 7, length=100_000) as r:
        assert r.read() == payload[MIB + 7 : MIB + 7 + 100_000]
    assert granary("fs", "cat", "/hdfscli/a.bin") == payload

    st = c.status("/hdfscli/a.bin")
    assert (st["type"], st["length"], st["blockSize"], st["replication"]) == (
        "FILE",
        len(payload),
        MIB,
        3,
    )
    assert st["owner"] == SUPER and st["permission"] == "644"
    assert c.status("/hdfscli/sub")["permission"] == "750"
    assert c.status("/hdfscli/none", strict=False) is None
    assert sorted(c.list("/hdfscli")) == ["a.bin", "sub"]

    c.rename("/hdfscli/a.bin", "/hdfscli/b.bin")
    assert sorted(c.list("/hdfscli")) == ["b.bin", "sub"]

    line = granary("fs", "checksum", "/hdfscli/b.bin").decode().split("\t")
    cs = c.checksum("/hdfscli/b.bin")
    assert (cs["algorithm"], cs["bytes"], cs["length"]) == (line[1], line[2].strip(), 28)
    assert cs["algorithm"] == f"MD5-of-{MIB // 512}MD5-of-512CRC32C"

    local = tmp_path / "up.bin"
    local.write_bytes(payload[:500_000])
    c.upload("/hdfscli/sub/up.bin", str(local))
    c.download("/hdfscli/sub/up.bin", str(tmp_path / "down.bin"))
    assert (tmp_path / "down.bin").read_bytes() == payload[:500_000]

    with pytest.raises(HdfsError) as e:
        c.write("/hdfscli/b.bin", data=b"again")
    assert "/hdfscli/b.bin" in str(e.value)
    c.write("/hdfscli/b.bin", data=b"again", overwrite=True)
    assert granary("fs", "cat", "/hdfscli/b.bin") == b"again"

    assert c.delete("/hdfscli", recursive=True) is True
    assert c.delete("/hdfscli") is False
    assert c.status("/hdfscli", strict=False) is None


# --- fsspec -------------------------------------------------------------


def test_fsspec_webhdfs_ls_open_info_rm():
    import fsspec

    fs = fsspec.filesystem("webhdfs", host=HOST, port=int(PORT), user=SUPER)
    fs.mkdir("/fsspec/d")
    payload = data(2 * MIB + 99, 2)
    with fs.open("/fsspec/d/x.bin", "wb", block_size=MIB) as f:
        f.write(payload[:MIB])
        f.write(payload[MIB:])
    assert granary("fs", "cat", "/fsspec/d/x.bin") == payload
    assert fs.cat("/fsspec/d/x.bin") == payload
    with fs.open("/fsspec/d/x.bin", "rb") as f:
        f.seek(MIB - 3)
        assert f.read(10) == payload[MIB - 3 : MIB + 7]
    info = fs.info("/fsspec/d/x.bin")
    assert info["size"] == len(payload) and info["type"] == "file"
    assert fs.ls("/fsspec/d", detail=False) == ["/fsspec/d/x.bin"]
    assert fs.info("/fsspec/d")["type"] == "directory"
    fs.rm("/fsspec", recursive=True)
    assert not fs.exists("/fsspec/d/x.bin")


# --- Dask over a multi-block CSV --------------------------------------------


def test_dask_read_csv_and_aggregate_matches_pandas_on_granary_data():
    import dask.dataframe as dd
    import pandas as pd

    rnd = random.Random(3)
    lines = ["key,value,weight"]
    for i in range(260_000):
        lines.append(f"k{rnd.randrange(12)},{rnd.randrange(1000)},{i % 7}")
    csv = ("\n".join(lines) + "\n").encode()
    assert len(csv) > 2 * MIB
    web_put("/dask/data.csv", csv, blocksize=MIB)
    stored = granary("fs", "cat", "/dask/data.csv")
    assert stored == csv

    df = dd.read_csv(
        f"webhdfs://{HOST}:{PORT}/dask/data.csv",
        storage_options={"user": SUPER},
        blocksize=MIB // 2,
    )
    assert df.npartitions >= 4
    got = df.groupby("key").agg({"value": "sum", "weight": "max"}).compute().sort_index()
    want = (
        pd.read_csv(io.BytesIO(stored))
        .groupby("key")
        .agg({"value": "sum", "weight": "max"})
        .sort_index()
    )
    pd.testing.assert_frame_equal(got, want)
    assert int(df["value"].count().compute()) == 260_000


# --- The protocol itself ------------------------------------------------------


def test_two_step_create_open_append_and_noredirect():
    payload = data(1_500_000, 4)
    web_put("/proto/f.bin", payload, blocksize=MIB, replication=2, permission="600")
    st = web("GET", "/proto/f.bin", "GETFILESTATUS").json()["FileStatus"]
    assert (st["length"], st["replication"], st["permission"], st["type"]) == (
        len(payload),
        2,
        "600",
        "FILE",
    )
    assert st["pathSuffix"] == ""

    r = web("GET", "/proto/f.bin", "OPEN", noredirect="true", offset=1000, length=500)
    assert r.status_code == 200
    loc = r.json()["Location"]
    assert loc.startswith("http://")
    assert requests.get(loc, timeout=60).content == payload[1000:1500]
    # Following the 307 as any HTTP client does; lengths past the end are cut.
    r = web("GET", "/proto/f.bin", "OPEN", allow_redirects=True, offset=1_499_000, length=2**62)
    assert r.status_code == 200 and r.content == payload[1_499_000:]
    r = web("GET", "/proto/f.bin", "OPEN", allow_redirects=True, offset=len(payload))
    assert r.status_code == 200 and r.content == b""

    more = data(70_000, 5)
    r = web("POST", "/proto/f.bin", "APPEND")
    assert r.status_code == 307
    r2 = requests.post(r.headers["Location"], data=more, timeout=60)
    assert r2.status_code == 200, r2.text
    assert granary("fs", "cat", "/proto/f.bin") == payload + more

    r = web("PUT", "/proto/g.bin", "CREATE", noredirect="true")
    assert r.status_code == 200
    r2 = requests.put(r.json()["Location"], data=b"hello", timeout=60)
    assert r2.status_code == 201
    assert granary("fs", "cat", "/proto/g.bin") == b"hello"


def test_namespace_operations_and_json_shapes():
    assert web("PUT", "/ns/a/b", "MKDIRS", permission="711").json() == {"boolean": True}
    web_put("/ns/a/f", b"x" * 10)
    listing = web("GET", "/ns/a", "LISTSTATUS").json()["FileStatuses"]["FileStatus"]
    assert [(s["pathSuffix"], s["type"]) for s in listing] == [("b", "DIRECTORY"), ("f", "FILE")]
    assert listing[0]["permission"] == "711" and listing[0]["childrenNum"] == 0
    single = web("GET", "/ns/a/f", "LISTSTATUS").json()["FileStatuses"]["FileStatus"]
    assert len(single) == 1 and single[0]["length"] == 10

    locs = web("GET", "/ns/a/f", "GETFILEBLOCKLOCATIONS").json()["BlockLocations"]["BlockLocation"]
    assert len(locs) == 1 and (locs[0]["offset"], locs[0]["length"]) == (0, 10)
    assert len(locs[0]["names"]) == 3 and all(":" in n for n in locs[0]["names"])
    lb = web("GET", "/ns/a/f", "GET_BLOCK_LOCATIONS").json()["LocatedBlocks"]
    assert lb["fileLength"] == 10 and lb["locatedBlocks"][0]["block"]["numBytes"] == 10
    assert len(lb["locatedBlocks"][0]["locations"]) == 3

    cs = web("GET", "/ns", "GETCONTENTSUMMARY").json()["ContentSummary"]
    assert (cs["directoryCount"], cs["fileCount"], cs["length"]) == (3, 1, 10)
    assert cs["spaceConsumed"] == 30 and cs["quota"] == -1
    qu = web("GET", "/ns", "GETQUOTAUSAGE").json()["QuotaUsage"]
    assert qu["fileAndDirectoryCount"] == 4

    assert web("GET", "/", "GETHOMEDIRECTORY", user="alice").json() == {"Path": "/user/alice"}
    assert web("GET", "/", "GETTRASHROOT", user="alice").json() == {"Path": "/user/alice/.Trash"}
    d = web("GET", "/", "GETSERVERDEFAULTS").json()["FsServerDefaults"]
    assert d["bytesPerChecksum"] == 512 and d["checksumType"] == "CRC32C"

    assert web("PUT", "/ns/a/f", "SETREPLICATION", replication=1).json() == {"boolean": True}
    assert web("PUT", "/ns/a", "SETREPLICATION", replication=1).json() == {"boolean": False}
    assert web("PUT", "/ns/a/f", "SETPERMISSION", permission="640").status_code == 200
    assert web("PUT", "/ns/a/f", "SETOWNER", owner="alice", group="staff").status_code == 200
    assert web("PUT", "/ns/a/f", "SETTIMES", modificationtime=1_000_000, accesstime=-1).status_code == 200
    st = web("GET", "/ns/a/f", "GETFILESTATUS").json()["FileStatus"]
    assert (st["replication"], st["permission"], st["owner"], st["group"]) == (1, "640", "alice", "staff")
    assert st["modificationTime"] == 1_000_000

    assert web("GET", "/ns/a/f", "CHECKACCESS", user="alice", fsaction="rw-").status_code == 200
    remote(web("GET", "/ns/a/f", "CHECKACCESS", user="bob", fsaction="r--"), 403, "AccessControlException")


    assert web("PUT", "/ns/a/f", "RENAME", destination="/ns/a/g").json() == {"boolean": True}
    assert web("PUT", "/ns/a/none", "RENAME", destination="/ns/a/h").json() == {"boolean": False}
    assert web("PUT", "/ns/a/b", "RENAME", destination="/ns/a/g").json() == {"boolean": False}
    assert web("DELETE", "/ns/a", "DELETE").status_code == 403
    assert web("DELETE", "/ns", "DELETE", recursive="true").json() == {"boolean": True}
    assert web("DELETE", "/ns", "DELETE").json() == {"boolean": False}


def test_listing_in_batches_pages_through_a_large_directory():
    for i in range(1005):
        assert web("PUT", f"/big/d{i:04}", "MKDIRS").status_code == 200
    first = web("GET", "/big", "LISTSTATUS_BATCH").json()["DirectoryListing"]
    page = first["partialListing"]["FileStatuses"]["FileStatus"]
    assert len(page) == 1000 and first["remainingEntries"] == 5
    nxt = web("GET", "/big", "LISTSTATUS_BATCH", startAfter=page[-1]["pathSuffix"]).json()
    rest = nxt["DirectoryListing"]["partialListing"]["FileStatuses"]["FileStatus"]
    assert [s["pathSuffix"] for s in rest] == [f"d{i:04}" for i in range(1000, 1005)]
    assert nxt["DirectoryListing"]["remainingEntries"] == 0
    assert len(web("GET", "/big", "LISTSTATUS").json()["FileStatuses"]["FileStatus"]) == 1005


def test_bad_requests_get_hdfs_style_errors():
    web_put("/bad/f", b"0123456789")
    m = remote(web("GET", "/bad/f", "NOSUCHOP"), 400, "IllegalArgumentException")
    assert "NOSUCHOP" in m
    m = remote(web("GET", "/bad/x", "MKDIRS"), 400, "IllegalArgumentException")
    assert "GetOpParam" in m
    remote(web("GET", "/bad/f", None), 400, "IllegalArgumentException")
    m = remote(web("GET", "/bad/none", "GETFILESTATUS"), 404, "FileNotFoundException")
    assert "/bad/none" in m
    remote(web("GET", "/bad/none", "OPEN"), 404, "FileNotFoundException")
    remote(web("GET", "/bad", "OPEN"), 404, "FileNotFoundException")
    m = remote(web("GET", "/bad/f", "OPEN", offset=-1), 400, "IllegalArgumentException")
    assert '"offset"' in m
    remote(web("GET", "/bad/f", "OPEN", offset=11), 400, "IllegalArgumentException")
    remote(web("GET", "/bad/f", "OPEN", length="lots"), 400, "IllegalArgumentException")
    remote(web("PUT", "/bad/d", "MKDIRS", permission="8"), 400, "IllegalArgumentException")
    remote(web("PUT", "/bad/f", "SETREPLICATION", replication=0), 400, "IllegalArgumentException")
    remote(web("DELETE", "/bad", "DELETE", recursive="maybe"), 400, "IllegalArgumentException")
    remote(web("PUT", "/bad/d", "MKDIRS", body=b"unexpected"), 400, "IllegalArgumentException")
    remote(web("PUT", "/bad/f", "RENAME"), 400, "IllegalArgumentException")
    # Sent as is: HTTP libraries would resolve the dot segment themselves.
    conn = http.client.HTTPConnection(HOST, int(PORT), timeout=30)
    conn.request("PUT", f"/webhdfs/v1/bad/a/../b?op=MKDIRS&user.name={SUPER}")
    r = conn.getresponse()
    assert r.status == 400, r.read()
    assert json.loads(r.read())["RemoteException"]["exception"] == "InvalidPathException"
    remote(web("POST", "/bad/f", "CONCAT", sources="/bad/g"), 400, "UnsupportedOperationException")
    remote(web("POST", "/bad/f", "TRUNCATE", newlength=1), 400, "UnsupportedOperationException")
    remote(web("PATCH", "/bad/f", "OPEN"), 400, "IllegalArgumentException")
    # Permissions: simple auth names the user; doas needs a proxy user.
    remote(web("PUT", "/bad/f", "SETOWNER", user="alice", owner="alice"), 403, "AccessControlException")
    remote(web("PUT", "/bad/mine", "MKDIRS", user="alice", doas=SUPER), 403, "AccessControlException")
    remote(web("PUT", "/bad/f", "SETOWNER", user=SUPER), 400, "IllegalArgumentException")
    remote(web("PUT", "/bad/f", "CREATE", user="bad user"), 400, "IllegalArgumentException")
    # An existing file without overwrite, at the datanode step.
    loc = web("PUT", "/bad/f", "CREATE").headers["Location"]
    remote(requests.put(loc, data=b"x", timeout=60), 403, "FileAlreadyExistsException")
    assert granary("fs", "cat", "/bad/f") == b"0123456789"


def test_an_upload_that_breaks_off_leaves_no_file():
    loc = web("PUT", "/cut/f", "CREATE").headers["Location"]
    url = requests.utils.urlparse(loc)
    s = socket.create_connection((url.hostname, url.port), timeout=30)
    head = (
        f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 5000000\r\n\r\n"
    )
    s.sendall(head.encode() + data(200_000, 6))
    import time

    # The file exists (open for writing) once the datanode has started on it.
    deadline = time.time() + 20
    while web("GET", "/cut/f", "GETFILESTATUS").status_code != 200:
        assert time.time() < deadline, "the upload never started"
        time.sleep(0.05)
    s.close()
    # The datanode notices the broken body, fails the write and removes the file.
    deadline = time.time() + 20
    while web("GET", "/cut/f", "GETFILESTATUS").status_code != 404:
        assert time.time() < deadline, "the half-uploaded file is still there"
        time.sleep(0.1)
    remote(web("GET", "/cut/f", "GETFILESTATUS"), 404, "FileNotFoundException")
    assert web("GET", "/cut", "LISTSTATUS").json()["FileStatuses"]["FileStatus"] == []
