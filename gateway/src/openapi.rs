//! An OpenAPI 3.1 description of the REST routes.
//!
//! [`document`] turns the route table into an OpenAPI document whose bodies, parameters and
//! schemas follow the gateway's JSON mapping, canonical proto3 JSON:
//!
//! - properties are named by `json_name` (lowerCamelCase); fields with presence (messages,
//!   oneof members) are left out when unset, never `null`, and every other field is always
//!   present ([`crate::json::omitted_when_unset`], the writer's rule);
//! - 64-bit integers are strings, enums are their value names, `bytes` are base64;
//! - well-known types use their special forms (`Timestamp` is an RFC 3339 string, `FieldMask`
//!   a comma-separated string, wrappers their scalar, `Any` an object with `@type`, ...).
//!
//! A path variable that matches a resource name made of literal collections and single
//! segments is written out the way AIP-127 and Google's own OpenAPI generator (gnostic)
//! write it: `/v1/{name=customers/*/notes/*}` is the OpenAPI path
//! `/v1/customers/{customer}/notes/{note}`, one parameter per `*`, named after the resource
//! pattern of the field's `google.api.resource_reference` (or the singular of the
//! collection). Resource names of different types therefore get different OpenAPI paths
//! (`/v1/{name}` would be the same path for every resource), and a client fills in plain
//! ids instead of sending `/` unencoded. Other variables (one segment, `**`) become one
//! parameter named by the field path: `/v1/{name=**}` is `/v1/{name}`, whose value keeps
//! its `/` unencoded. Every message reachable from the routes becomes a schema under
//! `components.schemas`, keyed by its full name (`customer.v1.Customer`). Descriptions come
//! from the proto comments and `google.api.field_behavior` annotations become `required`,
//! `readOnly` and `writeOnly`.
//!
//! OpenAPI 3.1 cannot express every binding: routes with a non-standard HTTP method are
//! left out, and when two routes map to the same OpenAPI path and method only the first
//! (the most specific) is described.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use http::Method;
use prost_reflect::{
    DescriptorPool, DynamicMessage, EnumDescriptor, ExtensionDescriptor, FieldDescriptor,
    FileDescriptor, Kind, MessageDescriptor, MethodDescriptor, Value as ProtoValue,
};
use serde_json::{Map, Value, json};

use crate::json;
use crate::routes::{BodyTarget, Route, resolve_path};
use crate::template::{PathTemplate, Segment, Variable};

/// Title, version and optional description of the document, and what the descriptors
/// cannot say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    /// The API's title.
    pub title: String,
    /// The version of the API description (not of OpenAPI).
    pub version: String,
    /// A longer description; CommonMark.
    pub description: Option<String>,
    /// The service's limits on request values.
    pub constraints: Constraints,
}

/// What the service checks beyond the descriptors: its limits on request values, as JSON
/// Schema keywords. They are merged into what clients send (the `…Input` and `…Patch`
/// schemas, whole-message bodies, and the path and query parameters of the fields they
/// name), never into response schemas, which describe what is stored (a purged customer's
/// event has an empty name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Constraints {
    /// Keywords per field, by full name (`customer.v1.Customer.email`), e.g. `maxLength`,
    /// `pattern`, `format`, `maxItems`; object values (`items`) merge into the schema's.
    pub fields: BTreeMap<String, Value>,
    /// The pattern of a resource id, by the variable of its resource pattern (`customer` in
    /// `customers/{customer}`): the path parameter of that id carries it instead of
    /// `^[^/]+$`. A key `{field}:{variable}` (`customer.v1.ListCustomerEventsRequest.parent:customer`)
    /// applies to that field's paths only and wins over the plain variable.
    pub ids: BTreeMap<String, String>,
}

impl Constraints {
    /// Fails on a field that does not exist: a renamed field must not silently lose its
    /// constraints.
    pub fn check(&self, pool: &DescriptorPool) -> Result<(), String> {
        let field_ids = self.ids.keys().filter_map(|key| key.split_once(':'));
        for name in self
            .fields
            .keys()
            .map(String::as_str)
            .chain(field_ids.map(|(f, _)| f))
        {
            let found = name.rsplit_once('.').is_some_and(|(message, field)| {
                pool.get_message_by_name(message)
                    .is_some_and(|message| message.get_field_by_name(field).is_some())
            });
            if !found {
                return Err(format!("constraints name an unknown field `{name}`"));
            }
        }
        Ok(())
    }
}

/// The OpenAPI 3.1 document for these routes.
pub fn document(pool: &DescriptorPool, routes: &[Route], info: &Info) -> Value {
    let mut generator = Generator::new(pool, routes, &info.constraints);
    let mut paths = Map::new();
    let mut operation_ids = BTreeSet::new();
    let mut tags: Vec<(String, Option<String>)> = Vec::new();

    for route in routes {
        let Some(method) = openapi_method(&route.method) else {
            continue;
        };
        let (path, path_parameters) = generator.path(route);
        let item = paths
            .entry(path)
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut();
        let Some(item) = item else { continue };
        if item.contains_key(method) {
            // Same OpenAPI path and method as a more specific route: not expressible.
            continue;
        }
        let service = route.rpc.parent_service();
        if !tags.iter().any(|(name, _)| name == service.name()) {
            let description = generator.comment(&service.parent_file(), service.path());
            tags.push((service.name().to_owned(), description));
        }
        let operation_id = generator.operation_id(route, &mut operation_ids);
        let operation = generator.operation(route, operation_id, path_parameters);
        item.insert(method.to_owned(), operation);
    }

    let mut info_object = Map::new();
    info_object.insert("title".into(), json!(info.title));
    info_object.insert("version".into(), json!(info.version));
    if let Some(description) = &info.description {
        info_object.insert("description".into(), json!(description));
    }

    let tags: Vec<Value> = tags
        .into_iter()
        .map(|(name, description)| {
            let mut tag = Map::new();
            tag.insert("name".into(), json!(name));
            if let Some(description) = description {
                tag.insert("description".into(), json!(description));
            }
            Value::Object(tag)
        })
        .collect();

    let mut schemas = generator.finish();
    schemas.insert("Error".into(), error_schema());

    json!({
        "openapi": "3.1.0",
        "info": info_object,
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                "Error": {
                    "description": "An error: a `google.rpc.Status` in the AIP-193 JSON form.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    }
                }
            }
        }
    })
}

/// `google.api.FieldBehavior` values (`OPTIONAL` = 1 shows as absence from `required`).
const REQUIRED: i32 = 2;
const OUTPUT_ONLY: i32 = 3;
const INPUT_ONLY: i32 = 4;
const IMMUTABLE: i32 = 5;
const IDENTIFIER: i32 = 8;

/// The error responses every operation lists, with the gRPC codes behind them.
const ERROR_RESPONSES: [(&str, &str); 9] = [
    (
        "400",
        "Bad Request: `INVALID_ARGUMENT`, `FAILED_PRECONDITION` or `OUT_OF_RANGE`.",
    ),
    ("401", "Unauthorized: `UNAUTHENTICATED`."),
    ("403", "Forbidden: `PERMISSION_DENIED`."),
    ("404", "Not Found: `NOT_FOUND`."),
    ("409", "Conflict: `ALREADY_EXISTS`."),
    (
        "412",
        "Precondition Failed: the etag sent (in `If-Match` or in the request) is no longer current (`ABORTED`).",
    ),
    ("429", "Too Many Requests: `RESOURCE_EXHAUSTED`."),
    (
        "500",
        "Internal Server Error: `INTERNAL`, `UNKNOWN` or `DATA_LOSS`.",
    ),
    ("503", "Service Unavailable: `UNAVAILABLE`."),
];

/// The error responses of the operations that take a request body: the gateway's answers
/// before the body reaches the RPC.
const BODY_ERROR_RESPONSES: [(&str, &str); 2] = [
    (
        "413",
        "Content Too Large: the body exceeds the server's limit (`INVALID_ARGUMENT`, reason `BODY_TOO_LARGE`).",
    ),
    (
        "415",
        "Unsupported Media Type: the body is not `application/json` (`INVALID_ARGUMENT`).",
    ),
];

/// The key of an OpenAPI operation for an HTTP method, if OpenAPI 3.1 has one.
fn openapi_method(method: &Method) -> Option<&'static str> {
    Some(match *method {
        Method::GET => "get",
        Method::PUT => "put",
        Method::POST => "post",
        Method::DELETE => "delete",
        Method::OPTIONS => "options",
        Method::HEAD => "head",
        Method::PATCH => "patch",
        Method::TRACE => "trace",
        _ => return None,
    })
}

/// A schema component still to be written.
enum Pending {
    Message(MessageDescriptor, Variant),
    Enum(EnumDescriptor),
}

/// Which of a message's schemas: the JSON the server writes, or what a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Responses (`customer.v1.Customer`): every field; those the writer always writes
    /// ([`json::omitted_when_unset`]) are `required`, none is nullable.
    Output,
    /// Create and replace bodies (`customer.v1.CustomerInput`): no output-only or identifier
    /// fields; `google.api.field_behavior = REQUIRED` fields are `required`; the
    /// [`Constraints`] apply.
    Input,
    /// PATCH bodies (`customer.v1.CustomerPatch`): as [`Variant::Input`] with nothing
    /// required, since a PATCH changes only the fields it carries (nested messages too: the
    /// gateway's implied mask names nested paths). Lists and maps are replaced whole, so
    /// their messages are `…Input`.
    Patch,
}

impl Variant {
    fn suffix(self) -> &'static str {
        match self {
            Variant::Output => "",
            Variant::Input => "Input",
            Variant::Patch => "Patch",
        }
    }
}

struct Generator<'a> {
    pool: &'a DescriptorPool,
    constraints: &'a Constraints,
    field_behavior: Option<ExtensionDescriptor>,
    /// Written schema components.
    schemas: Map<String, Value>,
    /// Components written or pending.
    named: BTreeSet<String>,
    pending: Vec<Pending>,
    /// Leading comments per file, by source path.
    comments: HashMap<String, HashMap<Vec<i32>, String>>,
    /// `google.api.resource` patterns by resource type, read on first use.
    resources: Option<HashMap<String, Vec<String>>>,
    /// An example `Location` of a created resource, by the resource's message type, where
    /// the routes can render one.
    location_examples: HashMap<String, String>,
}

