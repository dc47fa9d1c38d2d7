"""WebHDFS delegation tokens against a secure Granary cluster (auth =
"token", TLS on every port), through HdfsCLI's TokenClient from PyPI.

Run by crates/granary-testkit/tests/suite/secure/tokens.rs, which starts the
cluster and sets GRANARY_NN_HTTP (host:port), GRANARY_TLS_CA, the
superuser's certificate (GRANARY_TLS_CERT, GRANARY_TLS_KEY; hdfs is a proxy
user there) and alice's (GRANARY_ALICE_CERT, GRANARY_ALICE_KEY).
"""

import os

import pytest
import requests
from hdfs import Client, TokenClient
from hdfs.util import HdfsError

NN = os.environ["GRANARY_NN_HTTP"]
CA = os.environ["GRANARY_TLS_CA"]
CERT = (os.environ["GRANARY_TLS_CERT"], os.environ["GRANARY_TLS_KEY"])
ALICE = (os.environ["GRANARY_ALICE_CERT"], os.environ["GRANARY_ALICE_KEY"])
URL = f"https://{NN}"
API = f"{URL}/webhdfs/v1"


def session(cert=False):
    s = requests.Session()
    # REQUESTS_CA_BUNDLE and friends would replace the cluster CA.
    s.trust_env = False
    s.verify = CA
    if cert:
        s.cert = CERT if cert is True else cert
    return s


def get_token():
    r = session(cert=True).get(f"{API}/?op=GETDELEGATIONTOKEN&renewer=hdfs")
    assert r.status_code == 200, r.text
    return r.json()["Token"]["urlString"]


def test_no_certificate_and_no_token_is_refused():
    r = session().get(f"{API}/?op=LISTSTATUS")
    assert r.status_code == 401, r.text
    assert r.json()["RemoteException"]["exception"] == "SecurityException"


def test_hdfscli_acts_as_the_tokens_owner():
    token = get_token()
    c = TokenClient(URL, token, session=session())
    c.makedirs("/tok")
    data = os.urandom(3 << 20)
    c.write("/tok/f.bin", data, overwrite=True)
    with c.read("/tok/f.bin") as f:
        assert f.read() == data
    assert "f.bin" in c.list("/tok")
    assert c.status("/tok/f.bin")["owner"] == "hdfs"
    c.rename("/tok/f.bin", "/tok/g.bin")
    assert c.delete("/tok/g.bin")


def test_renew_then_cancel_over_webhdfs():
    token = get_token()
    c = TokenClient(URL, token, session=session())
    c.makedirs("/renewed")
    r = session(cert=True).put(f"{API}/?op=RENEWDELEGATIONTOKEN&token={token}")
    assert r.status_code == 200, r.text
    assert r.json()["long"] > 0
    r = session(cert=True).put(f"{API}/?op=CANCELDELEGATIONTOKEN&token={token}")
    assert r.status_code == 200, r.text
    with pytest.raises(HdfsError):
        c.list("/renewed")
    r = session().get(f"{API}/renewed?op=LISTSTATUS&delegation={token}")
    assert r.status_code == 401, r.text
    assert "cancelled" in r.json()["RemoteException"]["message"], r.text


def test_a_token_cannot_get_another_nor_be_forged():
    token = get_token()
    r = session().get(f"{API}/?op=GETDELEGATIONTOKEN&delegation={token}")
    assert r.status_code == 403, r.text
    forged = token[:-4] + ("0000" if token[-4:] != "0000" else "1111")
    r = session().get(f"{API}/?op=LISTSTATUS&delegation={forged}")
    assert r.status_code == 401, r.text


def test_hdfscli_proxy_user_acts_for_another():
    # hdfs's certificate, a proxy user, acting for alice (doas=alice): the
    # write goes through a datanode, which passes doas on to the namenode.
    admin = Client(URL, session=session(cert=True))
    admin.makedirs("/home-alice")
    admin.set_owner("/home-alice", owner="alice")
    c = Client(URL, proxy="alice", session=session(cert=True))
    c.makedirs("/home-alice/proxied")
    c.write("/home-alice/proxied/f.bin", b"for alice", overwrite=True)
    with c.read("/home-alice/proxied/f.bin") as f:
        assert f.read() == b"for alice"
    assert c.status("/home-alice/proxied")["owner"] == "alice"
    assert c.status("/home-alice/proxied/f.bin")["owner"] == "alice"
    # As alice, hdfs's own rights are gone: / is not alice's to write.
    with pytest.raises(HdfsError, match="user=alice"):
        c.makedirs("/not-alices")


def test_hdfscli_non_proxy_user_is_refused():
    c = Client(URL, proxy="hdfs", session=session(cert=ALICE))
    with pytest.raises(HdfsError, match="alice is not allowed to impersonate hdfs"):
        c.makedirs("/not-for-alice")
    with pytest.raises(HdfsError, match="alice is not allowed to impersonate hdfs"):
        c.write("/not-for-alice.bin", b"x")
    plain = Client(URL, session=session(cert=True))
    assert plain.status("/not-for-alice", strict=False) is None
    assert plain.status("/not-for-alice.bin", strict=False) is None
