//! The Arrow schema of a capture and the conversion between [`Frame`]s and record batches.
//!
//! Low-cardinality text columns (session, direction, transport, kind, method) are dictionary-encoded so that a
//! million-frame capture stores each method name once per batch. Readers accept the plain string forms too, since
//! a capture rewritten by another tool (DuckDB `COPY`, pyarrow) may have lost the dictionary.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{
    BinaryBuilder, Int32Builder, ListBuilder, StringBuilder, StructBuilder, UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampNanosecondType, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, DictionaryArray, Int32Array, RecordBatch, StringArray, StructArray};
use arrow_buffer::NullBufferBuilder;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;

use crate::frame::{Direction, Frame, HttpMeta, Kind, Transport};

/// Version of the capture schema; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Column names, in schema order.
pub mod col {
    pub const SESSION_ID: &str = "session_id";
    pub const STREAM_ID: &str = "stream_id";
    pub const SEQ: &str = "seq";
    pub const TS: &str = "ts";
    pub const T_NS: &str = "t_ns";
    pub const DIRECTION: &str = "direction";
    pub const TRANSPORT: &str = "transport";
    pub const KIND: &str = "kind";
    pub const METHOD: &str = "method";
    pub const RPC_ID: &str = "rpc_id";
    pub const LATENCY_NS: &str = "latency_ns";
    pub const ERROR_CODE: &str = "error_code";
    pub const PAYLOAD: &str = "payload";
    pub const HTTP: &str = "http";
    pub const MCP_SESSION: &str = "mcp_session";
    pub const PROTOCOL_VERSION: &str = "protocol_version";
}

fn dict() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

fn header_fields() -> Fields {
    Fields::from(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
    ])
}

fn headers_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Struct(header_fields()), false))
}

fn http_fields() -> Fields {
    Fields::from(vec![
        Field::new("method", DataType::Utf8, true),
        Field::new("path", DataType::Utf8, true),
        Field::new("status", DataType::UInt16, true),
        Field::new("content_type", DataType::Utf8, true),
        Field::new("sse_event_id", DataType::Utf8, true),
        Field::new("headers", DataType::List(headers_item()), true),
    ])
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(col::SESSION_ID, dict(), false),
        Field::new(col::STREAM_ID, DataType::UInt32, false),
        Field::new(col::SEQ, DataType::UInt64, false),
        Field::new(
            col::TS,
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new(col::T_NS, DataType::UInt64, false),
        Field::new(col::DIRECTION, dict(), false),
        Field::new(col::TRANSPORT, dict(), false),
        Field::new(col::KIND, dict(), false),
        Field::new(col::METHOD, dict(), true),
        Field::new(col::RPC_ID, DataType::Utf8, true),
        Field::new(col::LATENCY_NS, DataType::UInt64, true),
        Field::new(col::ERROR_CODE, DataType::Int32, true),
        Field::new(col::PAYLOAD, DataType::Binary, false),
        Field::new(col::HTTP, DataType::Struct(http_fields()), true),
        Field::new(col::MCP_SESSION, DataType::Utf8, true),
        Field::new(col::PROTOCOL_VERSION, DataType::Utf8, true),
    ]))
});

/// The capture schema (without file metadata).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Builds one record batch from frames.
pub fn to_batch(frames: &[Frame]) -> RecordBatch {
    to_batch_with(frames, || {})
}

/// Rows [`to_batch_with`] builds between two calls of its `between`.
pub const ROWS_BETWEEN: usize = 32;

