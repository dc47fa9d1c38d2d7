"""Spark (PyPI's pyspark, local mode, Debian's Java) reading and writing
hdfs:// paths on a Granary cluster, with no plugin: the Hadoop client jars
pyspark bundles speak HDFS's RPC and DataTransferProtocol to Granary.

Run by crates/granary-testkit/tests/suite/hdfs_compat.rs (GRANARY_NN_RPC).
"""

import os

import pytest
from hdfs_native import Client

NN = os.environ["GRANARY_NN_RPC"]
URL = f"hdfs://{NN}"


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    s = (
        SparkSession.builder.master("local[2]")
        .appName("granary-hdfs-compat")
        .config("spark.hadoop.fs.defaultFS", URL)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    yield s
    s.stop()


def test_spark_reads_csv_and_writes_parquet_on_hdfs(spark):
    fs = Client(URL)
    fs.mkdirs("/spark/in", create_parent=True)
    rows = [f"{i},name-{i},{i * 0.5}" for i in range(20_000)]
    with fs.create("/spark/in/data.csv") as w:
        w.write(("id,name,score\n" + "\n".join(rows) + "\n").encode())
    df = spark.read.option("header", True).option("inferSchema", True).csv(f"{URL}/spark/in")
    assert df.count() == 20_000
    df.write.mode("overwrite").parquet(f"{URL}/spark/out")
    back = spark.read.parquet(f"{URL}/spark/out")
    assert back.count() == 20_000
    assert back.agg({"id": "sum"}).collect()[0][0] == sum(range(20_000))
    names = [s.path.rsplit("/", 1)[-1] for s in fs.list_status("/spark/out")]
    assert "_SUCCESS" in names and any(n.endswith(".parquet") for n in names), names
    assert not any(n.startswith("_temporary") for n in names), names
