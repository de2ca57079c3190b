//! Typed columns: how domain values are written to and read from the database (through sqlx's
//! `any` driver, so one encoding serves SQLite and PostgreSQL).
//!
//! Hashes and accounts are stored as lower-case `0x`-hex `TEXT` (readable with `sqlite3` or
//! `psql`), statuses as their snake-case names, counters and Unix milliseconds as `BIGINT`,
//! flags as `BIGINT` 0/1. [`Db`] wraps any [`DbText`] value so it binds and decodes as `TEXT`;
//! [`RowExt`] reads typed values out of a row, so row types implement `sqlx::FromRow` in one
//! line per field instead of decoding strings column by column.

use alloy::primitives::{Address, B256};
use sqlx::any::{AnyRow, AnyTypeInfo};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Any, Database, Decode, Encode, Row, Type};

/// A value stored as `TEXT`: its text form and how to read it back.
pub(crate) trait DbText: Sized {
    /// The stored text.
    fn to_text(&self) -> String;
    /// Parses the stored text; `None` when it is not a valid value (a corrupt row).
    fn from_text(text: &str) -> Option<Self>;
}

impl DbText for B256 {
    fn to_text(&self) -> String {
        format!("{self:#x}")
    }
    fn from_text(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

impl DbText for Address {
    fn to_text(&self) -> String {
        format!("{self:#x}")
    }
    fn from_text(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

/// Implements [`DbText`] for a type with `as_str()` and `FromStr` (the status enums).
macro_rules! db_text_enum {
    ($($ty:ty),* $(,)?) => {$(
        impl $crate::store::codec::DbText for $ty {
            fn to_text(&self) -> String {
                self.as_str().to_owned()
            }
            fn from_text(text: &str) -> Option<Self> {
                text.parse().ok()
            }
        }
    )*};
}
pub(crate) use db_text_enum;

/// A [`DbText`] value bound or decoded as `TEXT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Db<T>(pub(crate) T);

impl<T: DbText> Type<Any> for Db<T> {
    fn type_info() -> AnyTypeInfo {
        <String as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <String as Type<Any>>::compatible(ty)
    }
}

impl<T: DbText> Encode<'_, Any> for Db<T> {
    fn encode_by_ref(
        &self,
        buf: &mut <Any as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <String as Encode<'_, Any>>::encode(self.0.to_text(), buf)
    }
}

impl<'r, T: DbText> Decode<'r, Any> for Db<T> {
    fn decode(value: <Any as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<'r, Any>>::decode(value)?;
        T::from_text(text)
            .map(Db)
            .ok_or_else(|| format!("`{text}` is not a valid {}", std::any::type_name::<T>()).into())
    }
}

/// Typed reads from a row (errors name the column).
pub(crate) trait RowExt {
    /// A [`DbText`] column.
    fn text<T: DbText>(&self, column: &str) -> Result<T, sqlx::Error>;
    /// A nullable [`DbText`] column.
    fn opt_text<T: DbText>(&self, column: &str) -> Result<Option<T>, sqlx::Error>;
    /// A non-negative `BIGINT` column as any unsigned integer type.
    fn uint<T: TryFrom<u64>>(&self, column: &str) -> Result<T, sqlx::Error>;
    /// A nullable `BIGINT` column.
    fn opt_uint(&self, column: &str) -> Result<Option<u64>, sqlx::Error>;
    /// A `BIGINT` 0/1 flag.
    fn flag(&self, column: &str) -> Result<bool, sqlx::Error>;
}

fn decode_error(column: &str, message: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: message.into(),
    }
}

impl RowExt for AnyRow {
    fn text<T: DbText>(&self, column: &str) -> Result<T, sqlx::Error> {
        self.try_get::<Db<T>, _>(column).map(|v| v.0)
    }

    fn opt_text<T: DbText>(&self, column: &str) -> Result<Option<T>, sqlx::Error> {
        self.try_get::<Option<Db<T>>, _>(column)
            .map(|v| v.map(|v| v.0))
    }

    fn uint<T: TryFrom<u64>>(&self, column: &str) -> Result<T, sqlx::Error> {
        let value: i64 = self.try_get(column)?;
        u64::try_from(value)
            .ok()
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| decode_error(column, format!("{value} is out of range")))
    }

    fn opt_uint(&self, column: &str) -> Result<Option<u64>, sqlx::Error> {
        let value: Option<i64> = self.try_get(column)?;
        value
            .map(|v| u64::try_from(v).map_err(|_| decode_error(column, format!("{v} < 0"))))
            .transpose()
    }

    fn flag(&self, column: &str) -> Result<bool, sqlx::Error> {
        let value: i64 = self.try_get(column)?;
        Ok(value != 0)
    }
}

/// `u64` as the `BIGINT` it is stored in (values above `i64::MAX` saturate; none occur:
/// chain ids, nonces, block numbers and Unix milliseconds are far below).
pub(crate) fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
