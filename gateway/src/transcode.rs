//! HTTP request -> request message, and response message -> HTTP response.
//!
//! Every input (path variables, query parameters, JSON body) is turned into canonical proto3
//! JSON and parsed by prost-reflect against the method's input descriptor, then merged in
//! the order body, query, path (path wins). One parser therefore applies the proto3 JSON
//! rules to every source: lowerCamelCase and proto names, int64 as strings, enum names,
//! RFC 3339 timestamps, comma-separated field masks, base64 bytes.
//!
//! Most reads need none of that: a `GET` or `DELETE` whose only input is a resource name in
//! the path. [`SimpleRequest`] (compiled per route at build time) encodes such a request
//! straight to protobuf bytes, field numbers known in advance; it applies only where the
//! general path would set nothing but singular string fields (path variables, `If-Match`,
//! `Idempotency-Key`) and, for `PUT`, the `*` update mask, and it declines everything else
//! (a body, a query string, a typed path variable), which then takes the general path.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header, request::Parts};
use prost::Message;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    Value,
};
use serde_json::{Map, Value as Json};

use crate::{
    error::{HttpError, Violation},
    routes::{BodyTarget, Route, resolve_path},
};

/// The header a REST client names its write's request id in.
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Request headers forwarded to the gRPC call as metadata (besides `grpc-metadata-*`):
/// credentials, the request id and W3C trace context.
const FORWARDED: [&str; 5] = [
    "authorization",
    "x-api-key",
    "x-request-id",
    "traceparent",
    "tracestate",
];

/// A request message ready to send, with what the response needs to know.
pub struct Prepared {
    /// The request message.
    pub message: DynamicMessage,
    /// gRPC metadata to send.
    pub metadata: HeaderMap,
    /// The client made the write conditional with `If-Match`.
    pub if_match: bool,
}

