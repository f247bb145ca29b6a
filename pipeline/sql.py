"""SQL over the lake: the tables analysts query, on DuckDB here and on Athena in AWS.

``TABLES`` and ``VIEWS`` are the one definition. ``connect`` builds DuckDB views from them over
the local folder or the bucket (httpfs); ``glue_resources`` renders them as the Glue tables
of deploy/cloudformation.yaml, which a test holds equal. The views' SQL and
``EXAMPLE_QUERIES`` are written in the dialect both engines accept (no QUALIFY, no
engine-only functions), so a query runs unchanged on either.
"""

from __future__ import annotations

import base64
import csv
import decimal
import io
import json
import math
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import duckdb

from data_access import layout
from data_access.queries import app_names
from data_access.settings import DataSettings
from data_access.stores import Stores

# Hive type (as Glue stores it) -> DuckDB type and Trino type (for a Presto view's columns).
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "double": "DOUBLE",
    "tinyint": "TINYINT",
    "smallint": "SMALLINT",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "timestamp": "TIMESTAMP",
    "array<string>": "VARCHAR[]",
}
TRINO_TYPES = {
    "string": "varchar",
    "double": "double",
    "tinyint": "tinyint",
    "smallint": "smallint",
    "int": "integer",
    "bigint": "bigint",
    "timestamp": "timestamp(3)",
    "array<string>": "array(varchar)",
}
# Buckets of processed screen time (layout.SCREEN_TIME_BUCKETS; a test holds them equal).
SCREEN_TIME_BUCKETS = 16
# The app dimension, exported from the record store so both engines can join it.
APPS_KEY = "dimensions/apps.parquet"
# Partition projection enumerates dates from here: no crawler, no ALTER TABLE ADD PARTITION.
FIRST_DATE = "2020-01-01"

