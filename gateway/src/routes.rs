//! The route table, derived from the `google.api.http` options in a descriptor pool.
//!
//! Every binding (the rule itself and each of its `additional_bindings`) becomes one
//! [`Route`]. Routes are ordered most specific first, so literal paths such as
//! `/v1/customers:batchGet` win over overlapping variable paths. Client- and bidirectional
//! streaming methods have no REST form and are skipped.

use http::Method;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MethodDescriptor, Value,
};

use crate::template::{PathShape, PathTemplate, TemplateError};

/// Where the HTTP request body goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyTarget {
    /// No body (`body` unset): everything comes from the path and the query.
    None,
    /// `body: "*"`: the body is the whole request message (minus path fields).
    Whole,
    /// `body: "field"`: the body is this top-level field.
    Field(FieldDescriptor),
}

/// One HTTP binding of one RPC.
#[derive(Debug, Clone)]
pub struct Route {
    /// HTTP method.
    pub method: Method,
    /// Path template.
    pub template: PathTemplate,
    /// The RPC it calls.
    pub rpc: MethodDescriptor,
    /// Where the body goes.
    pub body: BodyTarget,
    /// `response_body`: answer with this field of the response instead of all of it.
    pub response_body: Option<FieldDescriptor>,
    /// `/package.Service/Method`.
    pub grpc_path: String,
    /// The same, parsed once (the in-process call's URI).
    pub grpc_uri: http::Uri,
}

impl Route {
    /// Whether the RPC streams its responses.
    pub fn server_streaming(&self) -> bool {
        self.rpc.is_server_streaming()
    }

    /// Whether the route creates a resource (a `POST` to a `Create…` RPC, per AIP-133):
    /// answered with 201 Created and a `Location`.
    pub fn creates(&self) -> bool {
        self.method == Method::POST && self.rpc.name().starts_with("Create")
    }
}

/// A rule that cannot be served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    /// The named service is not in the descriptor pool.
    #[error("service `{0}` is not in the descriptor set")]
    UnknownService(String),
    /// The descriptors lack `google/api/annotations.proto`.
    #[error("the descriptor set does not contain google/api/annotations.proto (google.api.http)")]
    NoHttpAnnotation,
    /// A path template is malformed.
    #[error("{rpc}: {source}")]
    Template {
        /// The RPC.
        rpc: String,
        /// The template error.
        source: TemplateError,
    },
    /// `body` or `response_body` names a field the message does not have, or a path
    /// variable names an unknown field.
    #[error("{rpc}: {problem}")]
    Field {
        /// The RPC.
        rpc: String,
        /// What is wrong.
        problem: String,
    },
}

/// The routes of `services` (fully qualified names), most specific first.
pub fn routes(pool: &DescriptorPool, services: &[String]) -> Result<Vec<Route>, RouteError> {
    let http = pool
        .get_extension_by_name("google.api.http")
        .ok_or(RouteError::NoHttpAnnotation)?;
    let mut routes = Vec::new();
    for name in services {
        let service = pool
            .get_service_by_name(name)
            .ok_or_else(|| RouteError::UnknownService(name.clone()))?;
        for rpc in service.methods() {
            if rpc.is_client_streaming() {
                continue;
            }
            let options = rpc.options();
            if !options.has_extension(&http) {
                continue;
            }
            let Value::Message(rule) = options.get_extension(&http).into_owned() else {
                continue;
            };
            add_rule(&mut routes, &rpc, &rule, true)?;
        }
    }
    routes.sort_by_key(|route| std::cmp::Reverse(route.template.specificity()));
    Ok(routes)
}

