"""What the AWS stores do beyond the shared contract: presigned uploads, the pyarrow
filesystem, DynamoDB's item limits."""

from __future__ import annotations

import os
import urllib.request

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_access import aws
from data_access.stores import Stores

pytestmark = pytest.mark.aws


def test_presigned_put_uploads_an_object(aws_stores: Stores) -> None:
    lake = aws_stores.lake
    url = lake.presign_put("raw/screen_time/c1/2024-05-01.json", expires=60)  # type: ignore[attr-defined]
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url  # SigV4: S3 refuses SigV2 in new regions
    body = b'{"customerId": "c1", "date": "2024-05-01"}'
    request = urllib.request.Request(
        url, data=body, method="PUT", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    assert lake.read_bytes("raw/screen_time/c1/2024-05-01.json") == body


def test_presigned_put_with_content_type_refuses_another_type(aws_stores: Stores) -> None:
    lake = aws_stores.lake
    url = lake.presign_put("raw/x.json", expires=60, content_type="application/json")  # type: ignore[attr-defined]
    request = urllib.request.Request(
        url, data=b"{}", method="PUT", headers={"Content-Type": "text/plain"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    assert not lake.exists("raw/x.json")


def test_pyarrow_filesystem_reaches_the_configured_endpoint(aws_stores: Stores) -> None:
    lake = aws_stores.lake
    key = "rollups/screen_time/date=2024-05-01/customers.parquet"
    written = lake.write_table(key, pa.table({"minutes": [5, 7]}))
    path = f"{lake.bucket}/{key}"  # type: ignore[attr-defined]
    filesystem = lake.filesystem  # type: ignore[attr-defined]
    assert filesystem.get_file_info(path).size == written
    read = pq.read_table(path, filesystem=filesystem)
    assert read.column("minutes").to_pylist() == [5, 7]


def test_cache_value_too_large_for_dynamodb_is_skipped_and_counted(aws_stores: Stores) -> None:
    cache = aws_stores.cache
    incompressible = os.urandom(aws.MAX_CACHE_BODY_BYTES + 1024)
    before = cache.oversize_skipped  # type: ignore[attr-defined]
    cache.put("big", incompressible, ttl_seconds=60)  # must not raise
    assert cache.get("big") is None
    assert cache.oversize_skipped == before + 1  # type: ignore[attr-defined]
    fits = os.urandom(aws.MAX_CACHE_BODY_BYTES - 4096)
    cache.put("fits", fits, ttl_seconds=60)
    assert cache.get("fits") == fits


def test_cache_keys_longer_than_a_partition_key_allows(aws_stores: Stores) -> None:
    cache = aws_stores.cache
    long_key = "screen_time:" + ",".join(f"customer-{n}" for n in range(400))
    assert len(long_key.encode()) > 2048
    cache.put(long_key, b"value", ttl_seconds=60)
    assert cache.get(long_key) == b"value"
    assert cache.get(long_key + ",customer-400") is None


def test_item_whose_ttl_passed_is_a_miss_before_dynamodb_sweeps_it(aws_stores: Stores) -> None:
    cache = aws_stores.cache
    cache.put("kpi:orders", b"12", ttl_seconds=-5)  # written already expired
    item = cache.client.get_item(  # type: ignore[attr-defined]
        TableName=cache.table_name,  # type: ignore[attr-defined]
        Key={"pk": {"S": "kpi:orders"}},
    )
    assert "Item" in item  # still stored: DynamoDB Local has not swept it
    assert cache.get("kpi:orders") is None