/// Builds the request message for `route` from the HTTP request.
pub fn prepare(
    route: &Route,
    parts: &Parts,
    captures: Vec<(String, String)>,
    body: &[u8],
) -> Result<Prepared, HttpError> {
    let input = route.rpc.input();
    let mut message = DynamicMessage::new(input.clone());

    // Body.
    let mut body_json = None;
    if route.body != BodyTarget::None && !body.is_empty() {
        check_json_content_type(&parts.headers)?;
        let parsed: Json = crate::strict_json::from_slice(body).map_err(|e| {
            HttpError::bad_request(
                "INVALID_JSON",
                format!("the request body is not valid JSON: {e}"),
                Vec::new(),
            )
        })?;
        let null_is_a_value = matches!(&route.body, BodyTarget::Field(field)
            if matches!(field.kind(), Kind::Message(m) if m.full_name() == "google.protobuf.Value"));
        if parsed.is_null() && !null_is_a_value {
            // `null` would unset the body's message, making the request one without a body:
            // a client that means that sends none.
            return Err(HttpError::bad_request(
                "INVALID_BODY",
                "the request body is `null`; send a JSON object, or no body",
                vec![Violation {
                    field: "body".into(),
                    description: "must not be null".into(),
                }],
            ));
        }
        let (wrapped, field) = match &route.body {
            BodyTarget::Field(field) => {
                let mut object = Map::new();
                object.insert(field.name().to_owned(), parsed.clone());
                (Json::Object(object), Some(field.name().to_owned()))
            }
            _ => (parsed.clone(), None),
        };
        let from_body = parse_message(&input, wrapped.clone()).map_err(|e| {
            let field = failing_path(&input, &wrapped)
                .or(field)
                .unwrap_or_else(|| "body".into());
            HttpError::bad_request(
                "INVALID_BODY",
                format!("the request body does not fit {}: {e}", input.full_name()),
                vec![Violation {
                    field,
                    description: e,
                }],
            )
        })?;
        merge(&mut message, &from_body);
        body_json = Some(parsed);
    }

    // Query parameters, each parsed on its own so every bad one is reported.
    let mut violations = Vec::new();
    let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()) {
        query
            .entry(key.into_owned())
            .or_default()
            .push(value.into_owned());
    }
    let path_fields: Vec<String> = captures
        .iter()
        .map(|(path, _)| canonical_path(&input, path))
        .collect();
    let mut explicit_mask = false;
    for (key, values) in &query {
        match query_field(route, &input, key, &path_fields) {
            Err(description) => violations.push(Violation {
                field: key.clone(),
                description,
            }),
            Ok(fields) => {
                let leaf = fields.last().cloned();
                match leaf.map(|leaf| json_for(&leaf, values)) {
                    Some(Ok(value)) => {
                        let json = nest(&fields, value);
                        match parse_message(&input, json) {
                            Ok(parsed) => {
                                // An empty `updateMask=` is no mask (proto3: an empty
                                // FieldMask is unset): PUT still replaces everything.
                                if fields.len() == 1
                                    && fields[0].name() == "update_mask"
                                    && is_field_mask(&fields[0])
                                    && values.iter().any(|value| !value.is_empty())
                                {
                                    explicit_mask = true;
                                }
                                merge(&mut message, &parsed);
                            }
                            Err(e) => violations.push(Violation {
                                field: key.clone(),
                                description: e,
                            }),
                        }
                    }
                    Some(Err(description)) => violations.push(Violation {
                        field: key.clone(),
                        description,
                    }),
                    None => {}
                }
            }
        }
    }
    if !violations.is_empty() {
        let message = format!(
            "invalid query parameter{}: {}",
            if violations.len() == 1 { "" } else { "s" },
            violations
                .iter()
                .map(|v| v.field.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Err(HttpError::bad_request(
            "INVALID_QUERY_PARAMETER",
            message,
            violations,
        ));
    }

    // Path variables last: the URL names the resource, whatever the body says.
    for (path, value) in &captures {
        let fields = resolve_path(&input, path).unwrap_or_default();
        // The common case, a string field (a resource name), is set directly; anything else
        // goes through the JSON parser for its typing rules.
        if set_string_path(&mut message, &fields, value) {
            continue;
        }
        let json = nest(&fields, Json::String(value.clone()));
        let parsed = parse_message(&input, json).map_err(|e| {
            HttpError::bad_request(
                "INVALID_PATH",
                e.clone(),
                vec![Violation {
                    field: path.clone(),
                    description: e,
                }],
            )
        })?;
        merge(&mut message, &parsed);
    }

    // Update masks: PATCH derives one from the body's keys, PUT replaces everything.
    if let (false, Some(mask_field)) = (explicit_mask, input.get_field_by_name("update_mask"))
        && is_field_mask(&mask_field)
    {
        let paths = if parts.method == Method::PATCH {
            match (&route.body, &body_json) {
                (BodyTarget::Field(field), Some(Json::Object(object))) => match field.kind() {
                    Kind::Message(resource) => Some(mask_paths(&resource, object, "")),
                    _ => None,
                },
                _ => None,
            }
        } else if parts.method == Method::PUT {
            Some(vec!["*".to_owned()])
        } else {
            None
        };
        if let (Some(paths), Kind::Message(mask_type)) = (paths, mask_field.kind()) {
            let mut mask = DynamicMessage::new(mask_type);
            mask.set_field_by_name(
                "paths",
                Value::List(paths.into_iter().map(Value::String).collect()),
            );
            message.set_field(&mask_field, Value::Message(mask));
        }
    }

    // HTTP-native conveniences.
    let mut if_match = false;
    if let Some(etag) = header_text(&parts.headers, &header::IF_MATCH)?
        && etag != "*"
    {
        if_match = set_string(&mut message, &route.body, "etag", etag);
    }
    if let Some(key) = header_text(&parts.headers, &IDEMPOTENCY_KEY)? {
        set_string(&mut message, &BodyTarget::None, "request_id", key);
    }

    Ok(Prepared {
        message,
        metadata: metadata(&parts.headers),
        if_match,
    })
}

fn check_json_content_type(headers: &HeaderMap) -> Result<(), HttpError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(HttpError::with_status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument,
            "UNSUPPORTED_MEDIA_TYPE",
            format!(
                "the request body must be application/json, got `{}`",
                if content_type.is_empty() {
                    "nothing"
                } else {
                    content_type
                }
            ),
        ))
    }
}