fn add_rule(
    routes: &mut Vec<Route>,
    rpc: &MethodDescriptor,
    rule: &DynamicMessage,
    top_level: bool,
) -> Result<(), RouteError> {
    let text = |name: &str| match rule.get_field_by_name(name).map(|v| v.into_owned()) {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    };
    let field_error = |problem: String| RouteError::Field {
        rpc: rpc.full_name().to_owned(),
        problem,
    };
    let pattern = [
        ("get", Method::GET),
        ("put", Method::PUT),
        ("post", Method::POST),
        ("delete", Method::DELETE),
        ("patch", Method::PATCH),
    ]
    .into_iter()
    .find_map(|(name, method)| text(name).map(|path| (method, path)))
    .or_else(
        || match rule.get_field_by_name("custom").map(|v| v.into_owned()) {
            Some(Value::Message(custom)) => {
                let kind = match custom.get_field_by_name("kind").map(|v| v.into_owned()) {
                    Some(Value::String(kind)) => kind,
                    _ => return None,
                };
                let path = match custom.get_field_by_name("path").map(|v| v.into_owned()) {
                    Some(Value::String(path)) => path,
                    _ => return None,
                };
                Method::from_bytes(kind.as_bytes())
                    .ok()
                    .map(|method| (method, path))
            }
            _ => None,
        },
    );

    if let Some((method, path)) = pattern {
        let template = PathTemplate::parse(&path).map_err(|source| RouteError::Template {
            rpc: rpc.full_name().to_owned(),
            source,
        })?;
        let input = rpc.input();
        for variable in &template.variables {
            resolve_path(&input, &variable.field_path).ok_or_else(|| {
                field_error(format!(
                    "path variable `{}` is not a field",
                    variable.field_path
                ))
            })?;
        }
        let body = match text("body").as_deref() {
            None => BodyTarget::None,
            Some("*") => BodyTarget::Whole,
            Some(field) => BodyTarget::Field(
                input
                    .get_field_by_name(field)
                    .ok_or_else(|| field_error(format!("body field `{field}` does not exist")))?,
            ),
        };
        let response_body = match text("response_body") {
            None => None,
            Some(field) => Some(rpc.output().get_field_by_name(&field).ok_or_else(|| {
                field_error(format!("response_body field `{field}` does not exist"))
            })?),
        };
        let grpc_path = format!("/{}/{}", rpc.parent_service().full_name(), rpc.name());
        routes.push(Route {
            method,
            template,
            rpc: rpc.clone(),
            body,
            response_body,
            grpc_path: grpc_path.clone(),
            grpc_uri: grpc_path
                .parse()
                .map_err(|e| field_error(format!("method path: {e}")))?,
        });
    }

    // Bindings do not nest: only the top-level rule's are followed.
    if top_level
        && let Some(Value::List(bindings)) = rule
            .get_field_by_name("additional_bindings")
            .map(|v| v.into_owned())
    {
        for binding in bindings {
            if let Value::Message(binding) = binding {
                add_rule(routes, rpc, &binding, false)?;
            }
        }
    }
    Ok(())
}

/// The fields along a dotted path (`customer.name`), if every step exists and every step
/// but the last is a singular message.
pub fn resolve_path(
    message: &prost_reflect::MessageDescriptor,
    path: &str,
) -> Option<Vec<FieldDescriptor>> {
    let mut fields = Vec::new();
    let mut current = message.clone();
    let mut steps = path.split('.').peekable();
    while let Some(step) = steps.next() {
        let field = current
            .get_field_by_name(step)
            .or_else(|| current.get_field_by_json_name(step))?;
        if steps.peek().is_some() {
            match field.kind() {
                Kind::Message(inner) if !field.is_list() && !field.is_map() => current = inner,
                _ => return None,
            }
        }
        fields.push(field);
    }
    Some(fields)
}

/// The routes a request may match, found without trying every route: by HTTP method, then by
/// the literal second segment of their templates (`customers` of `/v1/{name=customers/*}`).
/// Every list keeps the order of the route table, so the first route that matches is the
/// same one a walk over the whole table finds.
#[derive(Debug, Default)]
pub struct RouteIndex {
    methods: Vec<MethodRoutes>,
}

#[derive(Debug)]
struct MethodRoutes {
    method: Method,
    /// Every route of the method.
    all: Vec<usize>,
    /// Per literal second segment: the routes with it and those without a literal there.
    by_second: Vec<(String, Vec<usize>)>,
    /// The routes without a literal second segment.
    other: Vec<usize>,
}