impl<'a> Generator<'a> {
    fn new(pool: &'a DescriptorPool, routes: &[Route], constraints: &'a Constraints) -> Self {
        // The gateway renders `Location` with the first GET route whose only variable is
        // `name`, has no verb and whose template fits the created name: the Get method of
        // that resource, which returns the same message as its Create method.
        let mut location_examples = HashMap::new();
        for route in routes
            .iter()
            .filter(|route| route.method == Method::GET && route.template.verb.is_none())
        {
            let [variable] = route.template.variables.as_slice() else {
                continue;
            };
            if variable.field_path != "name" {
                continue;
            }
            let example = example_value(&route.template.segments[variable.start..variable.end]);
            if let Some(location) = route.template.render(&[example.as_str()]) {
                location_examples
                    .entry(route.rpc.output().full_name().to_owned())
                    .or_insert(location);
            }
        }
        Self {
            pool,
            field_behavior: pool.get_extension_by_name("google.api.field_behavior"),
            schemas: Map::new(),
            named: BTreeSet::new(),
            pending: Vec::new(),
            comments: HashMap::new(),
            resources: None,
            location_examples,
            constraints,
        }
    }

    /// Writes the pending components and returns them all.
    fn finish(mut self) -> Map<String, Value> {
        while let Some(pending) = self.pending.pop() {
            let (name, schema) = match pending {
                Pending::Message(message, variant) => (
                    format!("{}{}", message.full_name(), variant.suffix()),
                    self.message_schema(&message, variant, &[]),
                ),
                Pending::Enum(enumeration) => (
                    enumeration.full_name().to_owned(),
                    self.enum_schema(&enumeration),
                ),
            };
            self.schemas.insert(name, schema);
        }
        self.schemas
    }

    // ----- comments and annotations -----

    /// The cleaned leading comment of the element at `path` in `file`.
    fn comment(&mut self, file: &FileDescriptor, path: &[i32]) -> Option<String> {
        let comments = self
            .comments
            .entry(file.name().to_owned())
            .or_insert_with(|| {
                file.file_descriptor_proto()
                    .source_code_info
                    .iter()
                    .flat_map(|info| &info.location)
                    .filter_map(|location| {
                        let text = clean_comment(location.leading_comments());
                        (!text.is_empty()).then(|| (location.path.clone(), text))
                    })
                    .collect()
            });
        comments.get(path).cloned()
    }

    fn field_comment(&mut self, field: &FieldDescriptor) -> Option<String> {
        self.comment(&field.parent_file(), field.path())
    }

    /// The field's `google.api.field_behavior` values.
    fn behaviors(&self, field: &FieldDescriptor) -> Vec<i32> {
        let Some(extension) = &self.field_behavior else {
            return Vec::new();
        };
        let options = field.options();
        if !options.has_extension(extension) {
            return Vec::new();
        }
        match options.get_extension(extension).as_ref() {
            ProtoValue::List(values) => values
                .iter()
                .filter_map(ProtoValue::as_enum_number)
                .collect(),
            ProtoValue::EnumNumber(value) => vec![*value],
            _ => Vec::new(),
        }
    }

    /// Merges the [`Constraints`] of `field` into the schema of its value.
    fn constrain(&self, field: &FieldDescriptor, schema: &mut Value) {
        if let Some(keywords) = self.constraints.fields.get(field.full_name()) {
            merge_keywords(schema, keywords);
        }
    }

    /// The field's comment followed by notes on its behaviour.
    fn field_description(&mut self, field: &FieldDescriptor, behaviors: &[i32]) -> Option<String> {
        let mut parts: Vec<String> = self.field_comment(field).into_iter().collect();
        let notes: Vec<&str> = behaviors
            .iter()
            .filter_map(|behavior| match *behavior {
                OUTPUT_ONLY => Some("Output only: set by the server and ignored in requests."),
                INPUT_ONLY => Some("Input only: never returned in responses."),
                IMMUTABLE => Some("Immutable: may be set on creation, never changed afterwards."),
                IDENTIFIER => Some(
                    "Identifier: assigned by the server on creation and ignored there; sent on update \
                     to identify the resource.",
                ),
                _ => None,
            })
            .collect();
        if !notes.is_empty() {
            parts.push(notes.join(" "));
        }
        join_paragraphs(parts)
    }

    // ----- schemas -----

    /// A reference to the message's component, or the inline form of a well-known type.
    fn message_ref(&mut self, message: &MessageDescriptor, variant: Variant) -> Value {
        if let Some(schema) = well_known_schema(message.full_name()) {
            return schema;
        }
        let name = format!("{}{}", message.full_name(), variant.suffix());
        if self.named.insert(name.clone()) {
            self.pending
                .push(Pending::Message(message.clone(), variant));
        }
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    fn enum_ref(&mut self, enumeration: &EnumDescriptor) -> Value {
        if enumeration.full_name() == "google.protobuf.NullValue" {
            return json!({"type": "null"});
        }
        let name = enumeration.full_name().to_owned();
        if self.named.insert(name.clone()) {
            self.pending.push(Pending::Enum(enumeration.clone()));
        }
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    /// The schema of one value of this kind.
    fn kind_schema(&mut self, kind: &Kind, variant: Variant) -> Value {
        match kind {
            Kind::Message(message) => self.message_ref(message, variant),
            Kind::Enum(enumeration) => self.enum_ref(enumeration),
            scalar => scalar_schema(scalar),
        }
    }

    /// The schema of a field's value: repeated fields are arrays, maps are objects. Lists
    /// and maps are replaced whole, so a PATCH sends complete (`…Input`) items.
    fn field_value_schema(&mut self, field: &FieldDescriptor, variant: Variant) -> Value {
        let whole = if variant == Variant::Patch {
            Variant::Input
        } else {
            variant
        };
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                return json!({"type": "object"});
            };
            let value = self.kind_schema(&entry.map_entry_value_field().kind(), whole);
            let mut schema = json!({"type": "object", "additionalProperties": value});
            if let Some(pattern) = map_key_pattern(&entry.map_entry_key_field().kind()) {
                schema["propertyNames"] = json!({"pattern": pattern});
            }
            schema
        } else if field.is_list() {
            json!({"type": "array", "items": self.kind_schema(&field.kind(), whole)})
        } else {
            self.kind_schema(&field.kind(), variant)
        }
    }

    /// The `variant` schema of `message`, without the fields named in `skip` (those a path
    /// binds, for a whole-message body).
    fn message_schema(
        &mut self,
        message: &MessageDescriptor,
        variant: Variant,
        skip: &[String],
    ) -> Value {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in message.fields() {
            let behaviors = self.behaviors(&field);
            let sent_by_server =
                behaviors.contains(&OUTPUT_ONLY) || behaviors.contains(&IDENTIFIER);
            if skip.iter().any(|name| name == field.name())
                || (variant != Variant::Output && sent_by_server)
            {
                continue;
            }
            let mut schema = self.field_value_schema(&field, variant);
            // A nested `{}` in a PATCH replaces the stored message with an empty one (the
            // implied mask names the field itself), never valid when it has required
            // fields; a non-empty one is merged field by field.
            if let Kind::Message(inner) = field.kind()
                && variant == Variant::Patch
                && !field.is_list()
                && !field.is_map()
                && inner
                    .fields()
                    .any(|f| self.behaviors(&f).contains(&REQUIRED))
            {
                schema["minProperties"] = json!(1);
            }
            if variant != Variant::Output {
                if let Kind::Enum(enumeration) = field.kind()
                    && behaviors.contains(&REQUIRED)
                    && !field.is_list()
                    && !field.is_map()
                {
                    schema = required_enum_schema(&enumeration);
                }
                self.constrain(&field, &mut schema);
                // The JSON parser takes `null` as "unset" (proto3 JSON); for a required
                // field that is a missing value, refused like an absent one.
                if !behaviors.contains(&REQUIRED) {
                    allow_null(&mut schema);
                }
            }
            let description = self.field_description(&field, &behaviors);
            add_description(&mut schema, description);
            if variant == Variant::Output && behaviors.contains(&OUTPUT_ONLY) {
                schema["readOnly"] = json!(true);
            }
            if behaviors.contains(&INPUT_ONLY) {
                schema["writeOnly"] = json!(true);
            }
            let is_required = match variant {
                Variant::Output => !json::omitted_when_unset(&field),
                Variant::Input => behaviors.contains(&REQUIRED),
                Variant::Patch => false,
            };
            if is_required {
                required.push(json!(field.json_name()));
            }
            properties.insert(field.json_name().to_owned(), schema);
        }

        let mut parts: Vec<String> = self
            .comment(&message.parent_file(), message.path())
            .into_iter()
            .collect();
        for oneof in message.oneofs().filter(|oneof| !oneof.is_synthetic()) {
            let names: Vec<String> = oneof
                .fields()
                .map(|field| format!("`{}`", field.json_name()))
                .collect();
            parts.push(format!(
                "At most one of {} is set (oneof `{}`).",
                names.join(", "),
                oneof.name()
            ));
        }

        let mut schema = json!({"type": "object", "properties": properties});
        if !required.is_empty() {
            schema["required"] = Value::Array(required);
        }
        if variant != Variant::Output {
            // The gateway refuses a request member that is not a field ("unrecognized field
            // name"); responses stay open, so clients accept fields added later.
            schema["additionalProperties"] = json!(false);
        }
        add_description(&mut schema, join_paragraphs(parts));
        schema
    }

    fn enum_schema(&mut self, enumeration: &EnumDescriptor) -> Value {
        let names: Vec<String> = enumeration
            .values()
            .map(|value| value.name().to_owned())
            .collect();
        let mut parts: Vec<String> = self
            .comment(&enumeration.parent_file(), enumeration.path())
            .into_iter()
            .collect();
        let values: Vec<String> = enumeration
            .values()
            .map(
                |value| match self.comment(&value.parent_file(), value.path()) {
                    Some(comment) => format!("- `{}`: {comment}", value.name()),
                    None => format!("- `{}`", value.name()),
                },
            )
            .collect();
        parts.push(values.join("\n"));
        let mut schema = json!({"type": "string", "enum": names});
        add_description(&mut schema, join_paragraphs(parts));
        schema
    }

    // ----- paths and parameters -----

    /// The OpenAPI path of the route and its path parameters.
    fn path(&mut self, route: &Route) -> (String, Vec<Value>) {
        let template = &route.template;
        let input = route.rpc.input();
        let mut path = String::new();
        let mut parameters = Vec::new();
        let mut anonymous = 0;
        let mut index = 0;
        while index < template.segments.len() {
            if let Some(variable) = template.variables.iter().find(|v| v.start == index) {
                let pattern = &template.segments[variable.start..variable.end];
                if let Some((expanded, mut more)) =
                    self.expanded_variable(&input, variable, pattern, &parameters)
                {
                    path.push_str(&expanded);
                    parameters.append(&mut more);
                    index = variable.end.max(index + 1);
                    continue;
                }
                path.push_str("/{");
                path.push_str(&variable.field_path);
                path.push('}');
                parameters.push(self.path_parameter(
                    &input,
                    variable,
                    &template.segments[variable.start..variable.end],
                ));
                index = variable.end.max(index + 1);
                continue;
            }
            match &template.segments[index] {
                Segment::Literal(literal) => {
                    path.push('/');
                    path.push_str(literal);
                }
                wildcard => {
                    // A wildcard outside any variable: matched, but bound to no field.
                    anonymous += 1;
                    let name = format!("_segment{anonymous}");
                    path.push_str(&format!("/{{{name}}}"));
                    let description = if *wildcard == Segment::Rest {
                        "The rest of the path (`**`); not passed to the RPC. Its `/` separators are sent unencoded."
                    } else {
                        "Any one path segment (`*`); not passed to the RPC."
                    };
                    parameters.push(json!({
                        "name": name,
                        "in": "path",
                        "required": true,
                        "description": description,
                        "schema": {"type": "string"},
                    }));
                }
            }
            index += 1;
        }
        if path.is_empty() {
            path.push('/');
        }
        if let Some(verb) = &template.verb {
            path.push(':');
            path.push_str(verb);
        }
        (path, parameters)
    }