fn parse_message(descriptor: &MessageDescriptor, json: Json) -> Result<DynamicMessage, String> {
    DynamicMessage::deserialize_with_options(
        descriptor.clone(),
        json,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|e| e.to_string())
}

/// The proto path of the field that makes `json` fail to parse as `descriptor`
/// (`customer.given_name` for a number where a name belongs), found by parsing each member
/// alone and descending into the failing one; `None` when no single member fails.
fn failing_path(descriptor: &MessageDescriptor, json: &Json) -> Option<String> {
    let Json::Object(object) = json else {
        return None;
    };
    for (key, value) in object {
        let mut alone = Map::new();
        alone.insert(key.clone(), value.clone());
        if parse_message(descriptor, Json::Object(alone)).is_ok() {
            continue;
        }
        let field = descriptor
            .get_field_by_json_name(key)
            .or_else(|| descriptor.get_field_by_name(key));
        let Some(field) = field else {
            return Some(key.clone());
        };
        let nested = match field.kind() {
            prost_reflect::Kind::Message(inner) if !field.is_list() && !field.is_map() => {
                failing_path(&inner, value)
            }
            _ => None,
        };
        return Some(match nested {
            Some(rest) => format!("{}.{rest}", field.name()),
            None => field.name().to_owned(),
        });
    }
    None
}

/// Proto merge: scalars overwrite, messages merge, repeated fields append.
fn merge(target: &mut DynamicMessage, source: &DynamicMessage) {
    // Nothing set yet: take the source as it is instead of re-encoding it.
    if target.fields().next().is_none() {
        target.clone_from(source);
        return;
    }
    // Both messages have the same descriptor, so re-encoding cannot fail to decode.
    if let Err(error) = target.merge(source.encode_to_vec().as_slice()) {
        tracing::error!(%error, "merging transcoded message parts");
    }
}

/// Sets a singular string field at the end of a path of singular messages; false when the
/// path has another shape.
fn set_string_path(message: &mut DynamicMessage, fields: &[FieldDescriptor], value: &str) -> bool {
    let Some((leaf, parents)) = fields.split_last() else {
        return false;
    };
    if leaf.kind() != Kind::String || leaf.is_list() {
        return false;
    }
    let mut current = message;
    for parent in parents {
        match current.get_field_mut(parent) {
            Value::Message(inner) => current = inner,
            _ => return false,
        }
    }
    current.set_field(leaf, Value::String(value.to_owned()));
    true
}

/// The proto-name form of a (possibly lowerCamel) field path.
fn canonical_path(message: &MessageDescriptor, path: &str) -> String {
    resolve_path(message, path)
        .map(|fields| {
            fields
                .iter()
                .map(|f| f.name().to_owned())
                .collect::<Vec<_>>()
                .join(".")
        })
        .unwrap_or_else(|| path.to_owned())
}