/// [`to_batch`], calling `between` after every [`ROWS_BETWEEN`] rows: the tap's writer yields its CPU there, so that
/// building a batch is not one long stretch that a woken thread of the traffic waits behind.
pub fn to_batch_with(frames: &[Frame], mut between: impl FnMut()) -> RecordBatch {
    let n = frames.len();
    let mut session = Dict::with_capacity(n);
    let mut stream = UInt32Builder::with_capacity(n);
    let mut seq = UInt64Builder::with_capacity(n);
    let mut ts = Vec::with_capacity(n);
    let mut t_ns = UInt64Builder::with_capacity(n);
    let mut direction = EnumDict::with_capacity(n);
    let mut transport = EnumDict::with_capacity(n);
    let mut kind = EnumDict::with_capacity(n);
    let mut method = Dict::with_capacity(n);
    let mut rpc_id = StringBuilder::new();
    let mut latency = UInt64Builder::with_capacity(n);
    let mut error_code = Int32Builder::with_capacity(n);
    let payload_bytes = frames.iter().map(|f| f.payload.len()).sum();
    let mut payload = BinaryBuilder::with_capacity(n, payload_bytes);
    // stdio frames have no HTTP facts: an all-null column is built whole instead of row by row.
    let mut http = frames.iter().any(|f| f.http.is_some()).then(http_builder);
    let mut mcp_session = StringBuilder::new();
    let mut version = StringBuilder::new();

    for (i, f) in frames.iter().enumerate() {
        if i > 0 && i % ROWS_BETWEEN == 0 {
            between();
        }
        session.append(Some(&f.session_id));
        stream.append_value(f.stream_id);
        seq.append_value(f.seq);
        ts.push(f.ts_ns);
        t_ns.append_value(f.t_ns);
        direction.append(f.direction as usize, f.direction.as_str());
        transport.append(f.transport as usize, f.transport.as_str());
        kind.append(f.kind as usize, f.kind.as_str());
        method.append(f.method.as_deref());
        rpc_id.append_option(f.rpc_id.as_deref());
        latency.append_option(f.latency_ns);
        error_code.append_option(f.error_code);
        payload.append_value(&f.payload);
        if let Some(http) = &mut http {
            append_http(http, f.http.as_ref());
        }
        mcp_session.append_option(f.mcp_session.as_deref());
        version.append_option(f.protocol_version.as_deref());
    }

    let ts = arrow_array::TimestampNanosecondArray::from(ts).with_timezone("UTC");
    let http: ArrayRef = match &mut http {
        Some(b) => Arc::new(b.finish()),
        None => Arc::new(StructArray::new_null(http_fields(), n)),
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(session.finish()),
        Arc::new(stream.finish()),
        Arc::new(seq.finish()),
        Arc::new(ts),
        Arc::new(t_ns.finish()),
        Arc::new(direction.finish()),
        Arc::new(transport.finish()),
        Arc::new(kind.finish()),
        Arc::new(method.finish()),
        Arc::new(rpc_id.finish()),
        Arc::new(latency.finish()),
        Arc::new(error_code.finish()),
        Arc::new(payload.finish()),
        http,
        Arc::new(mcp_session.finish()),
        Arc::new(version.finish()),
    ];
    // The builders above produce exactly the schema's types, so this cannot fail.
    RecordBatch::try_new(schema(), columns).expect("frame columns match the capture schema")
}

/// A dictionary-encoded text column, built as `StringDictionaryBuilder` builds one (the same keys, values in
/// order of first appearance, a null buffer only when there is a null) at less cost per row: a value equal to
/// the previous row's (the session, almost always) costs one comparison, a few distinct values (methods) a short
/// search, and only a column with many distinct values hashes.
struct Dict<'a> {
    keys: Vec<i32>,
    nulls: NullBufferBuilder,
    values: Vec<&'a str>,
    /// Built once `values` outgrows a linear search.
    index: HashMap<&'a str, i32>,
    last: Option<(&'a str, i32)>,
}

/// Distinct values of a [`Dict`] searched linearly before it builds a hash index.
const DICT_LINEAR: usize = 16;

impl<'a> Dict<'a> {
    fn with_capacity(n: usize) -> Self {
        Dict {
            keys: Vec::with_capacity(n),
            nulls: NullBufferBuilder::new(n),
            values: Vec::new(),
            index: HashMap::new(),
            last: None,
        }
    }

    fn append(&mut self, value: Option<&'a str>) {
        let Some(value) = value else {
            self.keys.push(0);
            self.nulls.append_null();
            return;
        };
        let key = match self.last {
            Some((last, key)) if last == value => key,
            _ => {
                let key = self.key_of(value);
                self.last = Some((value, key));
                key
            }
        };
        self.keys.push(key);
        self.nulls.append_non_null();
    }

