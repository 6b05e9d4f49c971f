//! The two databases a collector stores into, behind the few operations it needs: SQLite
//! (a file: one collector, the default) and PostgreSQL (a server: a fleet's collectors
//! sharing one store). The collector's SQL is written once, in the dialect both accept
//! (`ON CONFLICT … DO NOTHING/UPDATE`, `BIGINT`, `DOUBLE PRECISION`), with `$n`
//! parameters; SQLite gets them as `?n`.

/// The advisory lock key under which a collector creates its tables ("warble" in ASCII).
const SCHEMA_LOCK: i64 = 0x0000_7761_7262_6c65;

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Int(i64),
    Real(f64),
    Text(String),
    Null,
}

impl Val {
    pub(crate) fn int(&self) -> Option<i64> {
        match self {
            Self::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub(crate) fn text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t),
            _ => None,
        }
    }

    /// As a CSV field.
    pub(crate) fn field(&self) -> String {
        match self {
            Self::Int(v) => v.to_string(),
            Self::Real(v) => format!("{v:.4}"),
            Self::Text(t) => t.clone(),
            Self::Null => String::new(),
        }
    }
}

/// What the database said.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// From SQLite.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// From PostgreSQL.
    #[error("{}", pg_message(.0))]
    Postgres(#[from] postgres::Error),
    /// A column of a type the collector never writes.
    #[error("unexpected column type {0}")]
    ColumnType(String),
}

/// PostgreSQL's own words (its `Display` says only "db error"): message, SQLSTATE, detail.
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text += &format!(": {detail}");
            }
            text
        }
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

impl DbError {
    /// A conflict with another transaction that may succeed when tried again: a deadlock
    /// or serialization failure between collectors sharing a PostgreSQL store, or SQLite's
    /// lock held past the busy timeout.
    pub fn is_transient(&self) -> bool {
        use postgres::error::SqlState;
        match self {
            Self::Postgres(e) => e.code().is_some_and(|c| {
                *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
            }),
            Self::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            Self::ColumnType(_) => false,
        }
    }

    /// The database refused one value of a message (it cannot hold it, or it breaks a
    /// constraint): the message, not the store, is at fault.
    pub fn is_refused_value(&self) -> bool {
        match self {
            // Classes 22 (data exception), 23 (integrity constraint violation) and 54
            // (program limit exceeded, such as an index row too large).
            Self::Postgres(e) => e.code().is_some_and(|c| {
                let code = c.code();
                code.starts_with("22") || code.starts_with("23") || code.starts_with("54")
            }),
            Self::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::ConstraintViolation | rusqlite::ErrorCode::TooBig)
            ),
            Self::ColumnType(_) => false,
        }
    }
}

/// An open store.
pub(crate) enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(Box<postgres::Client>),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sqlite(_) => "Db::Sqlite",
            Self::Postgres(_) => "Db::Postgres",
        })
    }
}

/// Whether `target` names a PostgreSQL server rather than a file.
pub(crate) fn is_postgres(target: &str) -> bool {
    target.starts_with("postgres://") || target.starts_with("postgresql://")
}

/// An SQLite store, durable: WAL with `synchronous = FULL` (a message is acknowledged to
/// the broker only once committed, so a commit must survive a power cut), and a busy
/// timeout so that `report` or a second collector beside `run` waits for the write lock
/// instead of failing. (Unlike a station's outbox it has no full-disk reserve to fit in,
/// so SQLite's own checkpoint interval stands.)
fn open_sqlite(path: &std::path::Path, schema: &str) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(schema)?;
    Ok(conn)
}