    /// A resource-name variable (literal collections and `*` ids, e.g. `customers/*` or
    /// `customers/*/notes/*`) written out as path segments, with one parameter per id named
    /// after the resource pattern (`customers/{customer}/notes/{note}`). `None` for other
    /// variables. Names already taken by `earlier` parameters get a numeric suffix.
    fn expanded_variable(
        &mut self,
        input: &MessageDescriptor,
        variable: &Variable,
        pattern: &[Segment],
        earlier: &[Value],
    ) -> Option<(String, Vec<Value>)> {
        let resource_like = pattern.iter().any(|s| matches!(s, Segment::Literal(_)))
            && pattern.contains(&Segment::Any)
            && !pattern.contains(&Segment::Rest);
        if !resource_like {
            return None;
        }
        let field =
            resolve_path(input, &variable.field_path).and_then(|fields| fields.last().cloned());
        let comment = field.as_ref().and_then(|field| self.field_comment(field));
        let form = self.resource_form(field.as_ref(), pattern);
        let mut taken: Vec<String> = earlier
            .iter()
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect();
        let mut path = String::new();
        let mut parameters = Vec::new();
        let mut previous: Option<&str> = None;
        for (segment, part) in pattern.iter().zip(form.split('/')) {
            match segment {
                Segment::Literal(literal) => {
                    path.push('/');
                    path.push_str(literal);
                    previous = Some(literal);
                }
                _ => {
                    let base = part
                        .strip_prefix('{')
                        .and_then(|p| p.strip_suffix('}'))
                        .filter(|p| !p.is_empty() && !p.contains('='))
                        .map_or_else(|| previous.map_or("id".to_owned(), singular), str::to_owned);
                    let mut name = base.clone();
                    let mut n = 1;
                    while taken.contains(&name) {
                        n += 1;
                        name = format!("{base}_{n}");
                    }
                    taken.push(name.clone());
                    path.push_str(&format!("/{{{name}}}"));
                    let note = format!(
                        "The `{{{base}}}` segment of `{field}`, a resource name of the form \
                         `{form}`.",
                        field = variable.field_path,
                    );
                    let description =
                        join_paragraphs(comment.clone().into_iter().chain([note]).collect());
                    let specific = field
                        .as_ref()
                        .map(|field| format!("{}:{base}", field.full_name()));
                    let id_pattern = specific
                        .and_then(|key| self.constraints.ids.get(&key))
                        .or_else(|| self.constraints.ids.get(&base))
                        .map_or("^[^/]+$", String::as_str);
                    let mut parameter = json!({
                        "name": name,
                        "in": "path",
                        "required": true,
                        "schema": {"type": "string", "pattern": id_pattern},
                    });
                    if let Some(description) = description {
                        parameter["description"] = json!(description);
                    }
                    parameters.push(parameter);
                    previous = None;
                }
            }
        }
        Some((path, parameters))
    }

    fn path_parameter(
        &mut self,
        input: &MessageDescriptor,
        variable: &Variable,
        pattern: &[Segment],
    ) -> Value {
        let field =
            resolve_path(input, &variable.field_path).and_then(|fields| fields.last().cloned());
        let comment = field.as_ref().and_then(|field| self.field_comment(field));
        let (schema, description) = if pattern == [Segment::Any] {
            let schema = match &field {
                Some(field) => {
                    let mut schema = query_value_schema(&field.kind());
                    self.constrain(field, &mut schema);
                    schema
                }
                None => json!({"type": "string"}),
            };
            (schema, comment)
        } else {
            let form = self.resource_form(field.as_ref(), pattern);
            let what = if pattern.contains(&Segment::Rest) {
                format!("A path of the form `{form}`, where `**` is any number of segments")
            } else {
                format!("A resource name of the form `{form}`")
            };
            let note = format!(
                "{what}, e.g. `{example}`. The value spans several path segments: its `/` \
                 separators may be sent as they are (`{example}`) or percent-encoded \
                 (`{encoded}`, as generated clients send them); the gateway accepts both. Other \
                 reserved characters are percent-encoded as usual.",
                example = example_value(pattern),
                encoded = example_value(pattern).replace('/', "%2F"),
            );
            let mut schema = json!({"type": "string", "pattern": pattern_regex(pattern)});
            if let Some(field) = &field {
                // The field's own constraints narrow the template's shape: a pattern there
                // replaces the template's (one pattern generates and validates easily).
                self.constrain(field, &mut schema);
            }
            (
                schema,
                join_paragraphs(comment.into_iter().chain([note]).collect()),
            )
        };
        let mut parameter = json!({
            "name": variable.field_path,
            "in": "path",
            "required": true,
            "schema": schema,
        });
        if let Some(description) = description {
            parameter["description"] = json!(description);
        }
        parameter
    }

    /// How a multi-segment variable's value looks, e.g. `customers/{customer}`: from the
    /// `google.api.resource` patterns of the field's resource when one fits, else made up
    /// from the template.
    fn resource_form(&mut self, field: Option<&FieldDescriptor>, pattern: &[Segment]) -> String {
        if let Some(field) = field {
            let mut candidates = Vec::new();
            if let Some(kind) = self.reference_type(field) {
                candidates.extend(self.resource_patterns(&kind));
            }
            if let Some(resource) = self.pool.get_extension_by_name("google.api.resource") {
                let options = field.parent_message().options();
                if let Some(ProtoValue::Message(descriptor)) = extension_value(&options, &resource)
                {
                    candidates.extend(string_list(&descriptor, "pattern"));
                }
            }
            if let Some(found) = candidates
                .into_iter()
                .find(|candidate| pattern_fits(candidate, pattern))
            {
                return found;
            }
        }
        let mut parts = Vec::new();
        let mut previous: Option<&str> = None;
        for segment in pattern {
            match segment {
                Segment::Literal(literal) => {
                    parts.push(literal.clone());
                    previous = Some(literal);
                }
                Segment::Any => {
                    parts.push(format!(
                        "{{{}}}",
                        previous.map_or("segment".to_owned(), singular)
                    ));
                    previous = None;
                }
                Segment::Rest => parts.push("**".to_owned()),
            }
        }
        parts.join("/")
    }

    /// The `type` of the field's `google.api.resource_reference`.
    fn reference_type(&self, field: &FieldDescriptor) -> Option<String> {
        let extension = self
            .pool
            .get_extension_by_name("google.api.resource_reference")?;
        let options = field.options();
        if !options.has_extension(&extension) {
            return None;
        }
        match options.get_extension(&extension).as_ref() {
            ProtoValue::Message(reference) => string_field(reference, "type"),
            _ => None,
        }
    }

    /// The patterns of a resource type, from `google.api.resource` on messages and
    /// `google.api.resource_definition` on files.
    fn resource_patterns(&mut self, kind: &str) -> Vec<String> {
        let pool = self.pool;
        let resources = self.resources.get_or_insert_with(|| {
            let mut resources: HashMap<String, Vec<String>> = HashMap::new();
            let mut add = |descriptor: &DynamicMessage| {
                if let Some(kind) = string_field(descriptor, "type") {
                    resources
                        .entry(kind)
                        .or_default()
                        .extend(string_list(descriptor, "pattern"));
                }
            };
            if let Some(extension) = pool.get_extension_by_name("google.api.resource") {
                for message in pool.all_messages() {
                    if let Some(ProtoValue::Message(descriptor)) =
                        extension_value(&message.options(), &extension)
                    {
                        add(&descriptor);
                    }
                }
            }
            if let Some(extension) = pool.get_extension_by_name("google.api.resource_definition") {
                for file in pool.files() {
                    if let Some(ProtoValue::List(list)) =
                        extension_value(&file.options(), &extension)
                    {
                        for descriptor in list.iter().filter_map(ProtoValue::as_message) {
                            add(descriptor);
                        }
                    }
                }
            }
            resources
        });
        resources.get(kind).cloned().unwrap_or_default()
    }

    /// Query parameters: the input fields bound neither by the path nor by the body.
    fn query_parameters(&mut self, route: &Route) -> Vec<Value> {
        let input = route.rpc.input();
        let body_field = match &route.body {
            BodyTarget::Whole => return Vec::new(),
            BodyTarget::Field(field) => Some(field.number()),
            BodyTarget::None => None,
        };
        let bound: Vec<Vec<u32>> = route
            .template
            .variables
            .iter()
            .filter_map(|variable| resolve_path(&input, &variable.field_path))
            .map(|fields| fields.iter().map(FieldDescriptor::number).collect())
            .collect();
        // How the gateway fills in an absent top-level `update_mask`.
        let mask_note = match (&route.body, &route.method) {
            (BodyTarget::Field(field), &Method::PATCH)
                if matches!(field.kind(), Kind::Message(_)) =>
            {
                Some(
                    "When absent, the gateway derives it from the fields present in the request body.",
                )
            }
            (_, &Method::PUT) => {
                Some("When absent, the gateway sends `*`: every field is replaced.")
            }
            _ => None,
        };
        let mut parameters = Vec::new();
        let mut query = Query {
            bound: &bound,
            body_field,
            mask_note,
            numbers: Vec::new(),
            stack: vec![input.full_name().to_owned()],
        };
        self.collect_query(&input, "", true, &mut query, &mut parameters);
        parameters
    }

