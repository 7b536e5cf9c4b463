//! Statements whose SQL text is the same on every call, rendered once per call site.
//!
//! diesel-async renders a statement's SQL on every call, before it looks in its prepared
//! statement cache: for a row of 30 columns that is 30 quoted, escaped and allocated
//! identifiers and a few kilobytes of string work per call, the same text every time. A
//! statement wrapped by [`rendered_once!`] keeps the text of its first rendering at the call
//! site and hands it over as it is afterwards; its bound values are collected as before.
//!
//! Safe by construction: the text is reused only for a statement of the same type with a
//! static query id that diesel deems safe to cache, which is exactly the condition under
//! which diesel itself caches a prepared statement by type alone (the type fixes the SQL).
//! Anything else (a boxed query, an `IN` list, literal SQL) is rendered on every call as
//! before.

use std::{any::TypeId, sync::OnceLock};

use diesel::{
    pg::{Pg, PgQueryBuilder},
    query_builder::{AstPass, Query, QueryBuilder, QueryFragment, QueryId},
    result::QueryResult,
};

/// The SQL of one call site: the query type it was rendered for, and the text.
pub type Rendering = OnceLock<(TypeId, Box<str>)>;

/// `$query` (a diesel statement), its SQL rendered on its first call only; see the module
/// documentation.
macro_rules! rendered_once {
    ($query:expr) => {{
        static SQL: $crate::db::statement::Rendering = ::std::sync::OnceLock::new();
        $crate::db::statement::Rendered::new($query, &SQL)
    }};
}
pub(crate) use rendered_once;

/// A statement whose SQL comes from its call site's [`Rendering`] after the first call.
#[derive(Debug, Clone, Copy)]
pub struct Rendered<Q> {
    query: Q,
    sql: &'static Rendering,
}

impl<Q> Rendered<Q> {
    /// `query`, rendered into (or from) `sql`.
    pub fn new(query: Q, sql: &'static Rendering) -> Self {
        Self { query, sql }
    }
}

impl<Q: QueryFragment<Pg> + QueryId> Rendered<Q> {
    /// The text kept for this query's type, if any.
    fn kept(&self) -> Option<&'static str> {
        let (kept_for, sql) = self.sql.get()?;
        (Some(*kept_for) == Q::query_id()).then_some(&**sql)
    }

    /// Renders the query; keeps the text when its type fixes it.
    fn render(&self, out: &mut PgQueryBuilder, backend: &Pg) -> QueryResult<()> {
        let mut own = PgQueryBuilder::default();
        self.query.to_sql(&mut own, backend)?;
        let sql = own.finish();
        if let Some(id) = Q::query_id()
            && self.query.is_safe_to_cache_prepared(backend)?
        {
            let _ = self.sql.set((id, sql.as_str().into()));
        }
        out.push_sql(&sql);
        Ok(())
    }
}

impl<Q: QueryFragment<Pg> + QueryId> QueryFragment<Pg> for Rendered<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.query.walk_ast(pass)
    }

    fn to_sql(&self, out: &mut PgQueryBuilder, backend: &Pg) -> QueryResult<()> {
        match self.kept() {
            Some(sql) => {
                // What the query would render, in builds with debug assertions (the tests).
                #[cfg(debug_assertions)]
                {
                    let mut fresh = PgQueryBuilder::default();
                    self.query.to_sql(&mut fresh, backend)?;
                    debug_assert_eq!(fresh.finish(), sql, "a rendered_once! statement changed");
                }
                out.push_sql(sql);
                Ok(())
            }
            None => self.render(out, backend),
        }
    }

    fn is_safe_to_cache_prepared(&self, backend: &Pg) -> QueryResult<bool> {
        // Kept only when it was.
        match self.kept() {
            Some(_) => Ok(true),
            None => self.query.is_safe_to_cache_prepared(backend),
        }
    }
}

impl<Q: QueryId> QueryId for Rendered<Q> {
    type QueryId = Q::QueryId;
    const HAS_STATIC_QUERY_ID: bool = Q::HAS_STATIC_QUERY_ID;
}

impl<Q: Query> Query for Rendered<Q> {
    type SqlType = Q::SqlType;
}

#[cfg(test)]
mod tests {
    use diesel::prelude::*;

    use super::*;
    use crate::db::schema::customers;

    fn sql(query: &impl QueryFragment<Pg>) -> String {
        let mut out = PgQueryBuilder::default();
        query.to_sql(&mut out, &Pg).unwrap();
        out.finish()
    }

    #[test]
    fn a_fixed_statement_is_rendered_once_and_then_reused_as_it_was() {
        static SQL: Rendering = OnceLock::new();
        let query = |id| {
            Rendered::new(
                customers::table.find(id).select(customers::email).limit(1),
                &SQL,
            )
        };
        let first = sql(&query(uuid::Uuid::nil()));
        assert_eq!(
            first,
            "SELECT \"customers\".\"email\" FROM \"customers\" WHERE (\"customers\".\"id\" = $1) LIMIT $2"
        );
        assert_eq!(SQL.get().map(|(_, kept)| &**kept), Some(first.as_str()));
        assert_eq!(sql(&query(uuid::Uuid::max())), first);
    }

    #[test]
    fn a_statement_whose_type_does_not_fix_its_sql_is_rendered_every_time() {
        static SQL: Rendering = OnceLock::new();
        let boxed = |deleted: bool| {
            let rows = customers::table.select(customers::id).into_boxed();
            let rows = if deleted {
                rows
            } else {
                rows.filter(customers::delete_time.is_null())
            };
            Rendered::new(rows, &SQL)
        };
        assert_eq!(
            sql(&boxed(false)),
            "SELECT \"customers\".\"id\" FROM \"customers\" WHERE (\"customers\".\"delete_time\" IS NULL)"
        );
        assert_eq!(
            sql(&boxed(true)),
            "SELECT \"customers\".\"id\" FROM \"customers\""
        );
        assert!(SQL.get().is_none());
    }
}