    fn key_of(&mut self, value: &'a str) -> i32 {
        let next = i32::try_from(self.values.len()).expect("fewer than 2^31 distinct values in a batch");
        if self.values.len() <= DICT_LINEAR {
            if let Some(k) = self.values.iter().position(|&v| v == value) {
                return k as i32;
            }
            self.values.push(value);
            if self.values.len() > DICT_LINEAR {
                self.index = self.values.iter().enumerate().map(|(k, &v)| (v, k as i32)).collect();
            }
            return next;
        }
        let values = &mut self.values;
        *self.index.entry(value).or_insert_with(|| {
            values.push(value);
            next
        })
    }

    fn finish(mut self) -> DictionaryArray<Int32Type> {
        let keys = Int32Array::new(self.keys.into(), self.nulls.finish());
        DictionaryArray::new(keys, Arc::new(StringArray::from(self.values)))
    }
}

/// A dictionary column of an enum's names (direction, transport, kind): keyed by the variant, no text compared.
struct EnumDict {
    keys: Vec<i32>,
    key_of: [Option<i32>; 8],
    values: Vec<&'static str>,
}

impl EnumDict {
    fn with_capacity(n: usize) -> Self {
        EnumDict {
            keys: Vec::with_capacity(n),
            key_of: [None; 8],
            values: Vec::new(),
        }
    }

    /// Appends variant number `variant` (below 8), whose name is `name`.
    fn append(&mut self, variant: usize, name: &'static str) {
        let key = *self.key_of[variant].get_or_insert_with(|| {
            self.values.push(name);
            self.values.len() as i32 - 1
        });
        self.keys.push(key);
    }

    fn finish(self) -> DictionaryArray<Int32Type> {
        DictionaryArray::new(Int32Array::from(self.keys), Arc::new(StringArray::from(self.values)))
    }
}

fn http_builder() -> StructBuilder {
    let headers = ListBuilder::new(StructBuilder::from_fields(header_fields(), 0)).with_field(headers_item());
    StructBuilder::new(
        http_fields(),
        vec![
            Box::new(StringBuilder::new()),
            Box::new(StringBuilder::new()),
            Box::new(UInt16Builder::new()),
            Box::new(StringBuilder::new()),
            Box::new(StringBuilder::new()),
            Box::new(headers),
        ],
    )
}

fn append_http(b: &mut StructBuilder, http: Option<&HttpMeta>) {
    let empty = HttpMeta::default();
    let h = http.unwrap_or(&empty);
    let text = |b: &mut StructBuilder, i: usize, v: Option<&str>| {
        b.field_builder::<StringBuilder>(i)
            .expect("http text field")
            .append_option(v);
    };
    text(b, 0, h.method.as_deref());
    text(b, 1, h.path.as_deref());
    b.field_builder::<UInt16Builder>(2)
        .expect("http status field")
        .append_option(h.status);
    text(b, 3, h.content_type.as_deref());
    text(b, 4, h.sse_event_id.as_deref());
    let list = b
        .field_builder::<ListBuilder<StructBuilder>>(5)
        .expect("http headers field");
    if http.is_some() {
        let items = list.values();
        for (name, value) in &h.headers {
            items
                .field_builder::<StringBuilder>(0)
                .expect("header name")
                .append_value(name);
            items
                .field_builder::<StringBuilder>(1)
                .expect("header value")
                .append_value(value);
            items.append(true);
        }
        list.append(true);
    } else {
        list.append(false);
    }
    b.append(http.is_some());
}

/// Why a batch could not be read as frames: the column and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column `{column}`: {reason}")]
pub struct ColumnError {
    /// The column name.
    pub column: String,
    /// What was wrong.
    pub reason: String,
}

fn col_err(column: &str, reason: impl Into<String>) -> ColumnError {
    ColumnError {
        column: column.to_string(),
        reason: reason.into(),
    }
}