impl RouteIndex {
    /// The index of `routes` (positions in that slice).
    pub fn new(routes: &[Route]) -> Self {
        let mut methods: Vec<MethodRoutes> = Vec::new();
        for (index, route) in routes.iter().enumerate() {
            let position = match methods.iter().position(|m| m.method == route.method) {
                Some(position) => position,
                None => {
                    methods.push(MethodRoutes {
                        method: route.method.clone(),
                        all: Vec::new(),
                        by_second: Vec::new(),
                        other: Vec::new(),
                    });
                    methods.len() - 1
                }
            };
            methods[position].all.push(index);
        }
        for method in &mut methods {
            let mut literals: Vec<&str> = method
                .all
                .iter()
                .filter_map(|&index| routes[index].template.second_literal())
                .collect();
            literals.sort_unstable();
            literals.dedup();
            method.other = method
                .all
                .iter()
                .copied()
                .filter(|&index| routes[index].template.second_literal().is_none())
                .collect();
            method.by_second = literals
                .into_iter()
                .map(|literal| {
                    let routes = method
                        .all
                        .iter()
                        .copied()
                        .filter(|&index| {
                            routes[index]
                                .template
                                .second_literal()
                                .is_none_or(|second| second == literal)
                        })
                        .collect();
                    (literal.to_owned(), routes)
                })
                .collect();
        }
        Self { methods }
    }

    /// The routes of `method` that may match a path of `shape`, in table order.
    pub fn candidates(&self, method: &Method, shape: &PathShape<'_>) -> &[usize] {
        let Some(routes) = self.methods.iter().find(|m| m.method == method) else {
            return &[];
        };
        match shape.second_literal() {
            Some(second) => routes
                .by_second
                .iter()
                .find(|(literal, _)| literal == second)
                .map_or(&routes.other, |(_, routes)| routes),
            None => &routes.all,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::template::Segment;

    fn pool() -> DescriptorPool {
        let bytes = protox::Compiler::new([concat!(env!("CARGO_MANIFEST_DIR"), "/../proto")])
            .unwrap()
            .include_imports(true)
            .open_files(["customer/v1/customer_service.proto"])
            .unwrap()
            .encode_file_descriptor_set();
        DescriptorPool::decode(bytes.as_slice()).unwrap()
    }

    /// A path each template matches, with the variants that test the index's edges.
    fn paths(routes: &[Route]) -> Vec<String> {
        let mut paths = vec![
            String::new(),
            "/".to_owned(),
            "/v1".to_owned(),
            "/v1/".to_owned(),
            "/v1/unknown/x1".to_owned(),
            "/v1/customers%2Fx1".to_owned(),
            "/v1/cust%6Fmers/x1".to_owned(),
            "/v1/customers:batchGet".to_owned(),
            "/v1/customers:unknown".to_owned(),
        ];
        for route in routes {
            let mut path = String::new();
            for segment in &route.template.segments {
                path.push('/');
                path.push_str(match segment {
                    Segment::Literal(literal) => literal,
                    Segment::Any => "x1",
                    Segment::Rest => "a/b",
                });
            }
            if let Some(verb) = &route.template.verb {
                paths.push(format!("{path}:other"));
                path = format!("{path}:{verb}");
            }
            paths.push(path.replacen("/x1", "/x%2F1", 1));
            paths.push(format!("{path}/x1"));
            paths.push(path);
        }
        paths
    }

    #[test]
    fn the_index_keeps_every_route_that_may_match_in_table_order() {
        let pool = pool();
        let routes = routes(&pool, &["customer.v1.CustomerService".into()]).unwrap();
        let index = RouteIndex::new(&routes);
        let methods = [
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::PUT,
        ];
        for path in paths(&routes) {
            let shape = PathShape::of(&path);
            for method in &methods {
                let candidates = index.candidates(method, &shape);
                assert!(candidates.is_sorted(), "{method} {path}: {candidates:?}");
                assert!(candidates.iter().all(|&i| routes[i].method == method));
                for (i, route) in routes.iter().enumerate() {
                    if route.method == method && route.template.may_match(&shape) {
                        assert!(
                            candidates.contains(&i),
                            "{method} {path}: {} left out",
                            route.template.source
                        );
                    }
                }
                // Exactly the routes of the method whose second segment is that literal or
                // not a literal; every route of the method when the path's cannot be compared.
                let expected: Vec<usize> = (0..routes.len())
                    .filter(|&i| routes[i].method == method)
                    .filter(|&i| match shape.second_literal() {
                        Some(second) => routes[i]
                            .template
                            .second_literal()
                            .is_none_or(|literal| literal == second),
                        None => true,
                    })
                    .collect();
                assert_eq!(candidates, expected.as_slice(), "{method} {path}");
            }
        }
    }
}