    fn collect_query(
        &mut self,
        message: &MessageDescriptor,
        prefix: &str,
        required_so_far: bool,
        query: &mut Query<'_>,
        parameters: &mut Vec<Value>,
    ) {
        for field in message.fields() {
            if query.numbers.is_empty() && query.body_field == Some(field.number()) {
                continue;
            }
            query.numbers.push(field.number());
            let skip = field.is_map() || query.bound.contains(&query.numbers);
            if !skip {
                let name = if prefix.is_empty() {
                    field.json_name().to_owned()
                } else {
                    format!("{prefix}.{}", field.json_name())
                };
                let behaviors = self.behaviors(&field);
                let required = required_so_far && behaviors.contains(&REQUIRED);
                match field.kind() {
                    Kind::Message(inner) if !is_scalar_well_known(inner.full_name()) => {
                        let opaque = inner.full_name().starts_with("google.protobuf.");
                        if !field.is_list()
                            && !opaque
                            && !query.stack.iter().any(|seen| seen == inner.full_name())
                        {
                            query.stack.push(inner.full_name().to_owned());
                            self.collect_query(&inner, &name, required, query, parameters);
                            query.stack.pop();
                        }
                    }
                    kind => {
                        let value = match &kind {
                            Kind::Enum(enumeration) if required && !field.is_list() => {
                                required_enum_schema(enumeration)
                            }
                            kind => query_value_schema(kind),
                        };
                        let mut parameter = json!({"name": name, "in": "query"});
                        if field.is_list() {
                            parameter["schema"] = json!({"type": "array", "items": value});
                            self.constrain(&field, &mut parameter["schema"]);
                            parameter["style"] = json!("form");
                            parameter["explode"] = json!(true);
                        } else {
                            parameter["schema"] = value;
                            self.constrain(&field, &mut parameter["schema"]);
                        }
                        if required {
                            parameter["required"] = json!(true);
                        }
                        let mut description: Vec<String> = self
                            .field_description(&field, &behaviors)
                            .into_iter()
                            .collect();
                        if query.numbers.len() == 1
                            && field.name() == "update_mask"
                            && inner_name(&field) == "google.protobuf.FieldMask"
                        {
                            description.extend(query.mask_note.map(str::to_owned));
                        }
                        if let Some(description) = join_paragraphs(description) {
                            parameter["description"] = json!(description);
                        }
                        parameters.push(parameter);
                    }
                }
            }
            query.numbers.pop();
        }
    }

    // ----- operations -----

    /// The RPC name for its main binding; for an additional binding a name saying what is
    /// different ([`additional_operation_id`]); made unique with a counter if need be.
    fn operation_id(&self, route: &Route, used: &mut BTreeSet<String>) -> String {
        let name = route.rpc.name();
        let base = match primary_binding(self.pool, &route.rpc) {
            Some((method, path)) if !(method == route.method && path == route.template.source) => {
                additional_operation_id(name, &method, &path, route)
            }
            _ => name.to_owned(),
        };
        let mut id = base.clone();
        let mut counter = 1;
        while used.contains(&id) {
            counter += 1;
            id = format!("{base}_{counter}");
        }
        used.insert(id.clone());
        id
    }

    fn operation(
        &mut self,
        route: &Route,
        operation_id: String,
        mut parameters: Vec<Value>,
    ) -> Value {
        let rpc = &route.rpc;
        let mut operation = Map::new();
        operation.insert("operationId".into(), json!(operation_id));
        operation.insert("tags".into(), json!([rpc.parent_service().name()]));

        let comment = self.comment(&rpc.parent_file(), rpc.path());
        if let Some(comment) = &comment {
            operation.insert("summary".into(), json!(first_sentence(comment)));
        }
        let mut description: Vec<String> = comment.into_iter().collect();
        if rpc.is_server_streaming() {
            description.push(format!(
                "Server-streaming RPC: the response is a stream of `{}` messages, as \
                 newline-delimited JSON (`application/x-ndjson`), or as server-sent events when \
                 the request accepts `text/event-stream`.",
                rpc.output().name()
            ));
        }
        description.push(format!("gRPC: `{}`.", route.grpc_path));
        if let Some(description) = join_paragraphs(description) {
            operation.insert("description".into(), json!(description));
        }

        parameters.extend(self.query_parameters(route));
        parameters.extend(self.header_parameters(route));
        if !parameters.is_empty() {
            operation.insert("parameters".into(), Value::Array(parameters));
        }
        if let Some(body) = self.request_body(route) {
            operation.insert("requestBody".into(), body);
        }
        operation.insert("responses".into(), self.responses(route));
        operation.insert("x-grpc-method".into(), json!(route.grpc_path));
        Value::Object(operation)
    }

    /// The request headers the gateway copies into the request message.
    fn header_parameters(&self, route: &Route) -> Vec<Value> {
        let input = route.rpc.input();
        let mut parameters = Vec::new();
        let body_sets_etag = match &route.body {
            BodyTarget::Field(field) => match field.kind() {
                Kind::Message(resource) => has_string_field(&resource, "etag"),
                _ => false,
            },
            _ => false,
        };
        if !route.creates() && (has_string_field(&input, "etag") || body_sets_etag) {
            parameters.push(json!({
                "name": "If-Match",
                "in": "header",
                "schema": {"type": "string"},
                "description": "Makes the write conditional: the value, an `ETag` from an earlier \
                    response, is sent as the `etag` field (of the request, or else of the resource in \
                    the body). If it is no longer current the answer is 412 Precondition Failed. `*` is \
                    ignored.",
            }));
        }
        if has_string_field(&input, "request_id") {
            let mut schema = json!({"type": "string"});
            if let Some(field) = input.get_field_by_name("request_id") {
                self.constrain(&field, &mut schema);
            }
            parameters.push(json!({
                "name": "Idempotency-Key",
                "in": "header",
                "schema": schema,
                "description": "Sent as the request's `request_id`, which identifies retries of the \
                    same request.",
            }));
        }
        parameters
    }

    fn request_body(&mut self, route: &Route) -> Option<Value> {
        let input = route.rpc.input();
        let path_fields: Vec<String> = route
            .template
            .variables
            .iter()
            .map(|variable| format!("`{}`", variable.field_path))
            .collect();
        let from_path = (!path_fields.is_empty()).then(|| {
            format!(
                "Fields bound by the path ({}) are taken from the path.",
                path_fields.join(", ")
            )
        });
        // A PATCH changes what it carries; other methods send whole messages.
        let variant = if route.method == Method::PATCH {
            Variant::Patch
        } else {
            Variant::Input
        };
        let (schema, description, required) = match &route.body {
            BodyTarget::None => return None,
            BodyTarget::Whole => {
                let bound: Vec<Vec<FieldDescriptor>> = route
                    .template
                    .variables
                    .iter()
                    .filter_map(|variable| resolve_path(&input, &variable.field_path))
                    .collect();
                let required = input.fields().any(|field| {
                    !bound
                        .iter()
                        .any(|fields| fields.first().is_some_and(|f| f.name() == field.name()))
                        && self.behaviors(&field).contains(&REQUIRED)
                });
                // Top-level fields the path sets are no part of the body (inline: which
                // fields those are depends on the route).
                let skip: Vec<String> = bound
                    .iter()
                    .filter_map(|fields| match fields.as_slice() {
                        [field] => Some(field.name().to_owned()),
                        _ => None,
                    })
                    .collect();
                let description = format!("The `{}` message.", input.name());
                let schema = self.message_schema(&input, variant, &skip);
                (
                    schema,
                    join_paragraphs([description].into_iter().chain(from_path).collect()),
                    required,
                )
            }
            BodyTarget::Field(field) => {
                let behaviors = self.behaviors(field);
                let comment = self.field_comment(field);
                let schema = self.field_value_schema(field, variant);
                // A PATCH without a body changes nothing (no field is present, AIP-134).
                let required = behaviors.contains(&REQUIRED) && variant != Variant::Patch;
                (
                    schema,
                    join_paragraphs(comment.into_iter().chain(from_path).collect()),
                    required,
                )
            }
        };
        let mut body = json!({
            "required": required,
            "content": {"application/json": {"schema": schema}},
        });
        if let Some(description) = description {
            body["description"] = json!(description);
        }
        Some(body)
    }

    fn responses(&mut self, route: &Route) -> Value {
        let rpc = &route.rpc;
        let output = rpc.output();
        let (schema, what) = match &route.response_body {
            Some(field) => {
                let what = format!(
                    "The `{}` field of the `{}` response.",
                    field.json_name(),
                    output.name()
                );
                (self.field_value_schema(field, Variant::Output), what)
            }
            None if output.full_name() == "google.protobuf.Empty" => (
                self.message_ref(&output, Variant::Output),
                "Done: an empty JSON object, `{}`.".to_owned(),
            ),
            None => (
                self.message_ref(&output, Variant::Output),
                format!("The `{}`.", output.name()),
            ),
        };
        // The gateway answers 201 to a unary POST `Create*`.
        let created = route.creates() && !rpc.is_server_streaming();
        let mut success = Map::new();
        let mut headers = Map::new();
        if rpc.is_server_streaming() {
            let description = format!(
                "A stream of `{}` messages: newline-delimited JSON, or server-sent events \
                 (`data: <message>`) when the request accepts `text/event-stream`. Each item \
                 follows the schema. An error after the stream has started ends it with the \
                 error object instead (as a last line, or as an `event: error` event).",
                output.name()
            );
            success.insert("description".into(), json!(description));
            success.insert(
                "content".into(),
                json!({
                    "application/x-ndjson": {"schema": schema},
                    "text/event-stream": {"schema": schema},
                }),
            );
        } else {
            let description = if created {
                format!("Created. {what}")
            } else {
                what
            };
            success.insert("description".into(), json!(description));
            success.insert(
                "content".into(),
                json!({"application/json": {"schema": schema}}),
            );
            // Read from the whole response message, even with `response_body`.
            if has_string_field(&output, "etag") {
                headers.insert(
                    "ETag".into(),
                    json!({
                        "description": "The response's `etag` field as an entity tag (quoted \
                            unless it already is); absent when the field is empty. Send it back \
                            in `If-Match` to make a later write conditional.",
                        "schema": {"type": "string"},
                    }),
                );
            }
        }
        if created && let Some(example) = self.location_examples.get(route.rpc.output().full_name())
        {
            headers.insert(
                "Location".into(),
                json!({
                    "description": format!(
                        "The path of the created resource, e.g. `{example}`: the GET route for \
                         its `name`."
                    ),
                    "schema": {"type": "string", "format": "uri-reference"},
                }),
            );
        }
        if !headers.is_empty() {
            success.insert("headers".into(), Value::Object(headers));
        }

        let mut responses = Map::new();
        responses.insert(
            if created { "201" } else { "200" }.into(),
            Value::Object(success),
        );
        let body_errors = match route.body {
            BodyTarget::None => &[][..],
            _ => &BODY_ERROR_RESPONSES[..],
        };
        for (code, description) in ERROR_RESPONSES.iter().chain(body_errors) {
            responses.insert(
                (*code).into(),
                json!({"$ref": "#/components/responses/Error", "description": description}),
            );
        }
        responses.insert(
            "default".into(),
            json!({"$ref": "#/components/responses/Error", "description": "Any other error."}),
        );
        Value::Object(responses)
    }
}