/// A text column in any of the encodings a reader may meet.
enum Text<'a> {
    Plain(&'a arrow_array::StringArray),
    Large(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
    Dict(
        &'a arrow_array::DictionaryArray<Int32Type>,
        &'a arrow_array::StringArray,
    ),
}

impl<'a> Text<'a> {
    fn new(batch: &'a RecordBatch, name: &str) -> Result<Option<Self>, ColumnError> {
        let Some(a) = batch.column_by_name(name) else {
            return Ok(None);
        };
        Ok(Some(Self::of(a.as_ref(), name)?))
    }

    fn of(a: &'a dyn Array, name: &str) -> Result<Self, ColumnError> {
        match a.data_type() {
            DataType::Utf8 => Ok(Text::Plain(a.as_string::<i32>())),
            DataType::LargeUtf8 => Ok(Text::Large(a.as_string::<i64>())),
            DataType::Utf8View => Ok(Text::View(a.as_string_view())),
            DataType::Dictionary(k, v) if **k == DataType::Int32 && **v == DataType::Utf8 => {
                let d = a.as_dictionary::<Int32Type>();
                Ok(Text::Dict(d, d.values().as_string::<i32>()))
            }
            other => Err(col_err(name, format!("expected text, found {other}"))),
        }
    }

    fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            Text::Plain(a) => a.is_valid(i).then(|| a.value(i)),
            Text::Large(a) => a.is_valid(i).then(|| a.value(i)),
            Text::View(a) => a.is_valid(i).then(|| a.value(i)),
            Text::Dict(d, values) => {
                if d.is_valid(i) {
                    let k = d.keys().value(i);
                    usize::try_from(k)
                        .ok()
                        .filter(|&k| k < values.len())
                        .map(|k| values.value(k))
                } else {
                    None
                }
            }
        }
    }
}

/// Typed access to the columns of a capture batch by name; missing optional columns read as null.
pub struct Columns<'a> {
    batch: &'a RecordBatch,
}

impl std::fmt::Debug for Columns<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Columns").field("rows", &self.batch.num_rows()).finish()
    }
}

impl<'a> Columns<'a> {
    /// Wraps a batch.
    pub fn new(batch: &'a RecordBatch) -> Self {
        Columns { batch }
    }

    /// A text column (plain, large, view or dictionary-encoded) as optional strings.
    pub fn text(&self, name: &str) -> Result<Vec<Option<&'a str>>, ColumnError> {
        let n = self.batch.num_rows();
        Ok(match Text::new(self.batch, name)? {
            Some(t) => (0..n).map(|i| t.get(i)).collect(),
            None => vec![None; n],
        })
    }

    /// A u64 column as optional values.
    pub fn u64(&self, name: &str) -> Result<Vec<Option<u64>>, ColumnError> {
        let n = self.batch.num_rows();
        let Some(a) = self.batch.column_by_name(name) else {
            return Ok(vec![None; n]);
        };
        let a = a
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| col_err(name, format!("expected uint64, found {}", a.data_type())))?;
        Ok(a.iter().collect())
    }

    /// A timestamp column (ns) as optional values.
    pub fn ts(&self, name: &str) -> Result<Vec<Option<i64>>, ColumnError> {
        let n = self.batch.num_rows();
        let Some(a) = self.batch.column_by_name(name) else {
            return Ok(vec![None; n]);
        };
        let a = a
            .as_primitive_opt::<TimestampNanosecondType>()
            .ok_or_else(|| col_err(name, format!("expected timestamp(ns), found {}", a.data_type())))?;
        Ok(a.iter().collect())
    }
}

fn required<T>(v: Option<T>, column: &str, row: usize) -> Result<T, ColumnError> {
    v.ok_or_else(|| col_err(column, format!("null in row {row}")))
}