/// The fields a query parameter sets, or why it is not accepted.
fn query_field(
    route: &Route,
    input: &MessageDescriptor,
    key: &str,
    path_fields: &[String],
) -> Result<Vec<FieldDescriptor>, String> {
    if route.body == BodyTarget::Whole {
        return Err("unknown parameter: this route takes every field from the body".into());
    }
    let fields = resolve_path(input, key)
        .ok_or_else(|| format!("unknown parameter for {}", input.full_name()))?;
    let canonical = fields
        .iter()
        .map(|f| f.name().to_owned())
        .collect::<Vec<_>>()
        .join(".");
    if path_fields
        .iter()
        .any(|p| *p == canonical || canonical.starts_with(&format!("{p}.")))
    {
        return Err("is already set by the URL path".into());
    }
    if let BodyTarget::Field(body) = &route.body
        && fields.first().is_some_and(|f| f.name() == body.name())
    {
        return Err("belongs in the request body".into());
    }
    let leaf = fields.last().ok_or("empty parameter name")?;
    if leaf.is_map() {
        return Err("map fields cannot be set from the query string".into());
    }
    if let Kind::Message(message) = leaf.kind()
        && !has_string_json_form(&message)
    {
        return Err("message fields cannot be set from the query string".into());
    }
    Ok(fields)
}

/// Well-known types whose canonical JSON form is a string or a scalar.
fn has_string_json_form(message: &MessageDescriptor) -> bool {
    matches!(
        message.full_name(),
        "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
            | "google.protobuf.FieldMask"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
            | "google.protobuf.BoolValue"
            | "google.protobuf.Int32Value"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.FloatValue"
            | "google.protobuf.DoubleValue"
    )
}

fn is_field_mask(field: &FieldDescriptor) -> bool {
    matches!(field.kind(), Kind::Message(m) if m.full_name() == "google.protobuf.FieldMask")
        && !field.is_list()
}

/// The JSON form of query values for `field`.
fn json_for(field: &FieldDescriptor, values: &[String]) -> Result<Json, String> {
    let scalar = |text: &str| -> Json {
        match field.kind() {
            Kind::Bool | Kind::Message(_) if matches!(text, "true" | "false") && is_bool(field) => {
                Json::Bool(text == "true")
            }
            _ => Json::String(text.to_owned()),
        }
    };
    if field.is_list() {
        Ok(Json::Array(values.iter().map(|v| scalar(v)).collect()))
    } else if values.len() > 1 {
        Err("is given more than once but is not repeated".into())
    } else {
        Ok(scalar(values.first().map_or("", String::as_str)))
    }
}

fn is_bool(field: &FieldDescriptor) -> bool {
    match field.kind() {
        Kind::Bool => true,
        Kind::Message(m) => m.full_name() == "google.protobuf.BoolValue",
        _ => false,
    }
}

/// `{"a": {"b": value}}` for the field path a.b.
fn nest(fields: &[FieldDescriptor], value: Json) -> Json {
    fields.iter().rev().fold(value, |inner, field| {
        let mut object = Map::new();
        object.insert(field.name().to_owned(), inner);
        Json::Object(object)
    })
}

/// `google.api.field_behavior` values a client cannot update (OUTPUT_ONLY, IDENTIFIER).
const NOT_UPDATABLE: [i32; 2] = [3, 8];

/// Whether the field is annotated as one a client cannot change.
fn not_updatable(field: &FieldDescriptor) -> bool {
    let Some(behavior) = field
        .parent_pool()
        .get_extension_by_name("google.api.field_behavior")
    else {
        return false;
    };
    let options = field.options();
    if !options.has_extension(&behavior) {
        return false;
    }
    match options.get_extension(&behavior).as_ref() {
        Value::List(values) => values
            .iter()
            .any(|v| matches!(v, Value::EnumNumber(n) if NOT_UPDATABLE.contains(n))),
        _ => false,
    }
}

/// The field paths a PATCH body sets, relative to the resource: nested objects of plain
/// message fields recurse; maps, lists, well-known types and empty objects are leaves.
/// Fields the client cannot change (output only, identifier) are left out, so a client may
/// PATCH back a resource it read.
fn mask_paths(
    message: &MessageDescriptor,
    object: &Map<String, Json>,
    prefix: &str,
) -> Vec<String> {
    let mut paths = Vec::new();
    for (key, value) in object {
        let Some(field) = message
            .get_field_by_json_name(key)
            .or_else(|| message.get_field_by_name(key))
        else {
            continue;
        };
        if not_updatable(&field) {
            continue;
        }
        let path = format!("{prefix}{}", field.name());
        match (field.kind(), value) {
            (Kind::Message(inner), Json::Object(nested))
                if !field.is_map()
                    && !field.is_list()
                    && !nested.is_empty()
                    && !inner.full_name().starts_with("google.protobuf.") =>
            {
                paths.extend(mask_paths(&inner, nested, &format!("{path}.")));
            }
            _ => paths.push(path),
        }
    }
    paths
}