impl Db {
    /// Connects to `postgres://…` or opens (creates) an SQLite file, durable (WAL,
    /// `synchronous = FULL`), then runs `schema` (statements separated by `;`).
    pub(crate) fn open(target: &str, schema: &str) -> Result<Self, DbError> {
        if is_postgres(target) {
            let mut client = postgres::Client::connect(target, postgres::NoTls)?;
            // Collectors of a fleet start together: concurrent `CREATE … IF NOT EXISTS`
            // race in PostgreSQL, so the schema is created under an advisory lock.
            client.batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK}); {schema}; COMMIT;"
            ))?;
            Ok(Self::Postgres(Box::new(client)))
        } else {
            Ok(Self::Sqlite(open_sqlite(
                std::path::Path::new(target),
                schema,
            )?))
        }
    }

    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        match self {
            Self::Sqlite(c) => c.execute_batch(sql)?,
            Self::Postgres(c) => c.batch_execute(sql)?,
        }
        Ok(())
    }

    /// Starts a transaction that writes (SQLite takes its write lock at once).
    pub(crate) fn begin(&mut self) -> Result<(), DbError> {
        match self {
            Self::Sqlite(c) => c.execute_batch("BEGIN IMMEDIATE")?,
            Self::Postgres(c) => c.batch_execute("BEGIN")?,
        }
        Ok(())
    }

    pub(crate) fn execute(&mut self, sql: &str, args: &[Val]) -> Result<u64, DbError> {
        match self {
            Self::Sqlite(c) => {
                let mut stmt = c.prepare_cached(&sqlite_sql(sql))?;
                Ok(stmt.execute(rusqlite::params_from_iter(args.iter().map(sqlite_val)))? as u64)
            }
            Self::Postgres(c) => {
                let params = pg_params(args);
                Ok(c.execute(sql, &pg_refs(&params))?)
            }
        }
    }

    pub(crate) fn query(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Vec<Val>>, DbError> {
        match self {
            Self::Sqlite(c) => {
                let mut stmt = c.prepare_cached(&sqlite_sql(sql))?;
                let n = stmt.column_count();
                let rows = stmt.query_map(
                    rusqlite::params_from_iter(args.iter().map(sqlite_val)),
                    |r| {
                        (0..n)
                            .map(|i| {
                                Ok(match r.get_ref(i)? {
                                    rusqlite::types::ValueRef::Integer(v) => Val::Int(v),
                                    rusqlite::types::ValueRef::Real(v) => Val::Real(v),
                                    rusqlite::types::ValueRef::Text(t) => {
                                        Val::Text(String::from_utf8_lossy(t).into_owned())
                                    }
                                    _ => Val::Null,
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()
                    },
                )?;
                Ok(rows.collect::<Result<_, _>>()?)
            }
            Self::Postgres(c) => {
                let params = pg_params(args);
                let rows = c.query(sql, &pg_refs(&params))?;
                rows.iter().map(pg_row).collect()
            }
        }
    }
}

/// `$n` → `?n` (SQLite's numbered parameters). The collector's SQL has no other `$`.
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

fn sqlite_val(v: &Val) -> rusqlite::types::Value {
    match v {
        Val::Int(i) => rusqlite::types::Value::Integer(*i),
        Val::Real(r) => rusqlite::types::Value::Real(*r),
        Val::Text(t) => rusqlite::types::Value::Text(t.clone()),
        Val::Null => rusqlite::types::Value::Null,
    }
}

type PgParam = Box<dyn postgres::types::ToSql + Sync>;

fn pg_params(args: &[Val]) -> Vec<PgParam> {
    args.iter()
        .map(|v| -> PgParam {
            match v {
                Val::Int(i) => Box::new(*i),
                Val::Real(r) => Box::new(*r),
                Val::Text(t) => Box::new(t.clone()),
                Val::Null => Box::new(None::<i64>),
            }
        })
        .collect()
}

fn pg_refs(params: &[PgParam]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params.iter().map(AsRef::as_ref).collect()
}

fn pg_row(row: &postgres::Row) -> Result<Vec<Val>, DbError> {
    use postgres::types::Type;
    (0..row.len())
        .map(|i| {
            let ty = row.columns()[i].type_();
            Ok(if *ty == Type::INT8 {
                row.try_get::<_, Option<i64>>(i)?
                    .map_or(Val::Null, Val::Int)
            } else if *ty == Type::INT4 {
                row.try_get::<_, Option<i32>>(i)?
                    .map_or(Val::Null, |v| Val::Int(i64::from(v)))
            } else if *ty == Type::FLOAT8 {
                row.try_get::<_, Option<f64>>(i)?
                    .map_or(Val::Null, Val::Real)
            } else if *ty == Type::TEXT || *ty == Type::VARCHAR {
                row.try_get::<_, Option<String>>(i)?
                    .map_or(Val::Null, Val::Text)
            } else {
                return Err(DbError::ColumnType(ty.to_string()));
            })
        })
        .collect()
}