/// Reads every row of a batch back into frames. Every column of the capture schema must be present.
pub fn from_batch(batch: &RecordBatch) -> Result<Vec<Frame>, ColumnError> {
    let n = batch.num_rows();
    let c = Columns::new(batch);
    for field in schema().fields() {
        if batch.column_by_name(field.name()).is_none() {
            return Err(col_err(field.name(), "missing"));
        }
    }
    let session = c.text(col::SESSION_ID)?;
    let stream = batch
        .column_by_name(col::STREAM_ID)
        .and_then(|a| a.as_primitive_opt::<UInt32Type>())
        .ok_or_else(|| col_err(col::STREAM_ID, "expected uint32"))?;
    let seq = c.u64(col::SEQ)?;
    let ts = c.ts(col::TS)?;
    let t_ns = c.u64(col::T_NS)?;
    let direction = c.text(col::DIRECTION)?;
    let transport = c.text(col::TRANSPORT)?;
    let kind = c.text(col::KIND)?;
    let method = c.text(col::METHOD)?;
    let rpc_id = c.text(col::RPC_ID)?;
    let latency = c.u64(col::LATENCY_NS)?;
    let error_code = batch
        .column_by_name(col::ERROR_CODE)
        .and_then(|a| a.as_primitive_opt::<Int32Type>())
        .ok_or_else(|| col_err(col::ERROR_CODE, "expected int32"))?;
    let payload_col = batch
        .column_by_name(col::PAYLOAD)
        .ok_or_else(|| col_err(col::PAYLOAD, "missing"))?;
    let payload = payload_col.as_binary_opt::<i32>().ok_or_else(|| {
        col_err(
            col::PAYLOAD,
            format!("expected binary, found {}", payload_col.data_type()),
        )
    })?;
    let http = batch
        .column_by_name(col::HTTP)
        .and_then(|a| a.as_struct_opt())
        .ok_or_else(|| col_err(col::HTTP, "expected struct"))?;
    let http = HttpColumns::new(http)?;
    let mcp_session = c.text(col::MCP_SESSION)?;
    let version = c.text(col::PROTOCOL_VERSION)?;

    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let dir = required(direction[i], col::DIRECTION, i)?;
        let tr = required(transport[i], col::TRANSPORT, i)?;
        let k = required(kind[i], col::KIND, i)?;
        out.push(Frame {
            session_id: required(session[i], col::SESSION_ID, i)?.to_string(),
            stream_id: if stream.is_valid(i) { stream.value(i) } else { 0 },
            seq: required(seq[i], col::SEQ, i)?,
            ts_ns: required(ts[i], col::TS, i)?,
            t_ns: required(t_ns[i], col::T_NS, i)?,
            direction: Direction::parse(dir)
                .ok_or_else(|| col_err(col::DIRECTION, format!("unknown value {dir:?}")))?,
            transport: Transport::parse(tr).ok_or_else(|| col_err(col::TRANSPORT, format!("unknown value {tr:?}")))?,
            kind: Kind::parse(k).ok_or_else(|| col_err(col::KIND, format!("unknown value {k:?}")))?,
            method: method[i].map(str::to_string),
            rpc_id: rpc_id[i].map(str::to_string),
            latency_ns: latency[i],
            error_code: error_code.is_valid(i).then(|| error_code.value(i)),
            payload: if payload.is_valid(i) {
                Bytes::copy_from_slice(payload.value(i))
            } else {
                Bytes::new()
            },
            http: http.get(i),
            mcp_session: mcp_session[i].map(str::to_string),
            protocol_version: version[i].map(str::to_string),
        });
    }
    Ok(out)
}

struct HttpColumns<'a> {
    array: &'a StructArray,
    method: Text<'a>,
    path: Text<'a>,
    status: &'a arrow_array::PrimitiveArray<UInt16Type>,
    content_type: Text<'a>,
    sse_event_id: Text<'a>,
    headers: &'a arrow_array::ListArray,
    names: Text<'a>,
    values: Text<'a>,
}