/// A header copied into the request, trimmed; `None` when absent or blank. A value that is
/// not visible ASCII is refused, not skipped: an `Idempotency-Key` or `If-Match` the gateway
/// cannot read must not turn the request into an unconditional, non-idempotent one.
fn header_text(headers: &HeaderMap, name: &HeaderName) -> Result<Option<String>, HttpError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let Ok(text) = value.to_str() else {
        let description = "must be visible ASCII".to_owned();
        return Err(HttpError::bad_request(
            "INVALID_HEADER",
            format!("the `{name}` header {description}"),
            vec![Violation {
                field: name.to_string(),
                description,
            }],
        ));
    };
    let text = text.trim();
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// Sets a top-level string field, or the same field of the body message. Returns whether a
/// field was set.
fn set_string(message: &mut DynamicMessage, body: &BodyTarget, name: &str, value: String) -> bool {
    let descriptor = message.descriptor();
    if let Some(field) = descriptor.get_field_by_name(name)
        && field.kind() == Kind::String
        && !field.is_list()
    {
        message.set_field(&field, Value::String(value));
        return true;
    }
    if let BodyTarget::Field(body_field) = body
        && let Kind::Message(resource) = body_field.kind()
        && let Some(field) = resource.get_field_by_name(name)
        && field.kind() == Kind::String
        && let Value::Message(inner) = message.get_field_mut(body_field)
    {
        inner.set_field(&field, Value::String(value));
        return true;
    }
    false
}

/// Request headers that become gRPC metadata.
pub fn metadata(headers: &HeaderMap) -> HeaderMap {
    let mut metadata = HeaderMap::new();
    for (name, value) in headers {
        let text = name.as_str();
        if FORWARDED.contains(&text) {
            metadata.append(name.clone(), value.clone());
        } else if let Some(stripped) = text.strip_prefix("grpc-metadata-")
            && let Ok(name) = HeaderName::from_bytes(stripped.as_bytes())
        {
            metadata.append(name, value.clone());
        }
    }
    metadata
}

/// The response (or its `response_body` field) as canonical JSON bytes, every field present.
pub fn response_bytes(route: &Route, message: &DynamicMessage) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(512);
    match &route.response_body {
        None => crate::json::write_message(message, &mut out)?,
        Some(field) => crate::json::write_field(field, &message.get_field(field), &mut out)?,
    }
    Ok(out)
}