PARQUET_FORMAT = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    },
}
# Ion's reader takes pretty-printed JSON (the reason documents span lines); JSON SerDes do not.
ION_FORMAT = {
    "InputFormat": "com.amazon.ionhiveserde.formats.IonInputFormat",
    "OutputFormat": "com.amazon.ionhiveserde.formats.IonOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "com.amazon.ionhiveserde.IonHiveSerDe"},
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a Hive type, a key of DUCKDB_TYPES


@dataclass(frozen=True)
class PartitionKey:
    column: Column
    projection: tuple[tuple[str, str], ...]  # Athena's projection.<name>.* properties


DATE = PartitionKey(
    Column("date", "string"),
    (
        ("type", "date"),
        ("format", "yyyy-MM-dd"),
        ("range", f"{FIRST_DATE},NOW"),
        ("interval", "1"),
        ("interval.unit", "DAYS"),
    ),
)
HOUR = PartitionKey(
    Column("hour", "int"), (("type", "integer"), ("range", "0,23"), ("digits", "2"))
)
BUCKET = PartitionKey(
    Column("bucket", "int"),
    (("type", "integer"), ("range", f"0,{SCREEN_TIME_BUCKETS - 1}"), ("digits", "2")),
)


@dataclass(frozen=True)
class LakeTable:
    name: str
    description: str
    prefix: str  # the table's location in the lake
    columns: tuple[Column, ...]
    partitions: tuple[PartitionKey, ...] = ()
    files: str = "part.parquet"  # the data files' names below the partition folders (a glob)
    format: Literal["parquet", "ion"] = "parquet"

    @property
    def glob(self) -> str:
        folders = "".join(f"{p.column.name}=*/" for p in self.partitions)
        return f"{self.prefix}{folders}{self.files}"

    @property
    def all_columns(self) -> tuple[Column, ...]:
        return (*self.columns, *(p.column for p in self.partitions))


@dataclass(frozen=True)
class LakeView:
    name: str
    description: str
    columns: tuple[Column, ...]
    sql: str


def _columns(*pairs: str) -> tuple[Column, ...]:
    """``"name type"`` strings -> columns."""
    return tuple(Column(*pair.split(" ", 1)) for pair in pairs)


_EVENT_COMMON = ("event_id string", "event_type string", "ts timestamp", "user_id string")
_EVENT_COLUMNS = {
    "pageview": _columns(*_EVENT_COMMON, "session_id string", "page string", "referrer string"),
    "purchase": _columns(
        *_EVENT_COMMON,
        "session_id string",
        "order_id string",
        "product_id string",
        "product_name string",
        "category string",
        "quantity int",
        "unit_price double",
        "amount double",
        "currency string",
    ),
    "custom": _columns(*_EVENT_COMMON, "session_id string", "name string", "properties string"),
}
SCREEN_TIME_COLUMNS = _columns(
    "customer_id string",
    "content_hash string",
    "uploaded_at double",
    "hour tinyint",
    "app_id string",
    "seconds int",
    "sessions smallint",
    "pickups smallint",
    "notifications smallint",
)

TABLES: tuple[LakeTable, ...] = (
    LakeTable(
        "screen_time_parts",
        "Processed screen time per customer, local hour (0-47) and app; every stored version",
        layout.PROCESSED_SCREEN_TIME,
        SCREEN_TIME_COLUMNS,
        (DATE, BUCKET),
        files="part-*.parquet",
    ),
    *(
        LakeTable(
            f"events_{event_type}",
            f"{event_type.capitalize()} events, by the UTC hour their batch arrived in",
            f"{layout.PROCESSED_EVENTS}{event_type}/",
            columns,
            (DATE, HOUR),
        )
        for event_type, columns in _EVENT_COLUMNS.items()
    ),
    LakeTable(
        "metrics",
        "Host metrics samples",
        layout.PROCESSED_METRICS,
        _columns("ts timestamp", "host string", "metric string", "value double"),
        (DATE, HOUR),
    ),
    LakeTable(
        "screen_time_summary",
        "Fleet screen time per calendar day: dim day (key ''), app (key app_id), hour (key HH)",
        layout.ROLLUP_SCREEN_TIME,
        _columns(
            "dim string",
            "key string",
            "seconds bigint",
            "sessions bigint",
            "pickups bigint",
            "notifications bigint",
            "customers bigint",
            "uploads bigint",
        ),
        (DATE,),
        files="summary.parquet",
    ),
    LakeTable(
        "business_stats",
        "Shop totals per day",
        layout.ROLLUP_BUSINESS,
        _columns(
            "day string",
            "revenue double",
            "orders bigint",
            "visitors bigint",
            "buyers bigint",
            "dau bigint",
            "pageviews bigint",
        ),
        (DATE,),
        files="stats.parquet",
    ),
    LakeTable(
        "business_products",
        "Revenue, orders and quantity per product per day",
        layout.ROLLUP_BUSINESS,
        _columns(
            "day string",
            "product_id string",
            "product_name string",
            "category string",
            "revenue double",
            "orders bigint",
            "quantity bigint",
        ),
        (DATE,),
        files="products.parquet",
    ),
    LakeTable(
        "business_users",
        "Active shop users per day",
        layout.ROLLUP_BUSINESS,
        _columns("user_id string"),
        (DATE,),
        files="users.parquet",
    ),
    LakeTable(
        "quarantine",
        "Why each quarantined screen-time upload was refused (its reason document)",
        layout.QUARANTINE_SCREEN_TIME,
        _columns(
            "raw_key string",
            "content_hash string",
            "codes array<string>",
            "problem_count int",
            "raw_bytes bigint",
            "quarantined_at string",
        ),
        files="*.reason.json",
        format="ion",
    ),
    LakeTable(
        "apps",
        "The app dimension: name and category of every app seen in an upload",
        APPS_KEY.rsplit("/", 1)[0] + "/",
        _columns("app_id string", "app_name string", "category string"),
        files=APPS_KEY.rsplit("/", 1)[1],
    ),
)

_SCREEN_TIME_NAMES = ", ".join([*(c.name for c in SCREEN_TIME_COLUMNS), '"date"'])
VIEWS: tuple[LakeView, ...] = (
    LakeView(
        "screen_time",
        "Processed screen time: only the latest version of each customer-day",
        (*SCREEN_TIME_COLUMNS, DATE.column),
        # Until compaction a replaced customer-day can still have its old rows in an older
        # part: keep the rows of the greatest uploaded_at per (customer_id, date).
        f"SELECT {_SCREEN_TIME_NAMES} FROM ("
        f"SELECT {_SCREEN_TIME_NAMES}, max(uploaded_at) OVER "
        '(PARTITION BY customer_id, "date") AS latest_uploaded_at '
        "FROM screen_time_parts) AS versions WHERE uploaded_at = latest_uploaded_at",
    ),
)

_LAST_WEEK = "CAST(CAST(current_date - INTERVAL '7' DAY AS date) AS varchar)"
_TWO_WEEKS = "CAST(CAST(current_date - INTERVAL '14' DAY AS date) AS varchar)"
EXAMPLE_QUERIES: dict[str, str] = {
    "Top three Games apps by local hour of day, last 7 days": f"""
SELECT hour_of_day, app_name, seconds
FROM (
  SELECT hour_of_day, app_name, seconds,
         row_number() OVER (PARTITION BY hour_of_day ORDER BY seconds DESC, app_name) AS place
  FROM (
    SELECT CAST(s.hour % 24 AS integer) AS hour_of_day, a.app_name, sum(s.seconds) AS seconds
    FROM screen_time AS s JOIN apps AS a ON a.app_id = s.app_id
    WHERE a.category = 'Games' AND s."date" > {_LAST_WEEK}
    GROUP BY 1, 2
  ) AS by_hour
) AS ranked
WHERE place <= 3
ORDER BY hour_of_day, place""",
    "Customers whose screen time rose 50% or more week over week": f"""
SELECT customer_id, last_week, this_week,
       round(100 * (CAST(this_week AS double) / last_week - 1), 1) AS rise_percent
FROM (
  SELECT customer_id,
         sum(CASE WHEN "date" <= {_LAST_WEEK} THEN seconds ELSE 0 END) AS last_week,
         sum(CASE WHEN "date" > {_LAST_WEEK} THEN seconds ELSE 0 END) AS this_week
  FROM screen_time
  WHERE "date" > {_TWO_WEEKS}
  GROUP BY customer_id
) AS weekly
WHERE last_week > 0 AND this_week >= 1.5 * last_week
ORDER BY rise_percent DESC, customer_id""",
    "Revenue by product and UTC hour, last 7 days": f"""
SELECT product_id, product_name, "hour", round(sum(amount), 2) AS revenue,
       count(DISTINCT order_id) AS orders
FROM events_purchase
WHERE "date" > {_LAST_WEEK}
GROUP BY product_id, product_name, "hour"
ORDER BY product_id, "hour\"""",
    "Pipeline lag: hours from the end of a customer's day to its upload being processed, "
    "by UTC hour of processing": f"""
SELECT CAST(floor(uploaded_at / 3600) AS bigint) % 24 AS processed_hour,
       count(*) AS customer_days,
       round(avg(lag_seconds) / 3600, 2) AS avg_lag_hours,
       round(max(lag_seconds) / 3600, 2) AS max_lag_hours
FROM (
  SELECT DISTINCT customer_id, "date", uploaded_at,
         uploaded_at - 86400.0 * (date_diff('day', DATE '1970-01-01', CAST("date" AS date)) + 1)
           AS lag_seconds
  FROM screen_time
  WHERE "date" > {_LAST_WEEK}
) AS customer_days
GROUP BY 1
ORDER BY 1""",
    "Quarantine reasons by day": """
SELECT substr(quarantined_at, 1, 10) AS quarantined_on, code, count(*) AS uploads
FROM quarantine CROSS JOIN UNNEST(codes) AS reason(code)
GROUP BY 1, 2
ORDER BY 1, 3 DESC, 2""",
}


class SqlError(Exception):
    """A query the engine refused: bad SQL, an unknown table or column."""


# ---- the app dimension ------------------------------------------------------------------------


def export_app_dimension(stores: Stores) -> bool:
    """Write the app dimension to the lake when it changed; True when it was written.

    Compared first so an unchanged dimension adds no object version to the bucket.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = app_names(stores).sort_values("app_id").reset_index(drop=True)
    table = pa.Table.from_pandas(frame, preserve_index=False).cast(
        pa.schema([(name, pa.string()) for name in frame.columns])
    )
    current = stores.lake.read_tables([APPS_KEY])[0]
    if current is not None and current.equals(table):
        return False
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    stores.lake.write_bytes(APPS_KEY, sink.getvalue())
    return True


# ---- DuckDB -----------------------------------------------------------------------------------


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _httpfs_path() -> pathlib.Path:
    import duckdb_extension_httpfs

    package = pathlib.Path(duckdb_extension_httpfs.__file__).parent
    return package / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"


def lake_root(settings: DataSettings) -> str:
    """Where DuckDB finds the lake: the local folder, or the bucket as an s3:// URL."""
    if settings.backend == "aws":
        return f"s3://{settings.s3_bucket}/"
    return settings.lake_root.resolve().as_posix() + "/"


def _s3_secret(settings: DataSettings) -> str:
    import boto3

    session = boto3.Session(region_name=settings.aws_region)
    credentials = session.get_credentials()
    options = {"TYPE": "s3", "REGION": settings.aws_region}
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        options |= {"KEY_ID": frozen.access_key, "SECRET": frozen.secret_key}
        if frozen.token:
            options["SESSION_TOKEN"] = frozen.token
    body = ", ".join(f"{name} {_quote(value)}" for name, value in options.items())
    if settings.s3_endpoint:
        scheme, _, host = settings.s3_endpoint.partition("://")
        # A custom endpoint (the tests' S3 server) speaks path-style URLs, often plain HTTP.
        endpoint = host.rstrip("/") if host else scheme
        use_ssl = "false" if scheme == "http" else "true"
        body += f", ENDPOINT {_quote(endpoint)}, URL_STYLE 'path', USE_SSL {use_ssl}"
    return f"CREATE SECRET lake ({body})"


def _select_list(columns: Sequence[Column]) -> str:
    return ", ".join(f'CAST("{c.name}" AS {DUCKDB_TYPES[c.type]}) AS "{c.name}"' for c in columns)


def _reader(table: LakeTable, root: str) -> str:
    files = _quote(root + table.glob)
    if table.format == "ion":
        typed = ", ".join(
            f"{_quote(c.name)}: {_quote(DUCKDB_TYPES[c.type])}" for c in table.columns
        )
        return f"read_json({files}, columns = {{{typed}}}, format = 'auto')"
    if not table.partitions:
        return f"read_parquet({files}, union_by_name = true)"
    types = ", ".join(
        f"{_quote(p.column.name)}: {DUCKDB_TYPES[p.column.type]}" for p in table.partitions
    )
    return (
        f"read_parquet({files}, hive_partitioning = true, hive_types = {{{types}}}, "
        "union_by_name = true)"
    )


def table_view_sql(table: LakeTable, root: str, *, has_files: bool) -> str:
    """The DuckDB view of one lake table; typed and empty when no file matches yet."""
    if not has_files:
        empty = ", ".join(
            f'CAST(NULL AS {DUCKDB_TYPES[c.type]}) AS "{c.name}"' for c in table.all_columns
        )
        return f"CREATE VIEW {table.name} AS SELECT {empty} WHERE false"
    return (
        f"CREATE VIEW {table.name} AS SELECT {_select_list(table.all_columns)} "
        f"FROM {_reader(table, root)}"
    )


def connect(settings: DataSettings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with every lake table and view defined over the backend's lake."""
    connection = duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    # Timestamps come out as UTC wall time, as Athena shows them.
    connection.execute("SET TimeZone = 'UTC'")
    if settings.backend == "aws":
        connection.execute(f"LOAD {_quote(str(_httpfs_path()))}")
        connection.execute(_s3_secret(settings))
    root = lake_root(settings)
    for table in TABLES:
        [(found,)] = connection.execute(
            "SELECT count(*) FROM glob(?)", [root + table.glob]
        ).fetchall()
        connection.execute(table_view_sql(table, root, has_files=found > 0))
    for view in VIEWS:
        connection.execute(f"CREATE VIEW {view.name} AS {view.sql}")
    return connection


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def run_query(connection: duckdb.DuckDBPyConnection, query: str) -> QueryResult:
    try:
        cursor = connection.execute(query)
        rows = cursor.fetchall()
    except duckdb.Error as exc:
        raise SqlError(str(exc).strip()) from exc
    columns = [d[0] for d in cursor.description] if cursor.description else []
    return QueryResult(columns, rows)


# ---- output -----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A value JSON and CSV can hold."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float | decimal.Decimal):
        # SQL decimals (2.5 is one) print as numbers, in JSON too.
        return None if math.isnan(value) else float(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    return json.dumps(value) if isinstance(value, list) else str(value)


def format_result(result: QueryResult, output: Literal["table", "csv", "json"]) -> str:
    rows = [[_plain(v) for v in row] for row in result.rows]
    if output == "json":
        return json.dumps([dict(zip(result.columns, row, strict=True)) for row in rows], indent=2)
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([[_cell(v) if v is not None else "" for v in row] for row in rows])
        return buffer.getvalue().rstrip("\n")
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [
        max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(result.columns)
    ]
    # Numbers align right, text left, as a reader scans them.
    numeric = [
        all(isinstance(row[i], int | float) for row in rows if row[i] is not None)
        for i in range(len(result.columns))
    ]

    def line(values: list[str]) -> str:
        return "  ".join(
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ).rstrip()

    out = [line(result.columns), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


# ---- Athena -----------------------------------------------------------------------------------


def _resource_name(name: str) -> str:
    return "LakeTable" + "".join(part.capitalize() for part in name.split("_"))


def presto_view_text(view: LakeView, database: str) -> str:
    """The JSON Athena keeps (base64) in a Glue view's ViewOriginalText."""
    document = {
        "originalSql": view.sql,
        "catalog": "awsdatacatalog",
        "schema": database,
        "columns": [{"name": c.name, "type": TRINO_TYPES[c.type]} for c in view.columns],
    }
    return json.dumps(document, separators=(",", ":"))


def glue_resources() -> dict[str, dict[str, Any]]:
    """The Glue tables and views of the stack, as CloudFormation resources (long-form
    intrinsics, as cfn-lint's loader reads the template)."""
    resources: dict[str, dict[str, Any]] = {}
    database = {"Ref": "LakeDatabase"}
    for table in TABLES:
        parameters = {"classification": "parquet" if table.format == "parquet" else "ion"}
        if table.partitions:
            parameters["projection.enabled"] = "true"
            for partition in table.partitions:
                for name, value in partition.projection:
                    parameters[f"projection.{partition.column.name}.{name}"] = value
        file_format = PARQUET_FORMAT if table.format == "parquet" else ION_FORMAT
        table_input: dict[str, Any] = {
            "Name": table.name,
            "Description": table.description,
            "TableType": "EXTERNAL_TABLE",
            "Parameters": parameters,
            "StorageDescriptor": {
                "Location": {"Fn::Sub": f"s3://${{LakeBucket}}/{table.prefix}"},
                "Columns": [{"Name": c.name, "Type": c.type} for c in table.columns],
                **file_format,
            },
        }
        if table.partitions:
            table_input["PartitionKeys"] = [
                {"Name": p.column.name, "Type": p.column.type} for p in table.partitions
            ]
        resources[_resource_name(table.name)] = {
            "Type": "AWS::Glue::Table",
            "Properties": {
                "CatalogId": {"Ref": "AWS::AccountId"},
                "DatabaseName": database,
                "TableInput": table_input,
            },
        }
    for view in VIEWS:
        # Fn::Sub puts the database's name into the view's JSON before it is encoded.
        text = presto_view_text(view, "${LakeDatabase}")
        resources[_resource_name(view.name)] = {
            "Type": "AWS::Glue::Table",
            "Properties": {
                "CatalogId": {"Ref": "AWS::AccountId"},
                "DatabaseName": database,
                "TableInput": {
                    "Name": view.name,
                    "Description": view.description,
                    "TableType": "VIRTUAL_VIEW",
                    "Parameters": {"presto_view": "true", "comment": "Presto View"},
                    "ViewOriginalText": {
                        "Fn::Join": [
                            "",
                            ["/* Presto View: ", {"Fn::Base64": {"Fn::Sub": text}}, " */"],
                        ]
                    },
                    "ViewExpandedText": "/* Presto View */",
                    "StorageDescriptor": {
                        "Columns": [{"Name": c.name, "Type": c.type} for c in view.columns],
                        "SerdeInfo": {},
                    },
                },
            },
        }
    return resources


def athena_view_ddl(database: str) -> str:
    """CREATE OR REPLACE VIEW statements, for a database made without the stack."""
    return "\n".join(
        f'CREATE OR REPLACE VIEW "{database}"."{view.name}" AS\n{view.sql};' for view in VIEWS
    )


def decode_presto_view(original_text: str) -> dict[str, Any]:
    """The JSON inside a ``/* Presto View: <base64> */`` text."""
    encoded = original_text.removeprefix("/* Presto View: ").removesuffix(" */")
    return json.loads(base64.b64decode(encoded))