impl<'a> HttpColumns<'a> {
    fn new(array: &'a StructArray) -> Result<Self, ColumnError> {
        let field = |name: &str| {
            array
                .column_by_name(name)
                .ok_or_else(|| col_err(&format!("http.{name}"), "missing"))
        };
        let text = |name: &str| -> Result<Text<'a>, ColumnError> {
            let a: &'a ArrayRef = array
                .column_by_name(name)
                .ok_or_else(|| col_err(&format!("http.{name}"), "missing"))?;
            Text::of(a.as_ref(), &format!("http.{name}"))
        };
        let status = field("status")?
            .as_primitive_opt::<UInt16Type>()
            .ok_or_else(|| col_err("http.status", "expected uint16"))?;
        let headers = field("headers")?
            .as_list_opt::<i32>()
            .ok_or_else(|| col_err("http.headers", "expected list"))?;
        let items = headers
            .values()
            .as_struct_opt()
            .ok_or_else(|| col_err("http.headers", "expected struct items"))?;
        let item_text = |name: &str| -> Result<Text<'a>, ColumnError> {
            let a = items
                .column_by_name(name)
                .ok_or_else(|| col_err(&format!("http.headers.{name}"), "missing"))?;
            Text::of(a.as_ref(), &format!("http.headers.{name}"))
        };
        Ok(HttpColumns {
            array,
            method: text("method")?,
            path: text("path")?,
            status,
            content_type: text("content_type")?,
            sse_event_id: text("sse_event_id")?,
            headers,
            names: item_text("name")?,
            values: item_text("value")?,
        })
    }

    fn get(&self, i: usize) -> Option<HttpMeta> {
        if !self.array.is_valid(i) {
            return None;
        }
        let mut headers = Vec::new();
        if self.headers.is_valid(i) {
            let offsets = self.headers.value_offsets();
            for j in offsets[i] as usize..offsets[i + 1] as usize {
                headers.push((
                    self.names.get(j).unwrap_or_default().to_string(),
                    self.values.get(j).unwrap_or_default().to_string(),
                ));
            }
        }
        Some(HttpMeta {
            method: self.method.get(i).map(str::to_string),
            path: self.path.get(i).map(str::to_string),
            status: self.status.is_valid(i).then(|| self.status.value(i)),
            content_type: self.content_type.get(i).map(str::to_string),
            sse_event_id: self.sse_event_id.get(i).map(str::to_string),
            headers,
        })
    }
}