/// Response headers from gRPC metadata, minus protocol headers.
pub fn metadata_headers(grpc_headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    grpc_headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            !(name.starts_with("grpc-")
                || name == "content-type"
                || name == "content-length"
                || name == "te"
                || name == "trailer"
                || name.ends_with("-bin"))
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// `ETag` from the response message's `etag` field, as an HTTP entity tag.
pub fn etag_header(message: &DynamicMessage) -> Option<HeaderValue> {
    let Value::String(etag) = message.get_field_by_name("etag")?.into_owned() else {
        return None;
    };
    etag_value(&etag)
}

/// An `etag` field value as an HTTP entity tag (quoted unless it already is); none if empty.
pub fn etag_value(etag: &str) -> Option<HeaderValue> {
    if etag.is_empty() {
        return None;
    }
    if etag.starts_with("W/\"") || etag.starts_with('"') {
        HeaderValue::from_str(etag).ok()
    } else {
        // Quoted into the bytes the header keeps (no formatting machinery, no second copy).
        let mut quoted = Vec::with_capacity(etag.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(etag.as_bytes());
        quoted.push(b'"');
        HeaderValue::from_maybe_shared(bytes::Bytes::from(quoted)).ok()
    }
}

/// Where `If-Match` goes in a [`SimpleRequest`].
#[derive(Debug, Clone)]
enum EtagTarget {
    /// Nowhere: the request has no `etag` string field (the header is ignored).
    None,
    /// This chain of field numbers (`etag`, or `resource.etag` of the body field).
    Field(Vec<u32>),
    /// A shape the general path handles on its own.
    General,
}

/// A route's request encoder for requests that need no parsing (see the module docs).
#[derive(Debug, Clone)]
pub struct SimpleRequest {
    /// Per template variable, the field numbers down to its string field.
    variables: Vec<Vec<u32>>,
    etag: EtagTarget,
    /// `request_id` (from `Idempotency-Key`).
    request_id: Option<u32>,
    /// `update_mask`, set to `*` on `PUT`.
    put_mask: Option<u32>,
}

impl SimpleRequest {
    /// The encoder for `route`, if its path variables are all string fields reached through
    /// singular messages (a resource name, `customer.name`), the only shape it encodes.
    pub fn new(route: &Route) -> Option<Self> {
        let input = route.rpc.input();
        let mut variables = Vec::with_capacity(route.template.variables.len());
        for variable in &route.template.variables {
            let fields = resolve_path(&input, &variable.field_path)?;
            let (leaf, parents) = fields.split_last()?;
            // `set_string_path`'s shape: a singular string through singular messages.
            if leaf.kind() != Kind::String || leaf.is_list() {
                return None;
            }
            if parents
                .iter()
                .any(|p| p.is_list() || p.is_map() || !matches!(p.kind(), Kind::Message(_)))
            {
                return None;
            }
            variables.push(fields.iter().map(FieldDescriptor::number).collect());
        }
        let string_field = |message: &MessageDescriptor, name: &str| {
            message
                .get_field_by_name(name)
                .filter(|f| f.kind() == Kind::String && !f.is_list())
        };
        // As `set_string` finds it: the request's own `etag`, else the body resource's.
        let etag = match (string_field(&input, "etag"), &route.body) {
            (Some(field), _) => EtagTarget::Field(vec![field.number()]),
            (None, BodyTarget::Field(body)) => match body.kind() {
                Kind::Message(resource) => match resource.get_field_by_name("etag") {
                    Some(etag) if etag.kind() == Kind::String => {
                        if etag.is_list() {
                            EtagTarget::General
                        } else if body.is_list() || body.is_map() {
                            EtagTarget::None
                        } else {
                            EtagTarget::Field(vec![body.number(), etag.number()])
                        }
                    }
                    _ => EtagTarget::None,
                },
                _ => EtagTarget::None,
            },
            (None, _) => EtagTarget::None,
        };
        let put_mask = match input.get_field_by_name("update_mask") {
            Some(mask) if is_field_mask(&mask) && route.method == Method::PUT => {
                Some(mask.number())
            }
            _ => None,
        };
        Some(Self {
            variables,
            etag,
            request_id: string_field(&input, "request_id").map(|f| f.number()),
            put_mask,
        })
    }

    /// Appends the encoded request message to `out` and returns whether `If-Match` made it
    /// conditional, or returns `None` (writing nothing) when the request needs the general
    /// path: a body the route reads, a query string, an `If-Match` it cannot place.
    /// `captures` are the route template's, in variable order.
    pub fn encode(
        &self,
        route: &Route,
        parts: &Parts,
        captures: &[(String, String)],
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<bool> {
        if (!body.is_empty() && route.body != BodyTarget::None)
            || parts.uri.query().is_some_and(|q| !q.is_empty())
            || captures.len() != self.variables.len()
        {
            return None;
        }
        // An unreadable header is refused by the general path.
        let if_match = header_text(&parts.headers, &header::IF_MATCH)
            .ok()?
            .filter(|etag| etag != "*");
        if if_match.is_some() && matches!(self.etag, EtagTarget::General) {
            return None;
        }
        // Written in the general path's order (path, mask, etag, request id): for one
        // field set twice, the later value wins on the wire as it does there.
        for (chain, (_, value)) in self.variables.iter().zip(captures) {
            crate::wire::put_string(chain, value.as_bytes(), out);
        }
        if let Some(mask) = self.put_mask {
            crate::wire::put_string(&[mask, 1], b"*", out);
        }
        let mut conditional = false;
        if let (Some(etag), EtagTarget::Field(chain)) = (if_match, &self.etag) {
            crate::wire::put_string(chain, etag.as_bytes(), out);
            conditional = true;
        }
        if let (Some(number), Some(key)) = (
            self.request_id,
            header_text(&parts.headers, &IDEMPOTENCY_KEY).ok()?,
        ) {
            crate::wire::put_string(&[number], key.as_bytes(), out);
        }
        Some(conditional)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn etag_message(etag: &str) -> DynamicMessage {
        // `message R { string etag = 1; }`
        let file = prost_types::FileDescriptorProto {
            name: Some("etag.proto".into()),
            package: Some("t".into()),
            syntax: Some("proto3".into()),
            message_type: vec![prost_types::DescriptorProto {
                name: Some("R".into()),
                field: vec![prost_types::FieldDescriptorProto {
                    name: Some("etag".into()),
                    number: Some(1),
                    label: Some(prost_types::field_descriptor_proto::Label::Optional as i32),
                    r#type: Some(prost_types::field_descriptor_proto::Type::String as i32),
                    json_name: Some("etag".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut pool = prost_reflect::DescriptorPool::new();
        pool.add_file_descriptor_proto(file).unwrap();
        let mut message = DynamicMessage::new(pool.get_message_by_name("t.R").unwrap());
        message.set_field_by_name("etag", Value::String(etag.into()));
        message
    }

    const LIBRARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/library_descriptor.bin"));

    fn library_routes() -> Vec<Route> {
        let mut pool = prost_reflect::DescriptorPool::new();
        crate::add_files(&mut pool, LIBRARY).unwrap();
        crate::routes::routes(&pool, &["testing.v1.LibraryService".to_owned()]).unwrap()
    }

    fn parts(method: &Method, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().method(method.clone()).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    /// A path for `route` with `value` in its (single) variable, if it fits.
    fn path_for(route: &Route, value: &str) -> Option<String> {
        match route.template.variables.len() {
            0 => route.template.render(&[]),
            1 => route.template.render(&[value]),
            _ => None,
        }
    }

    #[test]
    fn simple_requests_encode_what_the_general_path_builds() {
        let values = [
            "shelves/1",
            "shelves/7/books/9",
            "shelves/a b/books/\u{fc}%2F",
            "x",
            "a/b/c",
        ];
        let header_sets: [&[(&str, &str)]; 6] = [
            &[],
            &[("if-match", "W/\"3\"")],
            &[("if-match", " * ")],
            &[("idempotency-key", " 5f0c6a52-0000-4000-8000-000000000001 ")],
            &[
                ("if-match", "\"1\""),
                ("idempotency-key", "k"),
                ("authorization", "Bearer t"),
            ],
            &[("if-match", "   ")],
        ];
        let mut simple_routes = 0;
        let mut compared = 0;
        for route in library_routes() {
            let Some(simple) = SimpleRequest::new(&route) else {
                continue;
            };
            simple_routes += 1;
            let input = route.rpc.input();
            for value in values {
                let Some(path) = path_for(&route, value) else {
                    continue;
                };
                let captures = route.template.matches(&path).unwrap();
                for headers in header_sets {
                    let parts = parts(&route.method, &path, headers);
                    let expected = prepare(&route, &parts, captures.clone(), b"").unwrap();
                    let mut encoded = Vec::new();
                    let if_match = simple
                        .encode(&route, &parts, &captures, b"", &mut encoded)
                        .unwrap_or_else(|| panic!("{} {path} declined", route.template));
                    let actual = DynamicMessage::decode(input.clone(), encoded.as_slice()).unwrap();
                    assert_eq!(
                        actual, expected.message,
                        "{} {path} {headers:?}",
                        route.template
                    );
                    assert_eq!(
                        if_match, expected.if_match,
                        "{} {headers:?}",
                        route.template
                    );
                    compared += 1;
                }
            }
            // Anything to parse is the general path's.
            let path = path_for(&route, "shelves/1/books/2")
                .or_else(|| path_for(&route, "shelves/1"))
                .unwrap();
            let captures = route.template.matches(&path).unwrap();
            let with_query = parts(&route.method, &format!("{path}?pageSize=3"), &[]);
            assert_eq!(
                simple.encode(&route, &with_query, &captures, b"", &mut Vec::new()),
                None
            );
            if route.body != BodyTarget::None {
                let plain = parts(&route.method, &path, &[]);
                let mut out = Vec::new();
                assert_eq!(
                    simple.encode(&route, &plain, &captures, b"{}", &mut out),
                    None
                );
                assert!(out.is_empty());
            }
        }
        // Create, Get, List, Search, Update (PATCH and PUT), Delete, Publish, Watch, Echo.
        assert_eq!(simple_routes, 10);
        assert!(compared > 50, "{compared}");
    }

    #[test]
    fn typed_path_variables_are_left_to_the_general_path() {
        let routes = library_routes();
        for template in ["/v1/stats/{id}", "/v1/errors/{code}"] {
            let route = routes
                .iter()
                .find(|r| r.template.source == template)
                .unwrap();
            assert!(SimpleRequest::new(route).is_none(), "{template}");
        }
    }

    #[test]
    fn etags_become_entity_tags() {
        let header =
            |etag: &str| etag_header(&etag_message(etag)).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(header("v1").as_deref(), Some("\"v1\""));
        assert_eq!(header("\"v1\"").as_deref(), Some("\"v1\""));
        assert_eq!(header("W/\"7\"").as_deref(), Some("W/\"7\""));
        assert_eq!(header(""), None);
        assert_eq!(header("bad\nvalue"), None);
    }

    #[test]
    fn only_application_metadata_becomes_headers() {
        let mut grpc = HeaderMap::new();
        for (name, value) in [
            ("content-type", "application/grpc"),
            ("content-length", "5"),
            ("grpc-status", "0"),
            ("grpc-accept-encoding", "gzip"),
            ("te", "trailers"),
            ("trailer", "grpc-status"),
            ("x-trace-bin", "AAE="),
            ("x-served-by", "a"),
            ("www-authenticate", "Bearer"),
        ] {
            grpc.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        grpc.append("x-served-by", HeaderValue::from_static("b"));
        let kept: Vec<(String, String)> = metadata_headers(&grpc)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            kept,
            [
                ("x-served-by".to_owned(), "a".to_owned()),
                ("x-served-by".to_owned(), "b".to_owned()),
                ("www-authenticate".to_owned(), "Bearer".to_owned()),
            ]
        );
    }

    #[test]
    fn forwarded_request_headers_and_grpc_metadata_prefix() {
        let mut http = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer t"),
            ("x-api-key", "k"),
            ("x-request-id", "r"),
            ("traceparent", "00-01"),
            ("tracestate", "vendor=1"),
            ("grpc-metadata-tenant", "acme"),
            ("cookie", "c"),
            ("accept", "application/json"),
        ] {
            http.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let forwarded = metadata(&http);
        let mut names: Vec<&str> = forwarded.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "authorization",
                "tenant",
                "traceparent",
                "tracestate",
                "x-api-key",
                "x-request-id"
            ]
        );
        assert_eq!(forwarded["tenant"], "acme");
    }
}