/// Whether the message has a singular string field of this name.
fn has_string_field(message: &MessageDescriptor, name: &str) -> bool {
    message
        .get_field_by_name(name)
        .is_some_and(|field| field.kind() == Kind::String && !field.is_list())
}

/// The full name of a message field's type (empty for other fields).
fn inner_name(field: &FieldDescriptor) -> String {
    match field.kind() {
        Kind::Message(message) if !field.is_list() => message.full_name().to_owned(),
        _ => String::new(),
    }
}

/// Whether the gateway answers this route with 201 Created: a POST to a `Create*` RPC.
/// State of the walk over the input message for query parameters.
struct Query<'a> {
    /// Field-number paths bound by path variables.
    bound: &'a [Vec<u32>],
    /// The top-level body field, if any.
    body_field: Option<u32>,
    /// Added to the description of a top-level `update_mask`.
    mask_note: Option<&'static str>,
    /// Field numbers from the input message to the current field.
    numbers: Vec<u32>,
    /// Messages being walked, against recursion.
    stack: Vec<String>,
}

/// The operation id of an additional binding of the RPC `name`, whose main binding is
/// `primary_method primary_path`: `Replace…` for the PUT beside a PATCH `Update…`; for a
/// binding under another parent, the parent's noun in place of the main one's
/// (`ListCustomerEvents` under `companies/*` is `ListCompanyEvents`) or after the verb when
/// the main binding has no parent (`ListCustomers` under `companies/*` is
/// `ListCompanyCustomers`); else `Name_method`.
fn additional_operation_id(
    name: &str,
    primary_method: &Method,
    primary_path: &str,
    route: &Route,
) -> String {
    if route.method == Method::PUT
        && *primary_method == Method::PATCH
        && let Some(rest) = name.strip_prefix("Update")
    {
        return format!("Replace{rest}");
    }
    let primary_parent = PathTemplate::parse(primary_path)
        .ok()
        .and_then(|template| parent_noun(&template));
    if let Some(parent) = parent_noun(&route.template) {
        match primary_parent {
            Some(primary) if primary != parent && name.contains(&primary) => {
                return name.replacen(&primary, &parent, 1);
            }
            None => {
                let verb_end = name
                    .char_indices()
                    .skip(1)
                    .find(|(_, c)| c.is_ascii_uppercase())
                    .map_or(name.len(), |(i, _)| i);
                return format!("{}{parent}{}", &name[..verb_end], &name[verb_end..]);
            }
            Some(_) => {}
        }
    }
    format!("{name}_{}", route.method.as_str().to_ascii_lowercase())
}

/// The UpperCamelCase noun of the collection a template's first variable starts with
/// (`Company` for `/v1/{parent=companies/*}/customers`).
fn parent_noun(template: &PathTemplate) -> Option<String> {
    let variable = template.variables.first()?;
    let Segment::Literal(collection) = template.segments.get(variable.start)? else {
        return None;
    };
    Some(
        singular(collection)
            .split(['_', '-'])
            .map(|word| {
                let mut chars = word.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            })
            .collect(),
    )
}

/// The method and path of the RPC's main `google.api.http` binding.
fn primary_binding(pool: &DescriptorPool, rpc: &MethodDescriptor) -> Option<(Method, String)> {
    let http = pool.get_extension_by_name("google.api.http")?;
    let options = rpc.options();
    if !options.has_extension(&http) {
        return None;
    }
    let ProtoValue::Message(rule) = options.get_extension(&http).into_owned() else {
        return None;
    };
    for (name, method) in [
        ("get", Method::GET),
        ("put", Method::PUT),
        ("post", Method::POST),
        ("delete", Method::DELETE),
        ("patch", Method::PATCH),
    ] {
        if let Some(path) = string_field(&rule, name) {
            return Some((method, path));
        }
    }
    match rule.get_field_by_name("custom")?.as_ref() {
        ProtoValue::Message(custom) => {
            let kind = string_field(custom, "kind")?;
            let path = string_field(custom, "path")?;
            Some((Method::from_bytes(kind.as_bytes()).ok()?, path))
        }
        _ => None,
    }
}

/// The value of an extension the options set, if they set it.
fn extension_value(
    options: &DynamicMessage,
    extension: &ExtensionDescriptor,
) -> Option<ProtoValue> {
    options
        .has_extension(extension)
        .then(|| options.get_extension(extension).into_owned())
}

/// A non-empty string field of a dynamic message.
fn string_field(message: &DynamicMessage, name: &str) -> Option<String> {
    match message.get_field_by_name(name)?.as_ref() {
        ProtoValue::String(text) if !text.is_empty() => Some(text.clone()),
        _ => None,
    }
}