/// Checks that a file's schema is a capture schema this version can read; returns what is wrong otherwise.
pub fn check_compatible(found: &Schema) -> Result<(), ColumnError> {
    for field in schema().fields() {
        match found.field_with_name(field.name()) {
            Err(_) => return Err(col_err(field.name(), "missing")),
            Ok(f) => {
                let ok = match (field.data_type(), f.data_type()) {
                    (DataType::Dictionary(..), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => true,
                    (DataType::Utf8, DataType::LargeUtf8 | DataType::Utf8View) => true,
                    (DataType::Timestamp(TimeUnit::Nanosecond, _), DataType::Timestamp(TimeUnit::Nanosecond, _)) => {
                        true
                    }
                    (a, b) => a == b,
                };
                if !ok {
                    return Err(col_err(
                        field.name(),
                        format!("expected {}, found {}", field.data_type(), f.data_type()),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::StringDictionaryBuilder;

    /// `to_batch` as first written, with arrow's builders for every column.
    fn reference_to_batch(frames: &[Frame]) -> RecordBatch {
        let mut session = StringDictionaryBuilder::<Int32Type>::new();
        let mut stream = UInt32Builder::new();
        let mut seq = UInt64Builder::new();
        let mut ts = Vec::new();
        let mut t_ns = UInt64Builder::new();
        let mut direction = StringDictionaryBuilder::<Int32Type>::new();
        let mut transport = StringDictionaryBuilder::<Int32Type>::new();
        let mut kind = StringDictionaryBuilder::<Int32Type>::new();
        let mut method = StringDictionaryBuilder::<Int32Type>::new();
        let mut rpc_id = StringBuilder::new();
        let mut latency = UInt64Builder::new();
        let mut error_code = Int32Builder::new();
        let mut payload = BinaryBuilder::new();
        let mut http = http_builder();
        let mut mcp_session = StringBuilder::new();
        let mut version = StringBuilder::new();
        for f in frames {
            session.append_value(&f.session_id);
            stream.append_value(f.stream_id);
            seq.append_value(f.seq);
            ts.push(f.ts_ns);
            t_ns.append_value(f.t_ns);
            direction.append_value(f.direction.as_str());
            transport.append_value(f.transport.as_str());
            kind.append_value(f.kind.as_str());
            method.append_option(f.method.as_deref());
            rpc_id.append_option(f.rpc_id.as_deref());
            latency.append_option(f.latency_ns);
            error_code.append_option(f.error_code);
            payload.append_value(&f.payload);
            append_http(&mut http, f.http.as_ref());
            mcp_session.append_option(f.mcp_session.as_deref());
            version.append_option(f.protocol_version.as_deref());
        }
        let ts = arrow_array::TimestampNanosecondArray::from(ts).with_timezone("UTC");
        let columns: Vec<ArrayRef> = vec![
            Arc::new(session.finish()),
            Arc::new(stream.finish()),
            Arc::new(seq.finish()),
            Arc::new(ts),
            Arc::new(t_ns.finish()),
            Arc::new(direction.finish()),
            Arc::new(transport.finish()),
            Arc::new(kind.finish()),
            Arc::new(method.finish()),
            Arc::new(rpc_id.finish()),
            Arc::new(latency.finish()),
            Arc::new(error_code.finish()),
            Arc::new(payload.finish()),
            Arc::new(http.finish()),
            Arc::new(mcp_session.finish()),
            Arc::new(version.finish()),
        ];
        RecordBatch::try_new(schema(), columns).unwrap()
    }

    /// The Arrow IPC stream of a batch: equal bytes mean equal columns, buffers and dictionaries.
    fn ipc(batch: &RecordBatch) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
        w.write(batch).unwrap();
        w.finish().unwrap();
        drop(w);
        out
    }

    fn frames(n: usize, methods: usize, sessions: usize, http_every: usize) -> Vec<Frame> {
        (0..n)
            .map(|i| {
                let dir = if i % 3 == 0 { Direction::S2c } else { Direction::C2s };
                let transport = [Transport::Stdio, Transport::Http, Transport::Sse, Transport::Ws][i / 7 % 4];
                let mut f = Frame::new(
                    format!("s{}", i / 5 % sessions),
                    i as u64,
                    dir,
                    transport,
                    Kind::ALL[(i * 5 + 3) % Kind::ALL.len()],
                    format!("{{\"id\":{i}}}"),
                );
                f.method = (i % 4 != 1).then(|| format!("m/{}", i * 7 % methods));
                f.rpc_id = (i % 2 == 0).then(|| i.to_string());
                f.latency_ns = (i % 3 == 0).then_some(i as u64);
                f.error_code = (i % 5 == 0).then_some(-(i as i32));
                f.protocol_version = (i > 3).then(|| "2025-11-25".to_string());
                if http_every > 0 && i % http_every == 0 {
                    f.http = Some(HttpMeta {
                        method: Some("POST".into()),
                        status: Some(200),
                        headers: vec![("a".into(), i.to_string())],
                        ..HttpMeta::default()
                    });
                    f.mcp_session = Some("sha256:x".into());
                }
                f
            })
            .collect()
    }

    #[test]
    fn batches_are_built_exactly_as_arrow_builders_build_them() {
        for (n, methods, sessions, http_every) in [
            (0, 1, 1, 0),
            (1, 1, 1, 0),
            (50, 3, 1, 0),
            (500, 40, 3, 0),
            (500, DICT_LINEAR, 2, 7),
            (500, DICT_LINEAR + 1, 1, 1),
            (300, 200, 9, 50),
        ] {
            let frames = frames(n, methods, sessions, http_every);
            let got = to_batch(&frames);
            let want = reference_to_batch(&frames);
            assert_eq!(got, want, "{n} {methods} {sessions} {http_every}");
            assert_eq!(ipc(&got), ipc(&want), "{n} {methods} {sessions} {http_every}");
            assert_eq!(from_batch(&got).unwrap(), frames);
        }
    }

    #[test]
    fn a_batch_built_with_pauses_is_the_same_batch_and_pauses_every_32_rows() {
        for (n, pauses) in [(0, 0), (32, 0), (33, 1), (128, 3), (129, 4)] {
            let frames = frames(n, 3, 2, 5);
            let mut calls = 0;
            let got = to_batch_with(&frames, || calls += 1);
            assert_eq!(got, to_batch(&frames), "{n}");
            assert_eq!(calls, pauses, "{n}");
        }
    }
}