/// A repeated string field of a dynamic message.
fn string_list(message: &DynamicMessage, name: &str) -> Vec<String> {
    match message.get_field_by_name(name).as_deref() {
        Some(ProtoValue::List(values)) => values
            .iter()
            .filter_map(|value| value.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Proto scalars in proto3 JSON.
fn scalar_schema(kind: &Kind) -> Value {
    match kind {
        Kind::Double => json!({"type": "number", "format": "double"}),
        Kind::Float => json!({"type": "number", "format": "float"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Uint32 | Kind::Fixed32 => {
            json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": u32::MAX})
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => json!({"type": "string", "format": "int64"}),
        Kind::Uint64 | Kind::Fixed64 => json!({"type": "string", "format": "uint64"}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::String => json!({"type": "string"}),
        Kind::Bytes => json!({"type": "string", "format": "byte"}),
        Kind::Message(_) | Kind::Enum(_) => json!({}),
    }
}

/// The inline schema of a well-known type, which has a special JSON form.
fn well_known_schema(full_name: &str) -> Option<Value> {
    let nullable = |kind: Kind| {
        let mut schema = scalar_schema(&kind);
        if let Some(scalar) = schema.get("type").cloned() {
            schema["type"] = json!([scalar, "null"]);
        }
        schema
    };
    Some(match full_name {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => {
            json!({"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?s$"})
        }
        "google.protobuf.FieldMask" => json!({
            "type": "string",
            "description": "A field mask: comma-separated lowerCamelCase field paths, e.g. `givenName,address.locality`.",
        }),
        "google.protobuf.Empty" => json!({"type": "object"}),
        "google.protobuf.Struct" => json!({"type": "object", "additionalProperties": true}),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({"type": "array", "items": {}}),
        "google.protobuf.Any" => json!({
            "type": "object",
            "properties": {"@type": {
                "type": "string",
                "description": "The type URL, e.g. `type.googleapis.com/google.rpc.ErrorInfo`.",
            }},
            "required": ["@type"],
            "additionalProperties": true,
        }),
        "google.protobuf.DoubleValue" => nullable(Kind::Double),
        "google.protobuf.FloatValue" => nullable(Kind::Float),
        "google.protobuf.Int64Value" => nullable(Kind::Int64),
        "google.protobuf.UInt64Value" => nullable(Kind::Uint64),
        "google.protobuf.Int32Value" => nullable(Kind::Int32),
        "google.protobuf.UInt32Value" => nullable(Kind::Uint32),
        "google.protobuf.BoolValue" => nullable(Kind::Bool),
        "google.protobuf.StringValue" => nullable(Kind::String),
        "google.protobuf.BytesValue" => nullable(Kind::Bytes),
        _ => return None,
    })
}

/// Well-known messages whose JSON form is a single value, usable in a query string.
fn is_scalar_well_known(full_name: &str) -> bool {
    matches!(
        full_name,
        "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
            | "google.protobuf.FieldMask"
            | "google.protobuf.DoubleValue"
            | "google.protobuf.FloatValue"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.BoolValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
    )
}

/// The value of a `REQUIRED` enum field in a request: its values but the zero one, inline.
/// The zero value (`…_UNSPECIFIED`, AIP-126) is what an unset field holds (proto3), so a
/// required field that holds it is missing and refused; the enum's component keeps every
/// value, since responses may carry any.
fn required_enum_schema(enumeration: &EnumDescriptor) -> Value {
    let names: Vec<String> = enumeration
        .values()
        .filter(|value| value.number() != 0)
        .map(|value| value.name().to_owned())
        .collect();
    json!({"type": "string", "enum": names})
}

/// The schema of a single value in a query string or path segment: scalars, inline enums,
/// and the scalar well-known types (wrappers without `null`).
fn query_value_schema(kind: &Kind) -> Value {
    match kind {
        Kind::Enum(enumeration) => {
            let names: Vec<String> = enumeration
                .values()
                .map(|value| value.name().to_owned())
                .collect();
            json!({"type": "string", "enum": names})
        }
        Kind::Message(message) => {
            let unwrapped = match message.full_name() {
                "google.protobuf.DoubleValue" => Kind::Double,
                "google.protobuf.FloatValue" => Kind::Float,
                "google.protobuf.Int64Value" => Kind::Int64,
                "google.protobuf.UInt64Value" => Kind::Uint64,
                "google.protobuf.Int32Value" => Kind::Int32,
                "google.protobuf.UInt32Value" => Kind::Uint32,
                "google.protobuf.BoolValue" => Kind::Bool,
                "google.protobuf.BytesValue" => Kind::Bytes,
                other => {
                    return well_known_schema(other).unwrap_or_else(|| json!({"type": "string"}));
                }
            };
            scalar_schema(&unwrapped)
        }
        scalar => scalar_schema(scalar),
    }
}

/// The pattern map keys of this kind follow in JSON, where keys are strings.
fn map_key_pattern(kind: &Kind) -> Option<&'static str> {
    match kind {
        Kind::Int32
        | Kind::Sint32
        | Kind::Sfixed32
        | Kind::Int64
        | Kind::Sint64
        | Kind::Sfixed64 => Some("^-?[0-9]+$"),
        Kind::Uint32 | Kind::Fixed32 | Kind::Uint64 | Kind::Fixed64 => Some("^[0-9]+$"),
        Kind::Bool => Some("^(true|false)$"),
        _ => None,
    }
}

/// Adds `keywords` to `schema`; where both hold an object under one key, recursively.
fn merge_keywords(schema: &mut Value, keywords: &Value) {
    let (Some(schema), Some(keywords)) = (schema.as_object_mut(), keywords.as_object()) else {
        return;
    };
    for (key, value) in keywords {
        match schema.get_mut(key) {
            Some(existing) if existing.is_object() && value.is_object() => {
                merge_keywords(existing, value);
            }
            _ => {
                schema.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Lets a request value also be `null`: a type gains `"null"`, a reference becomes `anyOf`
/// the reference and `null`; the other keywords (descriptions, limits) stay beside.
fn allow_null(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(reference) = object.remove("$ref") {
        object.insert(
            "anyOf".into(),
            json!([{"$ref": reference}, {"type": "null"}]),
        );
    } else if let Some(Value::String(kind)) = object.get("type") {
        let kind = kind.clone();
        object.insert("type".into(), json!([kind, "null"]));
    }
}

/// Sets or extends the schema's description.
fn add_description(schema: &mut Value, description: Option<String>) {
    let Some(description) = description else {
        return;
    };
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let text = match object.get("description").and_then(Value::as_str) {
        Some(existing) => format!("{description}\n\n{existing}"),
        None => description,
    };
    object.insert("description".into(), json!(text));
}

fn join_paragraphs(parts: Vec<String>) -> Option<String> {
    let parts: Vec<String> = parts
        .into_iter()
        .filter(|part| !part.trim().is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n\n"))
}

/// A proto comment as a description: lines trimmed and joined, paragraphs kept.
fn clean_comment(text: &str) -> String {
    let mut paragraphs = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            if !current.is_empty() {
                paragraphs.push(current.join(" "));
                current.clear();
            }
        } else {
            current.push(line);
        }
    }
    if !current.is_empty() {
        paragraphs.push(current.join(" "));
    }
    paragraphs.join("\n\n")
}

/// The first sentence of a description, for a summary.
fn first_sentence(text: &str) -> String {
    let paragraph = text.split("\n\n").next().unwrap_or(text);
    let mut from = 0;
    while let Some(offset) = paragraph[from..].find(". ") {
        let end = from + offset + 1;
        let before = &paragraph[..end];
        if !(before.ends_with("e.g.") || before.ends_with("i.e.") || before.ends_with("etc.")) {
            return before.to_owned();
        }
        from = end;
    }
    paragraph.to_owned()
}

/// Whether a resource pattern (`customers/{customer}`) has the shape of template segments.
fn pattern_fits(candidate: &str, pattern: &[Segment]) -> bool {
    let parts: Vec<&str> = candidate.split('/').collect();
    parts.len() == pattern.len()
        && parts
            .iter()
            .zip(pattern)
            .all(|(part, segment)| match segment {
                Segment::Literal(literal) => part == literal,
                Segment::Any => {
                    part.starts_with('{') && part.ends_with('}') && !part.contains("=**")
                }
                Segment::Rest => part.starts_with('{') && part.ends_with('}'),
            })
}

/// A plausible noun for one id under a collection: `customers` -> `customer`.
fn singular(collection: &str) -> String {
    if let Some(stem) = collection.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = collection.strip_suffix("lves") {
        format!("{stem}lf")
    } else if let Some(stem) = ["sses", "xes", "ches", "shes"]
        .into_iter()
        .find_map(|suffix| collection.strip_suffix(suffix).map(|stem| (stem, suffix)))
        .map(|(stem, suffix)| format!("{stem}{}", &suffix[..suffix.len() - 2]))
    {
        stem
    } else if let Some(stem) = collection.strip_suffix('s') {
        stem.to_owned()
    } else {
        collection.to_owned()
    }
}

/// An example value for a multi-segment variable: `customers/123`.
fn example_value(pattern: &[Segment]) -> String {
    pattern
        .iter()
        .map(|segment| match segment {
            Segment::Literal(literal) => literal.as_str(),
            Segment::Any => "123",
            Segment::Rest => "a/b",
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// An ECMA-262 regular expression for the value of a multi-segment variable.
fn pattern_regex(pattern: &[Segment]) -> String {
    let mut regex = String::from("^");
    for (index, segment) in pattern.iter().enumerate() {
        match segment {
            Segment::Literal(literal) => {
                if index > 0 {
                    regex.push('/');
                }
                for c in literal.chars() {
                    if r"\^$.|?*+()[]{}/".contains(c) {
                        regex.push('\\');
                    }
                    regex.push(c);
                }
            }
            Segment::Any => {
                if index > 0 {
                    regex.push('/');
                }
                regex.push_str("[^/]+");
            }
            Segment::Rest => regex.push_str(if index > 0 { "(/.*)?" } else { ".*" }),
        }
    }
    regex.push('$');
    regex
}

/// The schema of the error body (AIP-193).
fn error_schema() -> Value {
    json!({
        "type": "object",
        "description": "The error body (AIP-193): a `google.rpc.Status` under `error`.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                // `HttpError::body` always writes all four (`details` may be empty).
                "required": ["code", "message", "status", "details"],
                "properties": {
                    "code": {
                        "type": "integer",
                        "format": "int32",
                        "description": "The HTTP status code.",
                    },
                    "message": {
                        "type": "string",
                        "description": "A developer-facing error message, in English.",
                    },
                    "status": {
                        "type": "string",
                        "description": "The gRPC status code name.",
                        "enum": [
                            "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                            "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                            "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
                            "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
                        ],
                    },
                    "details": {
                        "type": "array",
                        "description": "Error details (`google.rpc.BadRequest`, `ErrorInfo`, `ResourceInfo`, ...) as `Any`.",
                        "items": {
                            "type": "object",
                            "properties": {"@type": {"type": "string"}},
                            "required": ["@type"],
                            "additionalProperties": true,
                        },
                    },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::routes;

    /// The customer protos. `protox::compile` returns a `prost_types::FileDescriptorSet`,
    /// which drops extension options (`google.api.http`, `google.api.field_behavior`), so
    /// the pool is decoded from the encoded set, which keeps them.
    fn pool() -> DescriptorPool {
        let bytes = protox::Compiler::new([concat!(env!("CARGO_MANIFEST_DIR"), "/../proto")])
            .unwrap()
            .include_source_info(true)
            .include_imports(true)
            .open_files(["customer/v1/customer_service.proto"])
            .unwrap()
            .encode_file_descriptor_set();
        DescriptorPool::decode(bytes.as_slice()).unwrap()
    }

    fn customer_document() -> Value {
        let pool = pool();
        let routes = routes(&pool, &["customer.v1.CustomerService".into()]).unwrap();
        let info = Info {
            title: "Customer API".into(),
            version: "v1".into(),
            description: Some("Customers.".into()),
            ..Info::default()
        };
        document(&pool, &routes, &info)
    }

    fn parameter<'a>(operation: &'a Value, name: &str) -> &'a Value {
        operation["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no parameter {name} in {operation}"))
    }

    #[test]
    fn operations_paths_and_methods() {
        let doc = customer_document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "Customer API");
        let mut operations: Vec<(String, String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap().to_owned();
                operations.push((path.clone(), method.clone(), id));
            }
        }
        operations.sort();
        let expected = [
            ("/v1/companies", "get", "ListCompanies"),
            ("/v1/companies", "post", "CreateCompany"),
            ("/v1/companies/{company}", "delete", "DeleteCompany"),
            ("/v1/companies/{company}", "get", "GetCompany"),
            ("/v1/companies/{company}", "patch", "UpdateCompany"),
            ("/v1/companies/{company}", "put", "ReplaceCompany"),
            (
                "/v1/companies/{company}/customers",
                "get",
                "ListCompanyCustomers",
            ),
            ("/v1/companies/{company}/events", "get", "ListCompanyEvents"),
            (
                "/v1/companies/{company}/events:watch",
                "get",
                "WatchCompanyEvents",
            ),
            (
                "/v1/companies/{company}:undelete",
                "post",
                "UndeleteCompany",
            ),
            ("/v1/customers", "get", "ListCustomers"),
            ("/v1/customers", "post", "CreateCustomer"),
            ("/v1/customers/{customer}", "delete", "DeleteCustomer"),
            ("/v1/customers/{customer}", "get", "GetCustomer"),
            ("/v1/customers/{customer}", "patch", "UpdateCustomer"),
            ("/v1/customers/{customer}", "put", "ReplaceCustomer"),
            (
                "/v1/customers/{customer}/events",
                "get",
                "ListCustomerEvents",
            ),
            (
                "/v1/customers/{customer}/events:watch",
                "get",
                "WatchCustomerEvents",
            ),
            (
                "/v1/customers/{customer}/merges/{merge}:unmerge",
                "post",
                "UnmergeCustomers_post",
            ),
            ("/v1/customers/{customer}/notes", "get", "ListNotes"),
            ("/v1/customers/{customer}/notes", "post", "CreateNote"),
            (
                "/v1/customers/{customer}/notes/{note}",
                "delete",
                "DeleteNote",
            ),
            ("/v1/customers/{customer}/notes/{note}", "get", "GetNote"),
            (
                "/v1/customers/{customer}/notes/{note}",
                "patch",
                "UpdateNote",
            ),
            (
                "/v1/customers/{customer}/notes/{note}",
                "put",
                "ReplaceNote",
            ),
            ("/v1/customers/{customer}:erase", "post", "EraseCustomer"),
            (
                "/v1/customers/{customer}:exportData",
                "get",
                "ExportCustomerData",
            ),
            (
                "/v1/customers/{customer}:findDuplicates",
                "get",
                "FindDuplicateCustomers",
            ),
            ("/v1/customers/{customer}:merge", "post", "MergeCustomers"),
            (
                "/v1/customers/{customer}:undelete",
                "post",
                "UndeleteCustomer",
            ),
            (
                "/v1/customers/{customer}:unmerge",
                "post",
                "UnmergeCustomers",
            ),
            ("/v1/customers:batchGet", "get", "BatchGetCustomers"),
            ("/v1/customers:export", "get", "ExportCustomers"),
            (
                "/v1/customers:findDuplicates",
                "post",
                "FindDuplicateCustomers_post",
            ),
            ("/v1/customers:lookup", "get", "LookupCustomer"),
            ("/v1/customers:upsert", "post", "UpsertCustomer"),
            ("/v1/{name}", "get", "GetBusinessInfo"),
        ];
        let expected: Vec<(String, String, String)> = expected
            .iter()
            .map(|(p, m, i)| ((*p).to_owned(), (*m).to_owned(), (*i).to_owned()))
            .collect();
        assert_eq!(operations, expected);
        for (path, method, _) in &operations {
            assert_eq!(
                doc["paths"][path][method]["tags"],
                json!(["CustomerService"])
            );
        }
    }

    #[test]
    fn resource_name_path_parameters() {
        let doc = customer_document();
        let undelete = &doc["paths"]["/v1/customers/{customer}:undelete"]["post"];
        let customer = parameter(undelete, "customer");
        assert_eq!(customer["in"], "path");
        assert_eq!(customer["required"], true);
        assert_eq!(
            customer["schema"],
            json!({"type": "string", "pattern": "^[^/]+$"})
        );
        let description = customer["description"].as_str().unwrap();
        assert!(
            description.contains(
                "The `{customer}` segment of `name`, a resource name of the form \
                 `customers/{customer}`."
            ),
            "{description}"
        );
        assert!(
            description.starts_with("The customer's resource name"),
            "{description}"
        );

        // A nested resource: one parameter per id, named by the resource pattern.
        let note = &doc["paths"]["/v1/customers/{customer}/notes/{note}"]["get"];
        let names: Vec<&str> = note["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["customer", "note"]);
        assert!(
            parameter(note, "note")["description"]
                .as_str()
                .unwrap()
                .contains("`customers/{customer}/notes/{note}`")
        );

        let update = &doc["paths"]["/v1/customers/{customer}"]["patch"];
        let customer = parameter(update, "customer");
        assert_eq!(customer["in"], "path");
        assert!(
            customer["description"]
                .as_str()
                .unwrap()
                .contains("segment of `customer.name`")
        );
        // Neither the path field nor the body field is a query parameter.
        let names: Vec<&str> = update["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "customer",
                "updateMask",
                "requestId",
                "allowMissing",
                "If-Match",
                "Idempotency-Key"
            ]
        );
        assert_eq!(parameter(update, "If-Match")["in"], "header");
        assert_eq!(parameter(update, "updateMask")["schema"]["type"], "string");
        let patch_mask = parameter(update, "updateMask")["description"]
            .as_str()
            .unwrap();
        assert!(
            patch_mask.contains("derives it from the fields present"),
            "{patch_mask}"
        );
        let put = &doc["paths"]["/v1/customers/{customer}"]["put"];
        let put_mask = parameter(put, "updateMask")["description"]
            .as_str()
            .unwrap();
        assert!(put_mask.contains("the gateway sends `*`"), "{put_mask}");
    }

    #[test]
    fn query_parameters() {
        let doc = customer_document();
        let batch = &doc["paths"]["/v1/customers:batchGet"]["get"];
        let names = parameter(batch, "names");
        assert_eq!(names["in"], "query");
        assert_eq!(
            names["schema"],
            json!({"type": "array", "items": {"type": "string"}})
        );
        assert_eq!(names["explode"], true);
        assert_eq!(names["required"], true);

        let list = &doc["paths"]["/v1/customers"]["get"];
        let page_size = parameter(list, "pageSize");
        assert_eq!(
            page_size["schema"],
            json!({"type": "integer", "format": "int32"})
        );
        assert!(page_size.get("required").is_none());
        assert_eq!(parameter(list, "showDeleted")["schema"]["type"], "boolean");
        assert!(
            parameter(list, "filter")["description"]
                .as_str()
                .unwrap()
                .starts_with("An AIP-160 filter")
        );
        assert!(list.get("requestBody").is_none());

        // GET and DELETE by name: the name is in the path only.
        let delete = &doc["paths"]["/v1/customers/{customer}"]["delete"];
        let names: Vec<&str> = delete["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "customer",
                "etag",
                "requestId",
                "If-Match",
                "Idempotency-Key"
            ]
        );
        // GET has neither an etag nor a request id to fill in; `view` is an enum parameter.
        let get = &doc["paths"]["/v1/customers/{customer}"]["get"];
        assert_eq!(get["parameters"].as_array().unwrap().len(), 2);
        assert_eq!(parameter(get, "view")["in"], "query");
        assert_eq!(
            parameter(get, "view")["schema"]["enum"],
            json!(["CUSTOMER_VIEW_UNSPECIFIED", "BASIC", "FULL"])
        );
    }

    #[test]
    fn a_required_enum_takes_no_unspecified_value_in_requests() {
        let doc = customer_document();
        let erase = &doc["paths"]["/v1/customers/{customer}:erase"]["post"];
        let body = &erase["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(body["required"], json!(["reason"]));
        // UNSPECIFIED is an unset field, refused where the field is required.
        assert_eq!(body["properties"]["reason"]["type"], "string");
        assert_eq!(
            body["properties"]["reason"]["enum"],
            json!([
                "DATA_SUBJECT_REQUEST",
                "CONSENT_WITHDRAWN",
                "NO_LONGER_NEEDED",
                "UNLAWFUL_PROCESSING",
                "LEGAL_OBLIGATION"
            ])
        );
        assert!(
            body["properties"]["reason"]["description"]
                .as_str()
                .unwrap()
                .starts_with("Why the customer is erased")
        );
        // Responses may carry any value: the component keeps them all.
        let component = &doc["components"]["schemas"]["customer.v1.ErasureReason"];
        assert_eq!(component["enum"][0], "ERASURE_REASON_UNSPECIFIED");
        assert_eq!(component["enum"].as_array().unwrap().len(), 6);
    }

    #[test]
    fn bodies_and_responses() {
        let doc = customer_document();
        let create = &doc["paths"]["/v1/customers"]["post"];
        let body = &create["requestBody"];
        assert_eq!(body["required"], true);
        // What a client sends has its own schemas: `…Input` (create, replace) and `…Patch`.
        assert_eq!(
            body["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/customer.v1.CustomerInput"
        );
        let body_ref = |method: &str| {
            doc["paths"]["/v1/customers/{customer}"][method]["requestBody"]["content"]
                ["application/json"]["schema"]["$ref"]
                .clone()
        };
        assert_eq!(
            body_ref("patch"),
            "#/components/schemas/customer.v1.CustomerPatch"
        );
        assert_eq!(
            body_ref("put"),
            "#/components/schemas/customer.v1.CustomerInput"
        );
        // A PATCH without a body changes nothing; a PUT without one replaces with nothing.
        let item = &doc["paths"]["/v1/customers/{customer}"];
        assert_eq!(item["patch"]["requestBody"]["required"], false);
        assert_eq!(item["put"]["requestBody"]["required"], true);
        assert_eq!(parameter(create, "requestId")["in"], "query");
        let created = &create["responses"]["201"];
        assert!(create["responses"].get("200").is_none());
        assert_eq!(
            created["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/customer.v1.Customer"
        );
        let location = created["headers"]["Location"]["description"]
            .as_str()
            .unwrap();
        assert!(location.contains("`/v1/customers/123`"), "{location}");
        // Each resource's Location example is its own Get route.
        let note_location = doc["paths"]["/v1/customers/{customer}/notes"]["post"]["responses"]
            ["201"]["headers"]["Location"]["description"]
            .as_str()
            .unwrap();
        assert!(
            note_location.contains("`/v1/customers/123/notes/123`"),
            "{note_location}"
        );
        // Create: no If-Match (the etag is ignored there), but an Idempotency-Key.
        assert!(
            create["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["name"] != "If-Match")
        );
        assert_eq!(parameter(create, "Idempotency-Key")["in"], "header");
        assert!(created["headers"].get("ETag").is_some());

        // A whole-message body leaves out what the path sets.
        let undelete = &doc["paths"]["/v1/customers/{customer}:undelete"]["post"];
        let schema = &undelete["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(schema["type"], "object");
        assert_eq!(
            schema["properties"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["etag", "requestId"]
        );
        assert!(schema.get("required").is_none());
        assert_eq!(undelete["requestBody"]["required"], false);
        assert!(undelete["responses"].get("200").is_some());

        let list = &doc["paths"]["/v1/customers"]["get"]["responses"];
        assert_eq!(
            list["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/customer.v1.ListCustomersResponse"
        );
        assert!(list["200"].get("headers").is_none());
        let codes = |responses: &Value| -> Vec<String> {
            responses.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(
            codes(list),
            [
                "200", "400", "401", "403", "404", "409", "412", "429", "500", "503", "default"
            ]
        );
        for code in codes(list).iter().filter(|code| *code != "200") {
            assert_eq!(list[code]["$ref"], "#/components/responses/Error", "{code}");
        }
        // An operation with a body also answers 413 (too large) and 415 (not JSON).
        assert_eq!(
            codes(&undelete["responses"]),
            [
                "200", "400", "401", "403", "404", "409", "412", "413", "415", "429", "500", "503",
                "default"
            ]
        );
        let error = &doc["components"]["schemas"]["Error"]["properties"]["error"];
        assert_eq!(error["properties"]["code"]["type"], "integer");
        assert_eq!(
            error["properties"]["details"]["items"]["required"],
            json!(["@type"])
        );
    }

    #[test]
    fn customer_schema() {
        let doc = customer_document();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut names: Vec<&str> = schemas.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "Error",
                "customer.v1.BatchGetCustomersResponse",
                "customer.v1.BusinessInfo",
                "customer.v1.BusinessInfo.RegistrationStatus",
                "customer.v1.Company",
                "customer.v1.CompanyCreated",
                "customer.v1.CompanyDeleted",
                "customer.v1.CompanyInput",
                "customer.v1.CompanyPatch",
                "customer.v1.CompanyUndeleted",
                "customer.v1.CompanyUpdated",
                "customer.v1.Customer",
                "customer.v1.Customer.Status",
                "customer.v1.CustomerDataExport",
                "customer.v1.CustomerDeleted",
                "customer.v1.CustomerErased",
                "customer.v1.CustomerErasure",
                "customer.v1.CustomerEvent",
                "customer.v1.CustomerInput",
                "customer.v1.CustomerMerge",
                "customer.v1.CustomerPatch",
                "customer.v1.CustomerPurged",
                "customer.v1.CustomerRegistered",
                "customer.v1.CustomerUndeleted",
                "customer.v1.CustomerUpdated",
                "customer.v1.CustomersMerged",
                "customer.v1.CustomersUnmerged",
                "customer.v1.DuplicateCandidate",
                "customer.v1.DuplicateReason",
                "customer.v1.ErasureReason",
                "customer.v1.FieldPolicyInput",
                "customer.v1.FindDuplicateCustomersResponse",
                "customer.v1.ListCompaniesResponse",
                "customer.v1.ListCustomerEventsResponse",
                "customer.v1.ListCustomersResponse",
                "customer.v1.ListNotesResponse",
                "customer.v1.MergeCustomersResponse",
                "customer.v1.MovedNote",
                "customer.v1.Note",
                "customer.v1.NoteAdded",
                "customer.v1.NoteDeleted",
                "customer.v1.NoteInput",
                "customer.v1.NotePatch",
                "customer.v1.NoteUpdated",
                "customer.v1.PostalAddress",
                "customer.v1.PostalAddressInput",
                "customer.v1.PostalAddressPatch",
                "customer.v1.UnmergeCustomersResponse",
            ]
        );

        let customer = &schemas["customer.v1.Customer"];
        assert_eq!(customer["type"], "object");
        assert_eq!(customer["description"], "A customer of the business.");
        // A response has every field the writer always writes; messages may be absent.
        assert_eq!(
            customer["required"],
            json!([
                "name",
                "uid",
                "givenName",
                "familyName",
                "email",
                "phone",
                "status",
                "company",
                "businessId",
                "labels",
                "etag",
                "externalIds",
                "mergedInto"
            ])
        );
        let properties = &customer["properties"];
        assert_eq!(properties["createTime"]["type"], "string");
        assert_eq!(properties["createTime"]["format"], "date-time");
        assert_eq!(properties["createTime"]["readOnly"], true);
        assert_eq!(properties["uid"]["readOnly"], true);
        assert!(properties["name"].get("readOnly").is_none());
        assert!(
            properties["name"]["description"]
                .as_str()
                .unwrap()
                .contains("Identifier")
        );
        assert!(properties["givenName"].get("readOnly").is_none());
        assert_eq!(
            properties["givenName"]["description"],
            "Given (first) name. Trimmed; 1 to 200 characters."
        );
        assert_eq!(
            properties["labels"],
            json!({
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "User-defined labels: at most 64; keys match `[a-z][a-z0-9_.-]{0,62}`, values are at most 255 characters.",
            })
        );
        assert_eq!(
            properties["status"]["$ref"],
            "#/components/schemas/customer.v1.Customer.Status"
        );
        assert_eq!(
            properties["address"]["$ref"],
            "#/components/schemas/customer.v1.PostalAddress"
        );
        assert_eq!(properties["address"]["description"], "Postal address.");

        let status = &schemas["customer.v1.Customer.Status"];
        assert_eq!(status["type"], "string");
        assert_eq!(
            status["enum"],
            json!(["STATUS_UNSPECIFIED", "ACTIVE", "PROSPECTIVE", "INACTIVE"])
        );
        assert!(
            status["description"]
                .as_str()
                .unwrap()
                .contains("- `ACTIVE`: A current customer.")
        );

        let address = &schemas["customer.v1.PostalAddress"];
        assert_eq!(
            address["required"],
            json!(["lines", "locality", "region", "postalCode", "countryCode"])
        );
        assert_eq!(address["properties"]["lines"]["type"], "array");

        // What a client sends: no output-only or identifier fields; REQUIRED is required on
        // create, nothing on PATCH; nested messages follow suit.
        let input = &schemas["customer.v1.CustomerInput"];
        assert_eq!(
            input["required"],
            json!(["givenName", "familyName", "email"])
        );
        let sent: Vec<&String> = input["properties"].as_object().unwrap().keys().collect();
        assert_eq!(
            sent,
            [
                "address",
                "businessId",
                "company",
                "email",
                "etag",
                "externalIds",
                "familyName",
                "givenName",
                "labels",
                "phone",
                "status"
            ]
        );
        // `null` is "unset" to the parser: allowed where a field may be unset.
        let address_input = json!([
            {"$ref": "#/components/schemas/customer.v1.PostalAddressInput"},
            {"type": "null"}
        ]);
        assert_eq!(input["properties"]["address"]["anyOf"], address_input);
        assert_eq!(
            input["properties"]["phone"]["type"],
            json!(["string", "null"])
        );
        assert_eq!(input["properties"]["givenName"]["type"], "string");
        assert_eq!(
            schemas["customer.v1.PostalAddressInput"]["required"],
            json!(["countryCode"])
        );
        // The gateway refuses unknown members of a request; responses stay open.
        assert_eq!(input["additionalProperties"], false);
        assert_eq!(
            schemas["customer.v1.PostalAddressInput"]["additionalProperties"],
            false
        );
        assert!(customer.get("additionalProperties").is_none());
        let patch = &schemas["customer.v1.CustomerPatch"];
        assert!(patch.get("required").is_none());
        assert_eq!(patch["additionalProperties"], false);
        assert_eq!(patch["properties"].as_object().unwrap().len(), sent.len());
        assert_eq!(patch["properties"]["givenName"]["type"], "string");
        // A nested message is merged field by field, but `{}` would clear one whose fields
        // are required.
        let address = &patch["properties"]["address"];
        assert_eq!(
            address["anyOf"][0]["$ref"],
            "#/components/schemas/customer.v1.PostalAddressPatch"
        );
        assert_eq!(address["minProperties"], 1);
        assert!(
            schemas["customer.v1.PostalAddressPatch"]
                .get("required")
                .is_none()
        );
    }

    #[test]
    fn response_schemas_follow_the_writers_rule_for_unset_fields() {
        let doc = customer_document();
        let pool = pool();
        for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
            let Some(message) = pool.get_message_by_name(name) else {
                continue;
            };
            let required = schema["required"].as_array().cloned().unwrap_or_default();
            for field in message.fields() {
                assert_eq!(
                    required.contains(&json!(field.json_name())),
                    !json::omitted_when_unset(&field),
                    "{name}.{}",
                    field.name()
                );
            }
        }
        // No response schema allows `null` (request schemas do, for unset fields).
        for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
            if name.ends_with("Input") || name.ends_with("Patch") {
                continue;
            }
            assert!(
                !schema.to_string().contains(r#""null""#),
                "{name} allows null"
            );
        }
    }

    #[test]
    fn constraints_reach_request_schemas_and_parameters_only() {
        let pool = pool();
        let routes = routes(&pool, &["customer.v1.CustomerService".into()]).unwrap();
        let mut constraints = Constraints::default();
        constraints.fields.insert(
            "customer.v1.Customer.email".into(),
            json!({"format": "email", "maxLength": 254}),
        );
        constraints.fields.insert(
            "customer.v1.PostalAddress.lines".into(),
            json!({"maxItems": 5, "items": {"maxLength": 200}}),
        );
        constraints.fields.insert(
            "customer.v1.ListCustomersRequest.page_size".into(),
            json!({"minimum": 0, "maximum": 1000}),
        );
        constraints
            .ids
            .insert("customer".into(), "^[0-9a-f-]{36}$".into());
        assert_eq!(constraints.check(&pool), Ok(()));
        let info = Info {
            constraints: constraints.clone(),
            ..Info::default()
        };
        let doc = document(&pool, &routes, &info);
        let schemas = &doc["components"]["schemas"];
        for variant in ["customer.v1.CustomerInput", "customer.v1.CustomerPatch"] {
            let email = &schemas[variant]["properties"]["email"];
            assert_eq!(email["format"], "email", "{variant}");
            assert_eq!(email["maxLength"], 254, "{variant}");
        }
        assert!(
            schemas["customer.v1.Customer"]["properties"]["email"]
                .get("format")
                .is_none()
        );
        assert_eq!(
            schemas["customer.v1.PostalAddressInput"]["properties"]["lines"],
            json!({
                "type": ["array", "null"],
                "items": {"type": "string", "maxLength": 200},
                "maxItems": 5,
                "description": "Street address lines: at most 5, each at most 200 characters.",
            })
        );
        let list = &doc["paths"]["/v1/customers"]["get"];
        assert_eq!(
            parameter(list, "pageSize")["schema"],
            json!({"type": "integer", "format": "int32", "minimum": 0, "maximum": 1000})
        );
        let get = &doc["paths"]["/v1/customers/{customer}"]["get"];
        assert_eq!(
            parameter(get, "customer")["schema"]["pattern"],
            "^[0-9a-f-]{36}$"
        );
        // A note's `{customer}` is the same id.
        let note = &doc["paths"]["/v1/customers/{customer}/notes/{note}"]["get"];
        assert_eq!(
            parameter(note, "customer")["schema"]["pattern"],
            "^[0-9a-f-]{36}$"
        );
        assert_eq!(parameter(note, "note")["schema"]["pattern"], "^[^/]+$");

        constraints
            .fields
            .insert("customer.v1.Customer.nickname".into(), json!({}));
        assert_eq!(
            constraints.check(&pool),
            Err("constraints name an unknown field `customer.v1.Customer.nickname`".into())
        );
        let mut ids = Constraints::default();
        ids.ids.insert(
            "customer.v1.GetCustomerRequest.nam:customer".into(),
            "^x$".into(),
        );
        assert_eq!(
            ids.check(&pool),
            Err("constraints name an unknown field `customer.v1.GetCustomerRequest.nam`".into())
        );
    }

    #[test]
    fn descriptions_come_from_comments() {
        let doc = customer_document();
        let get = &doc["paths"]["/v1/customers/{customer}"]["get"];
        assert_eq!(
            get["summary"],
            "Returns one customer, also a soft-deleted one (AIP-131)."
        );
        let create = &doc["paths"]["/v1/customers"]["post"];
        assert_eq!(create["summary"], "Registers a new customer (AIP-133).");
        assert!(
            create["description"]
                .as_str()
                .unwrap()
                .contains("Retrying with the same `request_id` returns the first response")
        );
        assert_eq!(
            doc["tags"],
            json!([{
                "name": "CustomerService",
                "description": "Manages customers, the companies they belong to and notes about them."
            }])
        );
    }

    #[test]
    fn the_document_is_deterministic() {
        let first = serde_json::to_string(&customer_document()).unwrap();
        let second = serde_json::to_string(&customer_document()).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn scalar_and_well_known_mappings() {
        assert_eq!(
            scalar_schema(&Kind::Int64),
            json!({"type": "string", "format": "int64"})
        );
        assert_eq!(
            scalar_schema(&Kind::Fixed64),
            json!({"type": "string", "format": "uint64"})
        );
        assert_eq!(scalar_schema(&Kind::Uint32)["minimum"], 0);
        assert_eq!(
            scalar_schema(&Kind::Bytes),
            json!({"type": "string", "format": "byte"})
        );
        assert_eq!(
            well_known_schema("google.protobuf.Int32Value"),
            Some(json!({"type": ["integer", "null"], "format": "int32"}))
        );
        assert_eq!(well_known_schema("google.protobuf.Value"), Some(json!({})));
        assert_eq!(
            well_known_schema("google.protobuf.Any").unwrap()["required"],
            json!(["@type"])
        );
        assert_eq!(well_known_schema("customer.v1.Customer"), None);
    }

    #[test]
    fn templates_become_openapi_paths() {
        use crate::template::PathTemplate;
        let t = PathTemplate::parse("/v1/shelves/{shelf}/books/{book.id=**}").unwrap();
        let rest = &t.variables[1];
        assert_eq!(pattern_regex(&t.segments[rest.start..rest.end]), "^.*$");
        assert_eq!(
            pattern_regex(&PathTemplate::parse("/{a=x.y/*/**}").unwrap().segments),
            r"^x\.y/[^/]+(/.*)?$"
        );
        assert_eq!(singular("companies"), "company");
        assert_eq!(singular("shelves"), "shelf");
        assert_eq!(singular("addresses"), "address");
        assert_eq!(singular("boxes"), "box");
        assert_eq!(singular("branches"), "branch");
        assert_eq!(singular("archives"), "archive");
        assert_eq!(singular("notes"), "note");
        assert_eq!(singular("data"), "data");
        assert!(pattern_fits(
            "customers/{customer}",
            &PathTemplate::parse("/{n=customers/*}").unwrap().segments
        ));
        assert!(!pattern_fits(
            "companies/{company}",
            &PathTemplate::parse("/{n=customers/*}").unwrap().segments
        ));
        assert_eq!(
            first_sentence("Lists things, e.g. cats. More."),
            "Lists things, e.g. cats."
        );
        assert_eq!(
            clean_comment(" One\n two.\n\n Three.\n"),
            "One two.\n\nThree."
        );
    }
}
